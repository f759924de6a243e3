"""Pretraining on a list of sources (their union) and without the images ``data.exclude`` names."""

import numpy as np
import pytest

from simseg.config.loader import load_config
from simseg.config.pretrain import PretrainConfig, PretrainDataConfig
from simseg.data.cache_build import build_cache
from simseg.data.image_cache import CacheSpec
from simseg.data.sources import FolderSource, SubsetSource, UnionSource
from simseg.data.unlabelled import open_image_source, open_pretraining_images, pretraining_split
from simseg.errors import SimsegError
from tests.helpers import write_images


def pixels(source, index):
    return np.asarray(source.image(index))


@pytest.fixture
def two_folders(tmp_path):
    """Folder a: a0.png..a2.png; folder b: b0.jpg, b1.png, and a2.png (a name both share); distinct pixels."""
    write_images(tmp_path / "a", ["a0.png", "a1.png", "a2.png"], seed=1)
    write_images(tmp_path / "b", ["b0.jpg", "b1.png", "a2.png"], seed=2)
    return tmp_path / "a", tmp_path / "b"


def opened(sources, exclude=""):
    return open_pretraining_images(PretrainDataConfig(source=sources, exclude=exclude), stream="pretrain")


def test_a_list_is_the_union_in_order(two_folders):
    a, b = two_folders
    union = open_image_source(PretrainDataConfig(source=[str(a), str(b)]), stream="pretrain")
    assert isinstance(union, UnionSource) and len(union) == 6 and union.name == f"{a} + {b}"
    assert [union.item_file_name(i) for i in range(6)] == ["a0.png", "a1.png", "a2.png", "a2.png", "b0.jpg", "b1.png"]
    parts = FolderSource(a), FolderSource(b)
    expected = [pixels(parts[0], i) for i in range(3)] + [pixels(parts[1], i) for i in range(3)]
    assert all(np.array_equal(pixels(union, i), e) for i, e in enumerate(expected))
    with pytest.raises(IndexError):
        union.image(6)
    _, val = pretraining_split(union, PretrainDataConfig(source=[str(a), str(b)], val_size="2"), seed=0)
    assert len(val) == 2


def test_one_element_list_is_the_plain_source_and_a_list_override_opens_the_union(two_folders):
    a, b = two_folders
    single = open_image_source(PretrainDataConfig(source=[str(a)]), stream="pretrain")
    assert isinstance(single, FolderSource) and single.fingerprint() == FolderSource(a).fingerprint()
    cfg = load_config(PretrainConfig, None, [f"data.source=[{a},{b}]"])
    assert isinstance(open_image_source(cfg.data, "pretrain"), UnionSource)


def test_bad_lists_fail_in_one_line(two_folders):
    a, _ = two_folders
    for sources, message in [([], "data.source is an empty list"), ([str(a), str(a)], "lists .* twice"),
                             ([str(a), ""], "empty source")]:
        with pytest.raises(SimsegError, match=message) as err:
            open_image_source(PretrainDataConfig(source=sources), stream="pretrain")
        assert "\n" not in str(err.value)


def test_exclusion_by_stem_and_by_file_name(two_folders, tmp_path):
    a, b = two_folders
    union = open_image_source(PretrainDataConfig(source=[str(a), str(b)]), stream="pretrain")
    listed = tmp_path / "test_images.txt"
    # a2 (a stem) drops both folders' a2.png; b0.jpg (a file name) drops b0; b1.jpg is no file here, so b1.png stays
    listed.write_text("# held-out images\n\na2\n  b0.jpg   # flagged\nb1.jpg\nnot_here\n")
    source, record = opened([str(a), str(b)], exclude=str(listed))
    assert isinstance(source, SubsetSource) and len(source) == 3
    assert [source.item_file_name(i) for i in range(3)] == ["a0.png", "a1.png", "b1.png"]
    assert record["excluded"] == 3 and record["listed"] == 4 and record["excluded_names"] == ["a2", "b0.jpg"]
    assert record["exclude"] == str(listed) and len(record["exclude_sha256"]) == 64
    # no index of the view yields an excluded image
    dropped = [pixels(union, i) for i in (2, 3, 4)]
    for i in range(len(source)):
        assert not any(np.array_equal(pixels(source, i), d) for d in dropped)
    # the view is another source to the automatic cache: a cache of the whole union is never reused for it
    assert source.fingerprint() != union.fingerprint() and source.name != union.name
    train, val = pretraining_split(source, PretrainDataConfig(val_size="1"), seed=0)
    assert sorted([*train, *val]) == [0, 1, 2]


def test_exclusion_that_matches_nothing_keeps_the_source(two_folders, tmp_path):
    a, _ = two_folders
    (tmp_path / "none.txt").write_text("zebra_1\n")
    source, record = opened(str(a), exclude=str(tmp_path / "none.txt"))
    assert isinstance(source, FolderSource) and len(source) == 3
    assert record["excluded"] == 0 and record["excluded_names"] == [] and record["listed"] == 1
    assert opened(str(a))[1] == {}


def test_synthetic_items_are_named_and_excludable(tmp_path):
    (tmp_path / "x.txt").write_text("synthetic_0\nsynthetic_5\n")
    source, record = open_pretraining_images(
        PretrainDataConfig(source="synthetic", synthetic_size=8, exclude=str(tmp_path / "x.txt")), "pretrain")
    assert len(source) == 6 and record["excluded"] == 2
    assert [source.item_name(i) for i in range(6)] == [f"synthetic_{i}" for i in (1, 2, 3, 4, 6, 7)]


def test_dataset_items_named_by_a_name_column_or_their_row(tmp_path):
    datasets = pytest.importorskip("datasets")
    paths = write_images(tmp_path / "raw", [f"{i}.png" for i in range(4)])
    features = datasets.Features({"image": datasets.Image(), "image_id": datasets.Value("string")})
    ids = ["Abyssinian_1", "Abyssinian_2", "images/beagle_3.jpg", "beagle_4"]
    datasets.Dataset.from_dict({"image": [str(p) for p in paths], "image_id": ids},
                               features=features).save_to_disk(str(tmp_path / "named"))
    datasets.Dataset.from_dict({"image": [str(p) for p in paths]},
                               features=datasets.Features({"image": datasets.Image()})).save_to_disk(
        str(tmp_path / "rows"))
    (tmp_path / "x.txt").write_text("Abyssinian_2\nbeagle_3\n2\n")
    named, record = opened(str(tmp_path / "named"), exclude=str(tmp_path / "x.txt"))
    assert [named.item_name(i) for i in range(2)] == ["Abyssinian_1", "beagle_4"]
    assert record["excluded_names"] == ["Abyssinian_2", "beagle_3"]
    rows, record = opened(str(tmp_path / "rows"), exclude=str(tmp_path / "x.txt"))
    assert [rows.item_name(i) for i in range(3)] == ["0", "1", "3"] and record["excluded_names"] == ["2"]


def test_missing_exclude_file_fails_in_one_line(two_folders, tmp_path):
    a, _ = two_folders
    with pytest.raises(SimsegError, match=r"data.exclude=.*nowhere.txt cannot be read .*one image name per line"):
        opened(str(a), exclude=str(tmp_path / "nowhere.txt"))
    (tmp_path / "all.txt").write_text("a0\na1\na2\n")
    with pytest.raises(SimsegError, match="names every image"):
        opened(str(a), exclude=str(tmp_path / "all.txt"))


def test_exclusion_on_an_image_cache_is_refused_and_done_when_building_it(two_folders, tmp_path):
    a, b = two_folders
    (tmp_path / "x.txt").write_text("a1\n")
    excluded, _ = opened(str(a), exclude=str(tmp_path / "x.txt"))
    cache = build_cache(excluded, tmp_path / "cache", CacheSpec(16), progress=False)
    source, record = opened(str(cache))
    assert len(source) == 2 and record == {}
    for sources in (str(cache), [str(cache), str(b)]):
        with pytest.raises(SimsegError, match=r"cannot be applied to the image cache .*keeps no image names; "
                                              r"exclude when building the cache .* or point data.source") as err:
            opened(sources, exclude=str(tmp_path / "x.txt"))
        assert "\n" not in str(err.value)


def test_a_pets_folder_pretrains_on_its_photos_not_its_trimaps(tmp_path):
    from simseg.config.pretrain import PretrainDataConfig
    from simseg.data.unlabelled import open_image_source
    from tests.helpers import write_pair

    for stem in ("Abyssinian_1", "Abyssinian_2", "beagle_3"):
        write_pair(tmp_path / "pets", stem)
    for source in (tmp_path / "pets", tmp_path):  # the folder, or the one holding oxford-iiit-pet/ ... as pets does
        if source == tmp_path:
            (tmp_path / "pets").rename(tmp_path / "oxford-iiit-pet")
        opened = open_image_source(PretrainDataConfig(source=str(source)), stream="pretrain")
        assert sorted(opened.item_file_name(i) for i in range(len(opened))) == [
            "Abyssinian_1.jpg", "Abyssinian_2.jpg", "beagle_3.jpg"]
