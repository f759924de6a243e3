import numpy as np
import pytest

from simseg.config.pretrain import PretrainDataConfig
from simseg.data.sources import DatasetSource, FolderSource
from simseg.data.unlabelled import default_val_size, open_image_source, split_indices
from simseg.errors import SimsegError
from tests.helpers import write_images


def source_for(path, **fields):
    return open_image_source(PretrainDataConfig(source=str(path), **fields), stream="test")


def test_imagefolder_layout_with_mixed_case_extensions(tmp_path):
    write_images(tmp_path, ["cat/a.JPG", "cat/b.jpeg", "dog/c.png", "dog/d.WebP", "e.Png"])
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "dog" / ".hidden.jpg").write_bytes(b"")
    source = source_for(tmp_path)
    assert isinstance(source, FolderSource) and len(source) == 5
    assert [p.name for p in source.files] == ["e.Png", "a.JPG", "b.jpeg", "c.png", "d.WebP"]  # sorted, stable
    image = source.image(3)
    assert image.mode == "RGB" and image.size == (40, 32)


def test_greyscale_and_palette_images_come_back_rgb(tmp_path):
    from PIL import Image
    Image.new("L", (8, 8), 100).save(tmp_path / "grey.png")
    Image.new("P", (8, 8)).save(tmp_path / "palette.png")
    source = source_for(tmp_path)
    assert {source.image(i).mode for i in range(2)} == {"RGB"}


def test_corrupt_image_error_names_the_file(tmp_path):
    write_images(tmp_path, ["good.jpg"])
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    source = source_for(tmp_path)
    with pytest.raises(SimsegError, match=r"image .*broken.jpg cannot be read .*delete or replace"):
        source.image(0)


def test_missing_and_empty_sources(tmp_path):
    with pytest.raises(SimsegError, match="does not exist: check the path"):
        source_for(tmp_path / "nowhere")
    with pytest.raises(SimsegError, match="does not exist"):
        source_for("./no/such/folder")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SimsegError, match="holds no images"):
        source_for(tmp_path / "empty")


def test_unknown_hub_name_fails_in_one_line(monkeypatch):
    # The variables are read when the libraries load, which an earlier test may have done: set the flags too, or the
    # hub is asked (and, with no network, the test waits ~20 s for its retries).
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    datasets = pytest.importorskip("datasets")
    import huggingface_hub.constants

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True, raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(SimsegError, match="could not be loaded from the hub") as err:
        source_for("nobody/no-such-dataset-xyz")
    assert "\n" not in str(err.value)


@pytest.fixture
def hf_dataset(tmp_path):
    datasets = pytest.importorskip("datasets")
    paths = write_images(tmp_path / "raw", [f"{i}.png" for i in range(6)])
    features = datasets.Features({"picture": datasets.Image(), "label": datasets.Value("int64")})
    return datasets.Dataset.from_dict({"picture": [str(p) for p in paths], "label": list(range(6))}, features=features)


def test_save_to_disk_dataset_finds_its_image_column(tmp_path, hf_dataset):
    hf_dataset.save_to_disk(str(tmp_path / "saved"))
    source = source_for(tmp_path / "saved")
    assert isinstance(source, DatasetSource) and len(source) == 6 and source.column == "picture"
    assert source.image(2).mode == "RGB" and source.image(2).size == (40, 32)


def test_dataset_dict_split_and_parquet_files(tmp_path, hf_dataset):
    import datasets
    datasets.DatasetDict({"train": hf_dataset, "test": hf_dataset.select([0, 1])}).save_to_disk(str(tmp_path / "dd"))
    assert len(source_for(tmp_path / "dd", split="test")) == 2
    with pytest.raises(SimsegError, match="data.split='val' is not in .* it has train, test"):
        source_for(tmp_path / "dd", split="val")
    (tmp_path / "pq").mkdir()
    hf_dataset.to_parquet(str(tmp_path / "pq" / "part-0.parquet"))
    source = source_for(tmp_path / "pq")
    assert len(source) == 6 and np.asarray(source.image(1)).shape == (32, 40, 3)
    with pytest.raises(SimsegError, match="data.image_column='img' is not a column"):
        source_for(tmp_path / "pq", image_column="img")


def test_synthetic_source_is_deterministic_and_separates_streams():
    cfg = PretrainDataConfig(source="synthetic", synthetic_size=10, synthetic_image_size=64)
    a, b = open_image_source(cfg, "pretrain"), open_image_source(cfg, "pretrain")
    assert len(a) == 10 and np.array_equal(np.asarray(a.image(3)), np.asarray(b.image(3)))
    other = open_image_source(cfg, "segment")
    assert not np.array_equal(np.asarray(a.image(3)), np.asarray(other.image(3)))


def test_split_is_seeded_disjoint_and_nested():
    train_small, val = split_indices(1000, 10, 250, seed=0, source_name="x")
    train_big, val_again = split_indices(1000, 10, 500, seed=0, source_name="x")
    assert len(train_small) == 250 and len(val) == 10
    assert np.array_equal(val, val_again)  # held-out images do not depend on the subset size
    assert set(train_small) <= set(train_big) and not set(train_big) & set(val)
    assert not np.array_equal(split_indices(1000, 10, 250, seed=1, source_name="x")[0], train_small)
    everything, _ = split_indices(1000, 10, None, seed=0, source_name="x")
    assert len(everything) == 990


def test_subset_bigger_than_the_data_says_how_many_there_are():
    with pytest.raises(SimsegError, match=r"data.subset=2k asks for 2,000 training images but pets has 1,169 "
                                          r"\(1,157 after holding out 12"):
        split_indices(1169, 12, 2000, seed=0, source_name="pets")


def test_default_val_size():
    assert [default_val_size(n) for n in (40, 1000, 45_000, 200_000)] == [1, 10, 450, 500]
