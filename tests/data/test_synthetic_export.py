import numpy as np
import pytest

import simseg.cli as cli
import simseg.data.synthetic_export as export
from simseg.data.dataset_pairs import DatasetPairsSource
from simseg.data.mask_classes import MaskOptions
from simseg.data.mask_folder import MaskFolderSource
from simseg.data.pair_sources import open_pairs_source
from simseg.data.synthetic import BACKGROUND, BOUNDARY, FOREGROUND, SHAPE_CLASSES
from simseg.data.synthetic_pairs import SYNTHETIC_SHAPES, SyntheticPairsSource, shape_classes
from simseg.errors import SimsegError
from tests.data.test_mask_formats import one_line_error

COUNT, SIZE, SEED = 12, 48, 3


def open_written(path, label_map=""):
    return open_pairs_source(str(path), stream="segment", synthetic_count=0, synthetic_seed=0, synthetic_size=48,
                             skip_unpaired=False, split="train", image_column="", mask_column="",
                             masks=MaskOptions(label_map=label_map))


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """Every layout of the same 12 synthetic images, once per module (and the mask folder also split)."""
    root = tmp_path_factory.mktemp("layouts")
    paths = {layout: export.write_synthetic(root / layout, layout, COUNT, SIZE, SEED) for layout in export.LAYOUTS}
    for layout in ("mask-folder", "hf"):
        paths[f"{layout} split"] = export.write_synthetic(root / f"{layout}_split", layout, COUNT, SIZE, SEED, True)
    return paths


@pytest.fixture(scope="module")
def truth():
    source = SyntheticPairsSource(COUNT, SEED, SIZE, "shapes")
    return source, [source.pair(i) for i in range(COUNT)]


@pytest.mark.parametrize("layout", ["mask-folder", "palette", "colour", "hf"])
def test_every_layout_reads_back_the_same_pairs_and_classes(written, truth, layout):
    source, pairs = truth
    read = open_written(written[layout])
    assert isinstance(read, DatasetPairsSource if layout == "hf" else MaskFolderSource)
    assert read.names == source.names and read.given_split is None and read.notes == []
    assert read.label_set.names == SYNTHETIC_SHAPES.names and read.label_set.colours == SYNTHETIC_SHAPES.colours
    assert read.label_set.values == tuple(range(7))
    for index, (image, ids) in enumerate(pairs):
        got_image, got_ids = read.pair(index)
        np.testing.assert_array_equal(np.asarray(got_image), np.asarray(image))
        np.testing.assert_array_equal(got_ids, ids)
        assert got_ids.dtype == np.uint8


def test_binary_layout_is_refused_then_read_with_the_label_map(written, truth):
    source, pairs = truth
    one_line_error(lambda: open_written(written["binary"]), "_mask.png holds only 0 and 255",
                   "set data.label_map=0:0,255:1")
    read = open_written(written["binary"], "0:0,255:1")
    assert read.names == source.names and read.label_set.names == ("class_0", "class_1")
    assert read.label_set.values == (0, 255) and len(read.notes) == 1
    for index, (_, ids) in enumerate(pairs):
        np.testing.assert_array_equal(read.pair(index)[1], (ids > 0).astype(np.uint8))


@pytest.mark.parametrize("layout", ["mask-folder split", "hf split"])
def test_split_layouts_give_their_split(written, truth, layout):
    read = open_written(written[layout])
    assert read.given_split == {"train": list(range(9)), "test": [9, 10, 11]}
    assert read.names == truth[0].names
    np.testing.assert_array_equal(read.pair(10)[1], truth[1][10][1])


def test_shape_classes_split_the_boundary_band_at_the_edge():
    f, b, x = FOREGROUND, BACKGROUND, BOUNDARY
    trimap = np.array([[f, f, x, x, x, x, b, b]] * 2, dtype=np.uint8)  # the band's 4 px: 2 inside, 2 outside
    assert shape_classes(trimap, 3).tolist() == [[4, 4, 4, 4, 0, 0, 0, 0]] * 2
    odd = np.array([[f, x, x, x, b]], dtype=np.uint8)  # the middle pixel is as near either side: background
    assert shape_classes(odd, 0).tolist() == [[1, 1, 0, 0, 0]]


def test_the_shapes_source_labels_each_shape_as_its_class():
    shapes, trimaps = SyntheticPairsSource(6, 1, 48, "shapes"), SyntheticPairsSource(6, 1, 48)
    assert shapes.label_set.names == ("background", *SHAPE_CLASSES) and shapes.groups == trimaps.groups
    assert shapes.fingerprint() != trimaps.fingerprint()
    for index in range(6):
        (image, ids), (same, trimap_ids) = shapes.pair(index), trimaps.pair(index)
        np.testing.assert_array_equal(np.asarray(image), np.asarray(same))
        shape_id = 1 + SHAPE_CLASSES.index(shapes.groups[index])
        assert set(np.unique(ids)) == {0, shape_id}
        assert (ids[trimap_ids == 1] == shape_id).all() and (ids[trimap_ids == 0] == 0).all()
    assert open_written("synthetic-shapes").label_set is SYNTHETIC_SHAPES


def test_cli_writes_a_layout_and_says_how_to_segment_on_it(tmp_path, capsys):
    out = cli.data(["synthetic", "--out", str(tmp_path / "bin"), "--layout", "binary", "--count", "4", "--size", "32"])
    assert sorted(p.name for p in (out / "masks").iterdir())[0] == "synthetic_00000_mask.png"
    assert capsys.readouterr().out.strip().endswith(
        f"segment on them with: simseg segment data.source={out} data.test_size=1 data.label_map=0:0,255:1")
    with pytest.raises(SimsegError, match="exists and is not an empty folder"):
        cli.data(["synthetic", "--out", str(out), "--layout", "hf"])


def test_a_failed_write_leaves_nothing_behind(tmp_path, monkeypatch):
    def broken(*args):
        raise OSError("disk full")

    monkeypatch.setattr(export, "_mask_image", broken)
    with pytest.raises(OSError):
        export.write_synthetic(tmp_path / "out", "colour", 4, 32)
    assert list(tmp_path.iterdir()) == []
