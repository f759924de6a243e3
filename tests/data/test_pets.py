from collections import Counter

import numpy as np
import pytest
from PIL import Image

from simseg.data.dataset_pairs import DatasetPairsSource
from simseg.data.pair_sources import open_pairs_source
from simseg.data.pets import BACKGROUND, BOUNDARY, CLASS_NAMES, PET, OxfordPetsSource, trimap_to_classes
from simseg.data.splits import load_split, save_split, segmentation_splits
from simseg.data.synthetic import SHAPE_CLASSES, make_sample
from simseg.data.synthetic_pairs import SyntheticPairsSource
from simseg.errors import SimsegError
from tests.helpers import trimap, write_pair

BREEDS = ("Abyssinian", "american_bulldog", "beagle")


def open_source(source, **fields):
    options = dict(stream="segment", synthetic_count=12, synthetic_seed=0, synthetic_size=48, skip_unpaired=False,
                   split="train", image_column="", mask_column="")
    return open_pairs_source(str(source), **{**options, **fields})


@pytest.fixture
def pets(tmp_path):
    """An Oxford layout with 3 breeds, 4 pets each, mixed-case extensions and macOS litter."""
    root = tmp_path / "pets"
    for breed in BREEDS:
        for number in (1, 2, 10, 151):
            write_pair(root, f"{breed}_{number}", image_ext=".JPG" if number == 10 else ".jpg")
    (root / "images" / "._beagle_1.jpg").write_bytes(b"\x00\x05\x16\x07 apple double")
    (root / "annotations" / "trimaps" / "._beagle_1.png").write_bytes(b"\x00\x05\x16\x07 apple double")
    (root / "annotations" / "trimaps" / ".hidden.png").write_bytes(b"")
    (root / "images" / "beagle_1.mat").write_bytes(b"matlab")
    return root


def test_trimap_mapping_and_bad_values():
    assert CLASS_NAMES[BACKGROUND] == "background" and CLASS_NAMES[PET] == "pet" and CLASS_NAMES[BOUNDARY] == "boundary"
    classes = trimap_to_classes(np.array([[1, 2, 3]], dtype=np.uint8), "a.png")
    assert classes.dtype == np.uint8 and classes.tolist() == [[PET, BACKGROUND, BOUNDARY]]
    assert trimap_to_classes(np.array([[3, 1]], dtype=np.int32)).tolist() == [[BOUNDARY, PET]]
    with pytest.raises(SimsegError, match=r"trimap bad\.png holds values 0, 255 .*1 \(pet\)"):
        trimap_to_classes(np.array([[0, 1, 255]], dtype=np.uint8), "bad.png")


def test_oxford_pairs_breeds_and_hidden_files(pets):
    source = open_source(pets)
    assert isinstance(source, OxfordPetsSource) and len(source) == 12 and source.skipped == 0
    assert source.names[:4] == ["Abyssinian_1", "Abyssinian_10", "Abyssinian_151", "Abyssinian_2"]
    assert Counter(source.groups) == {breed: 4 for breed in BREEDS}
    image, mask = source.pair(source.names.index("american_bulldog_10"))
    assert image.mode == "RGB" and image.size == (20, 16)
    assert mask.dtype == np.uint8 and mask.shape == (16, 20) and set(np.unique(mask)) == {BACKGROUND, PET, BOUNDARY}
    assert mask[8, 10] == PET and mask[0, 10] == BACKGROUND and mask[2, 10] == BOUNDARY


def test_parent_folder_layout(pets, tmp_path):
    pets.rename(tmp_path / "oxford-iiit-pet")
    source = open_source(tmp_path)
    assert isinstance(source, OxfordPetsSource) and source.root == tmp_path / "oxford-iiit-pet" and len(source) == 12


@pytest.mark.parametrize("missing, message", [
    ("trimap", r"images/beagle_7\.jpg has no trimap \(2 images without a trimap and 0 trimaps without an image"),
    ("image", r"trimaps/beagle_7\.png has no image \(0 images without a trimap and 2 trimaps without an image")])
def test_unpaired_files_fail_or_are_skipped(pets, missing, message):
    for stem in ("beagle_7", "beagle_8"):
        write_pair(pets, stem, image_ext=None if missing == "image" else ".jpg",
                   trimap_size=False if missing == "trimap" else None)
    with pytest.raises(SimsegError, match=message + r" in .*: add the missing files or set data\.skip_unpaired=true"):
        open_source(pets)
    source = open_source(pets, skip_unpaired=True)
    assert len(source) == 12 and source.skipped == 2 and "beagle_7" not in source.names


def test_bad_pairs_name_the_file(pets):
    write_pair(pets, "beagle_20", trimap_size=(18, 16))
    write_pair(pets, "beagle_21", values=np.full((16, 20), 7, dtype=np.uint8))
    source = open_source(pets)
    with pytest.raises(SimsegError, match=r"trimap .*beagle_20\.png is 18x16 but its image is 20x16"):
        source.pair(source.names.index("beagle_20"))
    with pytest.raises(SimsegError, match=r"trimap .*beagle_21\.png holds values 7 "):
        source.pair(source.names.index("beagle_21"))
    (pets / "images" / "beagle_1.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(SimsegError, match=r"image .*beagle_1\.jpg cannot be read"):
        source.pair(source.names.index("beagle_1"))


def test_missing_and_empty_sources(tmp_path):
    with pytest.raises(SimsegError, match="does not exist: check the path"):
        open_source(tmp_path / "nowhere")
    (tmp_path / "empty" / "images").mkdir(parents=True)
    (tmp_path / "empty" / "annotations" / "trimaps").mkdir(parents=True)
    with pytest.raises(SimsegError, match="holds no image/trimap pairs"):
        open_source(tmp_path / "empty")
    (tmp_path / "flat").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "flat" / "a.jpg")
    with pytest.raises(SimsegError, match="is neither an Oxford-IIIT Pet folder"):
        open_source(tmp_path / "flat")


def test_datasets_pairs_source(tmp_path):
    import datasets

    rng = np.random.default_rng(0)
    features = datasets.Features({"trimap": datasets.Image(), "image": datasets.Image(), "file_name": datasets.Value(
        "string"), "breed": datasets.ClassLabel(names=list(BREEDS))})
    rows = {"trimap": [Image.fromarray(trimap(12, 14, i)) for i in range(6)],
            "image": [Image.fromarray(rng.integers(0, 256, (12, 14, 3), dtype=np.uint8)) for _ in range(6)],
            "file_name": [f"pet_{i}" for i in range(6)], "breed": [i % 3 for i in range(6)]}
    datasets.Dataset.from_dict(rows, features=features).save_to_disk(str(tmp_path / "ds"))
    source = open_source(tmp_path / "ds")
    assert isinstance(source, DatasetPairsSource) and len(source) == 6
    assert (source.image_column, source.mask_column) == ("image", "trimap")  # the mask column came first
    assert source.names == [f"pet_{i}" for i in range(6)] and source.groups == list(BREEDS) * 2
    image, mask = source.pair(4)
    assert image.mode == "RGB" and image.size == (14, 12)
    np.testing.assert_array_equal(mask, trimap_to_classes(trimap(12, 14, 4)))
    with pytest.raises(SimsegError, match="data.mask_column='seg' is not a column"):
        open_source(tmp_path / "ds", mask_column="seg")
    swapped = open_source(tmp_path / "ds", image_column="trimap", mask_column="image")
    with pytest.raises(SimsegError, match=r"\[0\] column 'image' is a colour image"):
        swapped.pair(0)


def test_synthetic_pairs_are_deterministic_with_all_classes():
    source = open_source("synthetic")
    again = SyntheticPairsSource(12, source._source.seed, 48)
    assert isinstance(source, SyntheticPairsSource) and len(source) == 12 and len(set(source.names)) == 12
    image, mask = source.pair(3)
    image2, mask2 = again.pair(3)
    assert image.size == (48, 48) and mask.shape == (48, 48)
    np.testing.assert_array_equal(np.asarray(image), np.asarray(image2))
    np.testing.assert_array_equal(mask, mask2)
    assert set(np.unique(mask)) == {BACKGROUND, PET, BOUNDARY}
    # the groups are computed without rendering: they must match the labels make_sample draws
    assert source.groups == [SHAPE_CLASSES[make_sample(source._source.seed, i, 48).label] for i in range(12)]
    assert open_source("synthetic", stream="pretrain")._source.seed != source._source.seed


def pool_groups(count=2000, seed=0):
    """Three unequal groups (50%, 30%, 20%), shuffled."""
    labels = np.array(["a"] * (count // 2) + ["b"] * (count * 3 // 10) + ["c"] * (count // 5))
    return np.random.default_rng(seed).permutation(labels).tolist()


def test_a_test_seed_keeps_one_test_set_across_training_seeds():
    groups = pool_groups()
    a, b = (segmentation_splits(2000, 200, 500, seed=s, groups=groups, test_seed=3) for s in (0, 1))
    np.testing.assert_array_equal(a["test"], b["test"])
    np.testing.assert_array_equal(a["test"], segmentation_splits(2000, 200, 500, seed=3, groups=groups)["test"])
    assert not np.array_equal(a["train"], b["train"]) and not set(b["test"]) & set(b["train"])


def test_splits_are_seeded_nested_disjoint_and_stratified():
    groups = pool_groups()
    splits = {n: segmentation_splits(2000, 200, n, seed=7, groups=groups, val_size=20) for n in (250, 500, 1000)}
    same = segmentation_splits(2000, 200, 500, seed=7, groups=groups, val_size=20)
    other = segmentation_splits(2000, 200, 500, seed=8, groups=groups, val_size=20)
    assert all(np.array_equal(same[k], splits[500][k]) for k in ("test", "train", "val"))
    assert not np.array_equal(other["test"], same["test"]) and not np.array_equal(other["train"], same["train"])
    no_val = segmentation_splits(2000, 200, None, seed=7, groups=groups)
    for split in [*splits.values(), no_val]:
        np.testing.assert_array_equal(split["test"], splits[250]["test"])  # independent of subset and val_size
        assert not set(split["test"]) & (set(split["train"]) | set(split["val"]))
    assert len(no_val["train"]) == 1800 and len(no_val["val"]) == 0
    assert set(splits[250]["train"]) < set(splits[500]["train"]) < set(splits[1000]["train"])
    np.testing.assert_array_equal(splits[250]["val"], splits[1000]["val"])
    pool = Counter(groups)
    for split in splits.values():
        for part in ("test", "train", "val"):
            got = Counter(groups[i] for i in split[part])
            for group, size in pool.items():
                assert abs(got[group] - size * len(split[part]) / 2000) <= 2, (part, group, got)
    for n in range(1, 100):  # every prefix, not only round sizes
        got = Counter(groups[i] for i in segmentation_splits(2000, 200, n, 7, groups)["train"])
        assert all(abs(got[g] - pool[g] * n / 2000) <= 2 for g in pool)


def test_splits_without_groups_and_with_singleton_groups():
    plain = segmentation_splits(50, 10, 20, seed=1, groups=None, val_size=5)
    assert [len(plain[k]) for k in ("test", "val", "train")] == [10, 5, 20]
    rare = ["x"] * 40 + ["lonely", "alone"] + ["y"] * 8  # single-item groups are pooled for the test draw
    assert len(segmentation_splits(50, 10, None, seed=1, groups=rare)["train"]) == 40
    many = [str(i // 2) for i in range(50)]  # 25 groups cannot be stratified into 10 test items: plain draw
    assert len(segmentation_splits(50, 10, None, seed=1, groups=many)["test"]) == 10


def test_split_errors_give_the_counts():
    with pytest.raises(SimsegError, match=r"data.subset=2k asks for 2,000 training images but pets has only 1,149 "
                                          r"left after the 1,000-image test set \(and 20 for validation\): "
                                          r"choose data.subset <= 1,149"):
        segmentation_splits(2169, 1000, 2000, seed=0, groups=None, val_size=20, source_name="pets")
    with pytest.raises(SimsegError, match=r"data.test_size=1,169 .* has 1,169"):
        segmentation_splits(1169, 1169, None, seed=0, groups=None)
    with pytest.raises(SimsegError, match=r"data.val_size=10 leaves no training images"):
        segmentation_splits(20, 10, None, seed=0, groups=None, val_size=10)


def test_save_and_load_split(tmp_path):
    names = ["Abyssinian_1", "beagle 2", "american_bulldog_151"]
    save_split(tmp_path / "run" / "test_split.txt", names)
    assert load_split(tmp_path / "run" / "test_split.txt") == names
    save_split(tmp_path / "empty.txt", [])
    assert load_split(tmp_path / "empty.txt") == []
    with pytest.raises(SimsegError, match="does not exist"):
        load_split(tmp_path / "nothing.txt")
