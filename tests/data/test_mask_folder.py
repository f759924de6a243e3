import json

import numpy as np
from PIL import Image

from simseg.config.pretrain import PretrainDataConfig
from simseg.config.segment import SegDataConfig
from simseg.data.mask_classes import MaskOptions
from simseg.data.mask_folder import MaskFolderSource, detect_suffix
from simseg.data.pair_sources import open_segmentation_pairs
from simseg.data.sources import FolderSource
from simseg.data.splits import segmentation_splits
from simseg.data.unlabelled import open_image_source
from tests.data.test_mask_formats import one_line_error


def mask_of(index, size=(6, 4)):
    """(H, W) ids 0/1/2 that differ per item: class index % 3 on the left half, class 2 in the top right corner,
    background elsewhere."""
    ids = np.zeros((size[1], size[0]), dtype=np.uint8)
    ids[:, : size[0] // 2] = index % 3
    ids[0, -1] = 2
    return ids


def write_folder(root, stems, masks="masks", images="images", suffix="", size=(6, 4), ext=".png"):
    """A mask folder with one random image and one class-id mask (:func:`mask_of`) per stem."""
    rng = np.random.default_rng(0)
    for i, stem in enumerate(stems):
        for folder in (root / images, root / masks):
            folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(root / images / f"{stem}.jpg")
        Image.fromarray(mask_of(i, size)).save(root / masks / f"{stem}{suffix}{ext}")
    return root


def test_pairs_by_stem_with_a_detected_suffix_hidden_files_ignored(tmp_path):
    root = write_folder(tmp_path / "d", ["b", "a", "c"], suffix="_mask")
    (root / "masks" / "._a_mask.png").write_bytes(b"apple double")
    (root / "images" / ".DS_Store").write_bytes(b"")
    source = MaskFolderSource(root)
    assert source.names == ["a", "b", "c"] and source.given_split is None and source.groups is None
    assert source.label_set.names == ("class_0", "class_1", "class_2") and len(source.notes) == 1
    image, ids = source.pair(0)  # "a" was written second: class 1 on its left half
    assert image.size == (6, 4) and ids.tolist() == mask_of(1).tolist()


def test_suffix_detection():
    assert detect_suffix(["a", "b"], {"a", "b"}) == ""
    assert detect_suffix(["ISIC_1_segmentation", "ISIC_2_segmentation"], {"ISIC_1", "ISIC_2"}) == "_segmentation"
    assert detect_suffix(["x_1_mask", "y_1_mask"], {"x_1", "y_1"}) == "_mask"  # not "_1_mask"
    assert detect_suffix(["x_1_mask", "y_1_mask"], {"x", "y"}) == "_1_mask"
    one_line_error(lambda: detect_suffix(["a_mask", "b_segmentation"], {"a", "b"}),
                   "different suffixes", "a_mask ('_mask')", "b_segmentation ('_segmentation')", "data.mask_suffix")
    one_line_error(lambda: detect_suffix(["a", "b_mask"], {"a", "b"}), "different suffixes", "data.mask_suffix")


def test_mixed_suffixes_and_an_explicit_suffix(tmp_path):
    root = write_folder(tmp_path / "d", ["a"], suffix="_mask")
    write_folder(root, ["b"], suffix="_segmentation")
    one_line_error(lambda: MaskFolderSource(root), "different suffixes", "data.mask_suffix")
    source = MaskFolderSource(root, MaskOptions(suffix="_mask"), skip_unpaired=True)
    assert source.names == ["a"] and source.skipped == 2  # b.jpg and b_segmentation.png


def test_unpaired_files_fail_in_one_line_or_are_skipped(tmp_path):
    root = write_folder(tmp_path / "d", ["a", "b", "c"])
    (root / "masks" / "c.png").unlink()
    Image.new("L", (6, 4)).save(root / "masks" / "z.png")
    one_line_error(lambda: MaskFolderSource(root), f"{root / 'images' / 'c.jpg'} has no mask",
                   "1 images without a mask and 1 masks without an image", "data.skip_unpaired=true")
    source = MaskFolderSource(root, skip_unpaired=True)
    assert source.names == ["a", "b"] and source.skipped == 2


def test_a_mask_of_another_size_fails_naming_it(tmp_path):
    root = write_folder(tmp_path / "d", ["a", "b"])
    Image.fromarray(mask_of(1, (5, 4))).save(root / "masks" / "b.png")
    source = MaskFolderSource(root)
    one_line_error(lambda: source.pair(1), f"mask {root / 'masks' / 'b.png'} is 5x4 but its image is 6x4")


def test_binary_and_jpeg_masks_are_refused_naming_the_key(tmp_path):
    root = tmp_path / "bin"
    write_folder(root, ["a", "b"])
    for stem in ("a", "b"):
        Image.fromarray(np.where(mask_of(1) > 0, 255, 0).astype(np.uint8)).save(root / "masks" / f"{stem}.png")
    one_line_error(lambda: MaskFolderSource(root), "masks/a.png holds only 0 and 255", "data.label_map=0:0,255:1")
    assert MaskFolderSource(root, MaskOptions(label_map="0:0,255:1")).pair(1)[1].tolist() == (mask_of(1) > 0).tolist()
    jpegs = write_folder(tmp_path / "jpg", ["a"], ext=".jpg")
    one_line_error(lambda: MaskFolderSource(jpegs), "masks/a.jpg is a JPEG", "data.mask_threshold")


def test_class_file_beside_the_data_or_named(tmp_path):
    root = write_folder(tmp_path / "d", ["a", "b", "c"])
    (root / "classes.yaml").write_text("- sky\n- road\n- car\n")
    source = MaskFolderSource(root)
    assert source.label_set.names == ("sky", "road", "car") and source.notes == []
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"names": ["x", "y", "z"]}))
    assert MaskFolderSource(root, MaskOptions(classes=str(other))).label_set.names == ("x", "y", "z")
    (root / "classes.yaml").write_text("- sky\n- road\n")  # class 2 is in the masks but not the file
    one_line_error(lambda: MaskFolderSource(root).pair(2), "masks/c.png holds value 2", "classes.yaml")


def test_mmseg_layout_with_train_and_val_folders_gives_the_split(tmp_path):
    root = tmp_path / "d"
    write_folder(root, ["t1", "t0", "t2"], images="img_dir/train", masks="ann_dir/train")
    write_folder(root, ["v0", "v1"], images="img_dir/val", masks="ann_dir/val")
    source = MaskFolderSource(root)
    assert source.names == ["t0", "t1", "t2", "v0", "v1"]
    assert source.given_split == {"train": [0, 1, 2], "test": [3, 4]}
    split = segmentation_splits(len(source), 1000, None, 0, None, given=source.given_split)
    assert split["test"].tolist() == [3, 4] and split["train"].tolist() == [0, 1, 2] and split["val"].size == 0
    pretraining = open_image_source(PretrainDataConfig(source=str(root)), "pretrain")
    assert isinstance(pretraining, FolderSource) and [p.stem for p in pretraining.files] == source.names
    train_only = write_folder(tmp_path / "t", ["b", "a"], images="images/train", masks="masks/train")
    assert MaskFolderSource(train_only).names == ["a", "b"] and MaskFolderSource(train_only).given_split is None


def test_given_splits_keep_the_train_order_or_draw_nested_subsets():
    given = {"train": [7, 2, 9, 4, 0, 5], "test": [8, 1]}
    whole = segmentation_splits(10, 3, None, 0, None, given=given)
    assert whole["train"].tolist() == [7, 2, 9, 4, 0, 5] and whole["test"].tolist() == [8, 1]
    subsets = [segmentation_splits(10, 3, n, 0, None, val_size=1, given=given) for n in (2, 4)]
    assert set(subsets[0]["train"]) < set(subsets[1]["train"]) < set(given["train"])
    assert subsets[0]["val"].tolist() == subsets[1]["val"].tolist() and subsets[0]["val"][0] in given["train"]
    with_val = segmentation_splits(10, 3, None, 0, None, val_size=1, given=given)
    assert with_val["val"].tolist() == subsets[0]["val"].tolist()
    assert with_val["train"].tolist() == [i for i in given["train"] if i != with_val["val"][0]]
    test_only = segmentation_splits(10, 3, None, 0, None, given={"test": [3]})
    assert test_only["train"].tolist() == [0, 1, 2, 4, 5, 6, 7, 8, 9]
    one_line_error(lambda: segmentation_splits(10, 3, 9, 0, None, given=given), "data.subset=9", "gives 6")
    one_line_error(lambda: segmentation_splits(10, 3, None, 0, None, given={"train": [1], "test": [1]}),
                   "in both the training and the test set")


def test_split_lists_name_items_in_their_order(tmp_path):
    root = write_folder(tmp_path / "d", ["a", "b", "c", "d", "e"])
    (tmp_path / "train.txt").write_text("d\nb\n\na\n")
    (tmp_path / "test.txt").write_text("e\n")
    cfg = SegDataConfig(source=str(root), train_list=str(tmp_path / "train.txt"), test_list=str(tmp_path / "test.txt"))
    source = open_segmentation_pairs(cfg)
    assert source.given_split == {"test": [4], "train": [3, 1, 0]}
    split = segmentation_splits(len(source), 1000, None, 0, None, given=source.given_split)
    assert [source.names[i] for i in split["train"]] == ["d", "b", "a"]
    (tmp_path / "test.txt").write_text("e\nnobody\n")
    one_line_error(lambda: open_segmentation_pairs(cfg), f"data.test_list={tmp_path / 'test.txt'} names 'nobody'",
                   "1 of its 2 names are unknown")


def test_fingerprint_follows_the_label_map(tmp_path):
    root = write_folder(tmp_path / "d", ["a", "b", "c"])
    plain = MaskFolderSource(root).fingerprint()
    assert MaskFolderSource(root).fingerprint() == plain
    assert MaskFolderSource(root, MaskOptions(label_map="0:0,1:1,2:255")).fingerprint() != plain
