import json

import numpy as np
import pytest
from PIL import Image

from simseg.data.dataset_pairs import DatasetPairsSource
from simseg.data.label_set import PETS
from simseg.data.mask_classes import MaskOptions
from simseg.data.pair_sources import open_pairs_source
from tests.data.test_mask_formats import one_line_error

datasets = pytest.importorskip("datasets")
MASKS = [np.array([[0, 1], [2, 0]], dtype=np.uint8), np.array([[2, 2], [0, 1]], dtype=np.uint8),
         np.array([[0, 0], [1, 255]], dtype=np.uint8)]


def save(path, masks, extra=None, mask_feature=None):
    """A save_to_disk dataset of 2x2 images with ``masks`` (arrays -> single-channel PNGs) and ``extra`` columns."""
    rng = np.random.default_rng(0)
    columns = {"image": [Image.fromarray(rng.integers(0, 256, (2, 2, 3), dtype=np.uint8)) for _ in masks],
               "mask": [m if isinstance(m, Image.Image) else Image.fromarray(m) for m in masks]}
    features = {"image": datasets.Image(), "mask": mask_feature or datasets.Image()}
    for key, (feature, values) in (extra or {}).items():
        columns[key], features[key] = values, feature
    datasets.Dataset.from_dict(columns, features=datasets.Features(features)).save_to_disk(str(path))
    return path


def open_saved(path, **options):
    return open_pairs_source(str(path), stream="segment", synthetic_count=0, synthetic_seed=0, synthetic_size=48,
                             skip_unpaired=False, split="train", image_column="", mask_column="",
                             masks=MaskOptions(**options))


def test_class_names_from_a_list_of_class_labels(tmp_path):
    names = ["background", "road", "car"]
    listed = datasets.Sequence(datasets.ClassLabel(names=names))
    source = open_saved(save(tmp_path / "ds", MASKS, {"classes": (listed, [[0, 1, 2], [0, 1, 2], [0, 1]])}))
    assert isinstance(source, DatasetPairsSource) and source.groups is None
    assert source.label_set.names == tuple(names) and source.notes == []
    for index, mask in enumerate(MASKS):
        np.testing.assert_array_equal(source.pair(index)[1], mask)


def test_class_names_from_id2label_or_a_class_file_beside_the_data(tmp_path):
    path = save(tmp_path / "ds", MASKS)
    (path / "id2label.json").write_text(json.dumps({"1": "road", "0": "sky", "2": "car"}))
    assert open_saved(path).label_set.names == ("sky", "road", "car")
    (path / "classes.json").write_text(json.dumps({"names": ["a", "b", "c"]}))
    assert open_saved(path).label_set.names == ("a", "b", "c")
    (tmp_path / "mine.yaml").write_text("- x\n- y\n- z\n")
    assert open_saved(path, classes=str(tmp_path / "mine.yaml")).label_set.names == ("x", "y", "z")


def test_numbered_classes_from_the_masks_with_a_note(tmp_path):
    source = open_saved(save(tmp_path / "ds", MASKS))
    assert source.label_set.names == ("class_0", "class_1", "class_2") and len(source.notes) == 1
    np.testing.assert_array_equal(source.pair(2)[1], MASKS[2])


def test_binary_masks_need_the_label_map(tmp_path):
    binary = [np.array([[0, 255], [255, 0]], dtype=np.uint8), np.array([[0, 0], [0, 255]], dtype=np.uint8)]
    path = save(tmp_path / "ds", binary)
    source = open_saved(path)  # the masks are read on first use, not on opening
    one_line_error(lambda: source.label_set, "ds[0] column 'mask' holds only 0 and 255", "data.label_map=0:0,255:1")
    mapped = open_saved(path, label_map="0:0,255:1")
    assert mapped.pair(0)[1].tolist() == [[0, 1], [1, 0]] and mapped.label_set.values == (0, 255)
    assert mapped.fingerprint() != open_saved(path, label_map="0:1,255:0").fingerprint()


def test_trimap_values_are_read_as_pets(tmp_path):
    trimaps = [np.array([[1, 2], [3, 2]], dtype=np.uint8), np.array([[2, 2], [1, 1]], dtype=np.uint8)]
    source = open_saved(save(tmp_path / "ds", trimaps))
    assert source.label_set is PETS and "Oxford-IIIT Pet trimaps" in source.notes[0]
    assert source.pair(0)[1].tolist() == [[1, 0], [2, 0]]  # 1 pet, 2 background, 3 boundary


def test_palette_and_colour_masks(tmp_path):
    palette = []
    for mask in MASKS:
        image = Image.fromarray(mask, mode="P")
        image.putpalette([0, 0, 0, 10, 20, 30, 40, 50, 60] + [0] * 759)
        palette.append(image)
    source = open_saved(save(tmp_path / "p", palette))
    assert source.label_set.colours == ((0, 0, 0), (10, 20, 30), (40, 50, 60))
    np.testing.assert_array_equal(source.pair(1)[1], MASKS[1])
    colours = np.array([[0, 0, 0], [255, 0, 0], [0, 255, 0]], dtype=np.uint8)
    coloured = [Image.fromarray(colours[np.minimum(m, 2)]) for m in MASKS[:2]]
    path = save(tmp_path / "c", coloured)
    one_line_error(lambda: open_saved(path).label_set, "c[0] column 'mask' is a colour image", "data.classes")
    (path / "classes.json").write_text(json.dumps({"classes": [
        {"name": "bg", "colour": [0, 0, 0]}, {"name": "a", "colour": "#ff0000"}, {"name": "b", "colour": "#00ff00"}]}))
    np.testing.assert_array_equal(open_saved(path).pair(1)[1], MASKS[1])


def test_a_dataset_dict_with_a_test_split_gives_it(tmp_path):
    rows = {"image": [Image.new("RGB", (2, 2), (i, 0, 0)) for i in range(5)],
            "mask": [Image.fromarray(MASKS[i % 3]) for i in range(5)], "name": [f"n{i}" for i in range(5)]}
    table = datasets.Dataset.from_dict(rows, features=datasets.Features(
        {"image": datasets.Image(), "mask": datasets.Image(), "name": datasets.Value("string")}))
    datasets.DatasetDict({"train": table.select([0, 1, 2]), "test": table.select([3, 4])}).save_to_disk(
        str(tmp_path / "dd"))
    source = open_saved(tmp_path / "dd")
    assert source.names == ["n0", "n1", "n2", "n3", "n4"]
    assert source.given_split == {"train": [0, 1, 2], "test": [3, 4]}
    assert source.pair(3)[0].getpixel((0, 0)) == (3, 0, 0)
