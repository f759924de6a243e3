import io
import json

import numpy as np
import pytest
from PIL import Image

from simseg.config.segment_data import parse_label_map
from simseg.data.class_file import read_class_file
from simseg.data.label_set import default_colours
from simseg.data.mask_classes import MaskOptions, MaskScan, resolve_classes, scan_masks
from simseg.data.mask_formats import MaskMapping, check_size, decode_mask
from simseg.errors import SimsegError

IDS = np.array([[0, 1, 2], [2, 255, 0]], dtype=np.uint8)
COLOURS = {(0, 0, 0): 0, (255, 0, 0): 1, (0, 0, 255): 2}


def one_line_error(call, *patterns):
    """The error ``call`` raises: one line, holding every pattern."""
    with pytest.raises(SimsegError) as err:
        call()
    message = str(err.value)
    assert "\n" not in message and all(p in message for p in patterns), message
    return message


def identity(count):
    return MaskMapping({i: i for i in range(count)})


def test_index_masks_8_and_16_bit_and_grey_saved_as_rgb():
    np.testing.assert_array_equal(decode_mask(Image.fromarray(IDS, mode="L"), identity(3), "a.png"), IDS)
    deep = Image.fromarray(np.array([[0, 1000], [65535, 1000]], dtype=np.uint16))
    assert deep.mode.startswith("I;16")
    mapped = decode_mask(deep, MaskMapping({0: 0, 1000: 1, 65535: 255}), "deep.png")
    assert mapped.dtype == np.uint8 and mapped.tolist() == [[0, 1], [255, 1]]
    grey = Image.fromarray(np.repeat(IDS[..., None], 3, axis=2), mode="RGB")  # all channels equal: single-channel
    np.testing.assert_array_equal(decode_mask(grey, identity(3), "grey.png"), IDS)
    np.testing.assert_array_equal(decode_mask(IDS.astype(np.int64), identity(3), "row 0"), IDS)  # a dataset's array


def test_palette_masks_give_their_indices_not_their_colours():
    mask = Image.fromarray(IDS, mode="P")
    mask.putpalette([0, 0, 0, 200, 10, 10, 10, 10, 200] + [0] * 759)
    np.testing.assert_array_equal(decode_mask(mask, identity(3), "p.png"), IDS)
    label_set, _, notes = resolve_classes(MaskOptions(), "p", names=["bg", "a", "b"], first_mask=lambda: mask)
    assert label_set.colours == ((0, 0, 0), (200, 10, 10), (10, 10, 200)) and notes == []


def test_colour_masks_map_exactly_and_name_an_unknown_colour():
    rgb = np.array([[[0, 0, 0], [255, 0, 0], [0, 0, 255]]], dtype=np.uint8)
    mapping = MaskMapping({}, COLOURS)
    assert decode_mask(Image.fromarray(rgb), mapping, "c.png").tolist() == [[0, 1, 2]]
    rgb[0, 1] = 127
    one_line_error(lambda: decode_mask(Image.fromarray(rgb), mapping, "masks/c.png"),
                   "mask masks/c.png holds colour #7f7f7f", "class file")
    one_line_error(lambda: decode_mask(Image.fromarray(rgb), identity(3), "masks/c.png"),
                   "masks/c.png is a colour image", "data.classes")


def test_unknown_values_name_the_file_the_values_and_the_key():
    mask = Image.fromarray(np.array([[0, 7, 9]], dtype=np.uint8))
    one_line_error(lambda: decode_mask(mask, identity(3), "masks/x.png"),
                   "mask masks/x.png holds values 7, 9", "data.label_map")
    assert decode_mask(mask, MaskMapping({0: 0, 7: 1, 9: 255}), "x").tolist() == [[0, 1, 255]]


def jpeg(values):
    buffer = io.BytesIO()
    Image.fromarray(values).save(buffer, format="JPEG", quality=75)
    return Image.open(io.BytesIO(buffer.getvalue()))


def test_jpeg_masks_need_a_threshold_and_a_label_map():
    values = np.zeros((8, 24), dtype=np.uint8)
    values[:, 12:] = 255  # an edge inside JPEG's second 8x8 block
    one_line_error(lambda: decode_mask(jpeg(values), MaskMapping({0: 0, 255: 1}), "masks/k.jpg"),
                   "mask masks/k.jpg is a JPEG", "data.mask_threshold=128", "data.label_map=0:0,255:1")
    stored = np.asarray(jpeg(values))
    assert len(np.unique(stored)) > 2  # the lossy edge holds in-between values
    ids = decode_mask(jpeg(values), MaskMapping({0: 0, 255: 1}, threshold=128), "masks/k.jpg")
    np.testing.assert_array_equal(ids, (stored >= 128).astype(np.uint8))
    np.testing.assert_array_equal(ids[:, :8], 0)
    np.testing.assert_array_equal(ids[:, 16:], 1)


def test_binary_masks_are_refused_without_a_label_map():
    zero_255 = [(np.array([[0, 255]], dtype=np.uint8), "m/a.png"), (np.zeros((1, 2), dtype=np.uint8), "m/b.png")]
    one_line_error(lambda: resolve_classes(MaskOptions(), "d", scan=lambda: scan_masks(zero_255)),
                   "mask m/a.png holds only 0 and 255", "set data.label_map=0:0,255:1")
    zero_one = [(Image.fromarray(np.array([[0, 1]], dtype=np.uint8)), "m/c.png")]
    one_line_error(lambda: resolve_classes(MaskOptions(), "d", scan=lambda: scan_masks(zero_one)),
                   "mask m/c.png holds only 0 and 1", "set data.label_map=0:0,1:1")
    label_set, mapping, notes = resolve_classes(MaskOptions(label_map="0:0,255:1"), "d")
    assert label_set.names == ("class_0", "class_1") and label_set.values == (0, 255)
    assert decode_mask(zero_255[0][0], mapping, "m/a.png").tolist() == [[0, 1]]
    assert len(notes) == 1 and "class_0..class_1" in notes[0] and "data.classes" in notes[0]


def test_ids_found_in_the_masks_are_numbered_with_one_note():
    masks = [(np.array([[0, 3, 255]], dtype=np.uint8), "a"), (np.array([[1, 0]], dtype=np.uint8), "b")]
    scan = scan_masks(masks)
    assert scan.values == {0, 1, 3, 255} and scan.first_with[1] == "b"
    label_set, mapping, notes = resolve_classes(MaskOptions(), "cells", scan=lambda: scan)
    assert label_set.names == ("class_0", "class_1", "class_2", "class_3")
    assert label_set.colours == default_colours(4) and mapping.values == {0: 0, 1: 1, 2: 2, 3: 3}
    assert notes == ["cells: no class file, so the class ids found in the masks (0..3) are named class_0..class_3; "
                     "name them in a class file (data.classes=FILE)"]
    one_line_error(lambda: resolve_classes(MaskOptions(), "d", scan=lambda: MaskScan({0: "a.png", 300: "big.png"})),
                   "big.png holds the value 300", "data.label_map")


def test_class_file_forms(tmp_path):
    full = tmp_path / "classes.json"
    full.write_text(json.dumps({"title": "lesions", "ignore": [128, "#c0c0c0"], "classes": [
        {"name": "background", "colour": [0, 0, 0], "value": 0},
        {"name": "lesion", "colour": "#ff0000", "value": 255}]}))
    spec = read_class_file(full)
    assert spec.label_set.names == ("background", "lesion") and spec.label_set.title == "lesions"
    assert spec.label_set.colours == ((0, 0, 0), (255, 0, 0)) and spec.label_set.values == (0, 255)
    assert spec.values == {0: 0, 255: 1, 128: 255} and spec.colours == {(0, 0, 0): 0, (255, 0, 0): 1,
                                                                         (192, 192, 192): 255}
    (tmp_path / "names.json").write_text('{"names": ["a", "b", "c"]}')
    names = read_class_file(tmp_path / "names.json")
    assert names.label_set.names == ("a", "b", "c") and names.values == {0: 0, 1: 1, 2: 2} and names.colours == {}
    (tmp_path / "classes.yaml").write_text("- road\n- car\n")
    assert read_class_file(tmp_path / "classes.yaml").label_set.names == ("road", "car")
    (tmp_path / "ids.json").write_text(json.dumps({"classes": [{"id": 1, "name": "pet", "colour": [1, 2, 3]},
                                                               {"id": 0, "name": "bg", "colour": [0, 0, 0]}]}))
    assert read_class_file(tmp_path / "ids.json").label_set.names == ("bg", "pet")


@pytest.mark.parametrize("record, message", [
    ({"classes": [{"name": "a", "colour": "red"}]}, "colour 'red' is not [r, g, b]"),
    ({"classes": [{"name": "a", "colour": "#010101"}, {"name": "b", "colour": [1, 1, 1]}]}, "share the colour #010101"),
    ({"classes": [{"name": "a", "value": 3}, {"name": "b", "value": 3}]}, "two classes have the value 3"),
    ({"classes": ["a", "a"]}, "class name 'a' is given twice"),
    ({"title": "x"}, "holds no class list")])
def test_class_file_errors_name_the_file(tmp_path, record, message):
    path = tmp_path / "classes.json"
    path.write_text(json.dumps(record))
    one_line_error(lambda: read_class_file(path), f"class file {path}", message)


def test_class_file_with_label_map_and_palette_colours():
    spec_mask = Image.fromarray(np.array([[0, 1]], dtype=np.uint8), mode="P")
    spec_mask.putpalette([9, 9, 9, 90, 90, 90] + [0] * 762)
    label_set, mapping, _ = resolve_classes(MaskOptions(label_map="0:0,255:1"), "d", names=["bg", "fg"],
                                            first_mask=lambda: spec_mask)
    # the label map replaces the values the data's names imply: 1 is no longer a class value, 255 is fg's
    assert mapping.values == {0: 0, 255: 1} and label_set.values == (0, 255)
    assert label_set.colours == ((9, 9, 9), (90, 90, 90))
    one_line_error(lambda: resolve_classes(MaskOptions(label_map="255:2"), "d", names=["bg", "fg"]),
                   "data.label_map=255:2 maps the value 255 to class 2", "has 2 classes")


def test_label_map_syntax():
    assert parse_label_map("0:0, 255:1,7:255") == {0: 0, 255: 1, 7: 255} and parse_label_map("") == {}
    for text, message in (("0-1", "'0-1' is not VALUE:ID"), ("0:300", "class id in 0..255"),
                          ("1:0,1:1", "maps the value 1 twice")):
        one_line_error(lambda text=text: parse_label_map(text), f"data.label_map={text!r}", message)


def test_a_mask_of_another_size_is_an_error():
    one_line_error(lambda: check_size(IDS, Image.new("RGB", (4, 2)), "masks/a.png"),
                   "mask masks/a.png is 3x2 but its image is 4x2")
