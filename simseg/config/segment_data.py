"""The segmentation stage's ``data`` section: where the labelled pairs come from, how their masks' values become class
ids (a class file, ``label_map``, ``mask_threshold``), the split (sizes, seeds, or the split lists the data gives)."""

from __future__ import annotations

import dataclasses
import re

from simseg.config.loader import check
from simseg.config.sections import SourceConfig
from simseg.sizes import parse_size

_LABEL_MAP_ENTRY = re.compile(r"^\s*(\d+)\s*:\s*(\d+)\s*$")


def parse_label_map(text: str, key: str = "data.label_map") -> dict[int, int]:
    """``"0:0,255:1"`` -> ``{0: 0, 255: 1}``: mask value -> class id (0..254, or 255 for ignored); ``""`` -> {}.
    Colour masks are mapped by a class file's colours instead (a ``#rrggbb`` here would read as a YAML comment)."""
    mapping: dict[int, int] = {}
    for entry in filter(str.strip, str(text).split(",")):
        match = _LABEL_MAP_ENTRY.match(entry)
        check(match is not None, f"{key}={text!r}: '{entry.strip()}' is not VALUE:ID; write e.g. {key}=0:0,255:1")
        value, class_id = int(match[1]), int(match[2])
        check(value <= 65535 and class_id <= 255,
              f"{key}={text!r}: '{entry.strip()}' needs a mask value in 0..65535 and a class id in 0..255 (255 = "
              f"ignored)")
        check(value not in mapping, f"{key}={text!r} maps the value {value} twice: keep one entry")
        mapping[value] = class_id
    return mapping


@dataclasses.dataclass
class SegDataConfig(SourceConfig):
    """Labelled image/mask pairs: ``synthetic`` (shape / background / boundary trimaps) or ``synthetic-shapes`` (the
    six shapes and the background as 7 classes), an Oxford-IIIT Pet folder (``images/`` + ``annotations/trimaps/``,
    or its parent), a mask folder (``images/`` + ``masks/``, see docs/data.md), a ``save_to_disk`` dataset, parquet/
    arrow files or a hub name with an image and a mask column. ``subset`` is drawn from the images left after the
    test set, stratified by breed where known; null = all the rest (required for ``synthetic``). The synthetic
    sources hold the test set plus 10k images (more if val_size + subset need them), each rendered only when used,
    so test set and nested subsets behave as on a real dataset."""

    test_size: str = "1k"
    """Seeded random test set (saved as ``test_images.txt``), the same for every subset and seed."""
    test_seed: int = 0
    """Seeds the test draw only, so runs of every ``seed`` are scored on the same images; ``seed`` draws the
    training subset (nested for one seed), the head's initialisation and the training randomness."""
    val_size: str = "0"
    """Validation images (held out of training, never from the test set) on which the best epoch is chosen: one
    fixed draw seeded by ``test_seed``, the same for every ``seed`` and ``subset`` (a smaller set is part of a larger
    one); 0 = none: the last epoch is reported."""
    mask_column: str = ""
    """Mask column of a ``datasets`` source (class ids, or values that ``classes`` / ``label_map`` map); empty =
    detected."""
    skip_unpaired: bool = False
    """Skip (and count) images without a mask and masks without an image instead of failing."""
    classes: str = ""
    """A class file (``classes.json`` / ``.yaml``: names, colours, mask values; format in
    :mod:`simseg.data.class_file`); empty = ``classes.json``/``classes.yaml``/``classes.yml`` beside the data if
    there is one."""
    label_map: str = ""
    """Mask value -> class id, e.g. ``0:0,255:1`` for binary masks saved as 0/255; ``v:255`` makes value v ignored.
    Replaces the class file's values (not its ignored ones): list every value the masks hold; binary and JPEG
    masks are read only with it."""
    mask_threshold: int | None = None
    """Binarise every mask first: a value >= this becomes 255, the rest 0 (then ``label_map`` applies); for JPEG
    masks, whose edges hold in-between values. null = off."""
    mask_suffix: str | None = None
    """What mask file names add to their image's stem (``_mask`` pairs ``a.jpg`` with ``a_mask.png``); null =
    detected (the suffix every mask carries), empty = none."""
    train_list: str = ""
    """A file of item names, one a line (a run's ``train_images.txt``): the training pool as the data gives it, in
    its order (a run's list reproduces that run when ``subset`` is null). Empty = the data's own split, else drawn."""
    test_list: str = ""
    """A file of item names, one a line (a run's ``test_images.txt``): the test set as given (``test_size`` is then
    not used). Empty = the data's own split (``images/test/``), else drawn."""

    def __post_init__(self):
        super().__post_init__()
        self.sizes()
        parse_label_map(self.label_map)
        check(self.mask_threshold is None or 1 <= self.mask_threshold <= 255,
              f"data.mask_threshold={self.mask_threshold} must be in 1..255 (or null for no thresholding)")
        check(self.mask_threshold is None or bool(self.label_map.strip()),
              f"data.mask_threshold={self.mask_threshold} turns masks into 0/255: give data.label_map too, "
              f"e.g. data.label_map=0:0,255:1")
        check(self.mask_suffix is None or "/" not in self.mask_suffix,
              f"data.mask_suffix={self.mask_suffix!r} is part of a file name: it cannot hold '/'")
        check(not self.train_list or bool(self.test_list),
              f"data.train_list={self.train_list} needs data.test_list too: name the test images the data keeps apart")

    def sizes(self) -> tuple[int, int | None, int]:
        """(test images, training subset or None = all the rest, validation images)."""
        val = 0 if str(self.val_size).strip() == "0" else parse_size(self.val_size, "data.val_size")
        subset = None if self.subset is None else parse_size(self.subset, "data.subset")
        return parse_size(self.test_size, "data.test_size"), subset, val
