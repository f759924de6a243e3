import pytest
import torch
import torch.nn.functional as F

from simseg.config.pretrain import ProbeConfig
from simseg.config.sections import IMAGENET_MEAN, IMAGENET_STD, ModelConfig
from simseg.data.label_set import LabelSet
from simseg.data.synthetic_pairs import SYNTHETIC_TRIMAP
from simseg.errors import SimsegError
from simseg.models.vit import build_encoder
from simseg.training.probe import LinearProbe, pixel_features, save_probe_curve
from tests.helpers import write_pair

IMG = 32  # a 2 x 2 patch grid: the probe's arithmetic without the cost


def probe_config(data="synthetic", subset="8", score_images=4, steps=10) -> ProbeConfig:
    return ProbeConfig(every=1, data=data, subset=subset, score_images=score_images, steps=steps)


def prepare(cfg=None, exclude=(), seed=0) -> LinearProbe:
    return LinearProbe.prepare(cfg or probe_config(), IMG, IMAGENET_MEAN, IMAGENET_STD, set(exclude), seed)


@pytest.fixture(scope="module")
def probe() -> LinearProbe:
    return prepare()


@pytest.fixture
def encoder():
    torch.manual_seed(0)
    return build_encoder(ModelConfig(img_size=IMG, depth=1))


def pets_folder(root, count):
    for i in range(count):
        write_pair(root, f"breed_{i}")
    return root


def test_prepare_draws_disjoint_items_as_eval_tensors(probe):
    assert len(probe.train_names) == 8 and len(probe.score_names) == 4
    assert not set(probe.train_names) & set(probe.score_names)
    assert probe.images.shape == (12, 3, IMG, IMG) and probe.images.dtype == torch.float32
    assert probe.masks.shape == (12, IMG, IMG) and probe.masks.dtype == torch.int64
    assert set(probe.masks.unique().tolist()) <= {0, 1, 2}
    assert probe.classes == SYNTHETIC_TRIMAP  # the probe data's own classes
    assert prepare().train_names == probe.train_names  # the draw is a function of the seed
    assert prepare(seed=1).train_names != probe.train_names


@pytest.mark.parametrize("training", [True, False])
def test_score_leaves_encoder_untouched_and_repeats(probe, encoder, training):
    encoder.train(training)
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    first, second = probe.score(encoder), probe.score(encoder)
    after = encoder.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.grad is None for p in encoder.parameters())
    assert encoder.training is training
    assert set(first) == {"probe_miou", "probe_boundary_iou", "probe_seconds"}
    assert 0.0 <= first["probe_miou"] <= 1.0 and first["probe_seconds"] > 0
    assert {k: first[k] for k in ("probe_miou", "probe_boundary_iou")} == \
           {k: second[k] for k in ("probe_miou", "probe_boundary_iou")}


def test_excluded_names_never_drawn(tmp_path):
    folder = pets_folder(tmp_path / "pets", 10)
    cfg = probe_config(str(folder), subset="5", score_images=3)
    excluded = {"breed_0", "breed_3.jpg"}  # a name, and a file name matched by its stem
    probe = prepare(cfg, excluded)
    drawn = set(probe.train_names) | set(probe.score_names)
    assert len(drawn) == 8 and not drawn & {"breed_0", "breed_3"}
    # synthetic names repeat across streams: excluding some still leaves the full draw
    synthetic = prepare(exclude={"synthetic_00000", "synthetic_00001"})
    assert len(synthetic.train_names) == 8 and len(synthetic.score_names) == 4
    assert not {"synthetic_00000", "synthetic_00001"} & set(synthetic.train_names + synthetic.score_names)


def test_too_few_items_is_one_line(tmp_path):
    folder = pets_folder(tmp_path / "pets", 6)
    with pytest.raises(SimsegError) as err:
        prepare(probe_config(str(folder), subset="4", score_images=2), {"breed_1"})
    message = str(err.value)
    assert "\n" not in message and "probe.subset=4" in message and "probe.score_images=2" in message
    assert "holds 5" in message


def test_pixel_features_equal_interpolated_map():
    """The head trains on tokens upsampled at sampled pixels: they must be F.interpolate's values there."""
    tokens = torch.randn(2, 3 * 4, 5)  # (N, h*w, D) on a (3, 4) grid
    rows, cols = torch.randint(0, 24, (2, 7)), torch.randint(0, 20, (2, 7))
    picked = pixel_features(tokens, (3, 4), (24, 20), rows, cols)  # (N, K, D)
    upsampled = F.interpolate(tokens.transpose(1, 2).unflatten(2, (3, 4)), size=(24, 20), mode="bilinear",
                              align_corners=False)  # (N, D, 24, 20)
    expected = upsampled[torch.arange(2)[:, None], :, rows, cols]  # (N, K, D)
    torch.testing.assert_close(picked, expected)


def test_save_probe_curve(tmp_path):
    save_probe_curve(tmp_path, [{"epoch": 0, "train_loss": 1.0}])
    assert not (tmp_path / "probe.png").exists()  # no probe yet: no picture
    history = [{"epoch": 0, "probe_miou": 0.3, "probe_boundary_iou": 0.1}, {"epoch": 1},
               {"epoch": 2, "probe_miou": 0.4, "probe_boundary_iou": None}]
    save_probe_curve(tmp_path, history)
    assert (tmp_path / "probe.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_probe_on_classes_without_a_boundary_reports_its_miou_alone(encoder, tmp_path):
    """Two classes, no "boundary": no probe_boundary_iou key. Every training pixel is class 0, so the head predicts
    0 everywhere; the scored masks hold class 0 and unlabelled pixels (255, not counted), so class 0's IoU is 1,
    class 1's undefined, and the mIoU 1."""
    classes = LabelSet(("water", "land"), ((0, 0, 255), (0, 255, 0)))
    images = torch.randn(6, 3, IMG, IMG, generator=torch.Generator().manual_seed(0))
    masks = torch.zeros(6, IMG, IMG, dtype=torch.int64)
    masks[4:, :5] = 255
    probe = LinearProbe(probe_config(steps=20), images, masks, [f"t{i}" for i in range(4)], ["s0", "s1"], 0, classes)
    scores = probe.score(encoder)
    assert set(scores) == {"probe_miou", "probe_seconds"} and scores["probe_miou"] == 1.0
    save_probe_curve(tmp_path, [{"epoch": 0, **scores}])  # drawn without a boundary line
    assert (tmp_path / "probe.png").is_file()
