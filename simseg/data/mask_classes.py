"""Which classes a source's masks hold and how their values map to class ids, decided once per source from (first
wins) a class file, the class names the data carries (a ``datasets`` feature), ``data.label_map``, or, with none of
these, the values found in the masks.

Finding the values means reading every mask once when the source is opened (a few seconds for thousands of PNGs);
a class file or ``data.label_map`` skips it. Masks that would be misread if guessed at are refused there: binary
masks (only 0/255 or 0/1: is 255 a class or "ignored"?), JPEG masks (in-between values at the edges) and colour
masks (which colour is which class?); each refusal names the file and the key that resolves it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from simseg.config.segment_data import parse_label_map
from simseg.data.class_file import ClassFile
from simseg.data.label_set import IGNORE_INDEX, MAX_CLASSES, LabelSet, default_colours
from simseg.data.mask_formats import MaskMapping, is_jpeg, refuse_jpeg, stored_values
from simseg.errors import SimsegError

Mask = Image.Image | np.ndarray


@dataclass(frozen=True)
class MaskOptions:
    """The data keys that say how masks are read: ``data.classes``, ``data.label_map``, ``data.mask_threshold`` and
    ``data.mask_suffix`` (see :class:`simseg.config.segment_data.SegDataConfig`)."""

    classes: str = ""
    label_map: str = ""
    threshold: int | None = None
    suffix: str | None = None

    @classmethod
    def of(cls, data_cfg) -> MaskOptions:
        """The options of a segmentation data section (:class:`~simseg.config.segment_data.SegDataConfig`)."""
        return cls(data_cfg.classes, data_cfg.label_map, data_cfg.mask_threshold, data_cfg.mask_suffix)


@dataclass
class MaskScan:
    """The values every mask holds together, and for each value the first mask holding it."""

    first_with: dict[int, str] = field(default_factory=dict)
    palette: bool = False

    @property
    def values(self) -> set[int]:
        return set(self.first_with)


def scan_masks(masks: Iterable[tuple[Mask, str]], threshold: int | None = None) -> MaskScan:
    """Read ``(mask, where)`` pairs once; colour and (without ``threshold``) JPEG masks are refused on the spot."""
    scan = MaskScan()
    for mask, where in masks:
        if threshold is None and is_jpeg(mask, where):
            raise refuse_jpeg(where)
        values, kind = stored_values(mask, where)
        if kind == "colour":
            raise SimsegError(f"mask {where} is a colour image: list each class's \"colour\" in a class file "
                              f"(data.classes=FILE, format in docs/data.md), or save masks of class ids")
        scan.palette |= kind == "palette"
        if threshold is not None:
            values = np.where(values >= threshold, 255, 0)
        for value in np.unique(values).tolist():
            scan.first_with.setdefault(int(value), where)
    return scan


def resolve_classes(options: MaskOptions, title: str, class_file: ClassFile | None = None,
                    names: Sequence[str] | None = None, first_mask: Callable[[], Mask] | None = None,
                    scan: Callable[[], MaskScan] | None = None) -> tuple[LabelSet, MaskMapping, list[str]]:
    """(label set, mapping, notes for the user) of a source titled ``title``. ``names`` are class names the data
    carries; ``first_mask`` gives one mask, whose palette (if any) colours the classes no class file colours;
    ``scan`` reads every mask, called only when nothing else says what the classes are."""
    label_map = parse_label_map(options.label_map)
    notes: list[str] = []
    if class_file is not None:
        base, values, colours = class_file.label_set, dict(class_file.values), class_file.colours
        uncoloured = set(range(base.num_classes)) - class_file.coloured
        fix = (f"give it a class in {class_file.path} (\"value\", or list it under \"ignore\") or map it with "
               f"data.label_map")
    elif names:
        base = LabelSet(tuple(names), default_colours(len(names)), (), title)
        values, colours, uncoloured = {i: i for i in range(len(names))}, {}, set(range(len(names)))
        fix = "map it with data.label_map (VALUE:ID; ID 255 ignores it) or give a class file (data.classes)"
    elif label_map:
        count = max((i for i in label_map.values() if i != IGNORE_INDEX), default=-1) + 1
        if count == 0:
            raise SimsegError(f"data.label_map={options.label_map} sends every value to 255 (ignored): map some "
                              f"values to the class ids 0, 1, ...")
        base, values, colours, uncoloured = LabelSet.numbered(count, title), {}, {}, set(range(count))
        fix = ("add it to data.label_map (VALUE:ID; ID 255 ignores it), or set data.mask_threshold for masks with "
               "in-between values")
        notes.append(f"{title}: no class file, so the {count} classes data.label_map maps to are named class_0.."
                     f"class_{count - 1}; name them in a class file (data.classes=FILE)")
    else:
        base, values = _numbered_from_masks(scan() if scan else MaskScan(), options, title)
        colours, uncoloured = {}, set(range(base.num_classes))
        fix = "map it with data.label_map (VALUE:ID; ID 255 ignores it) or give a class file (data.classes)"
        notes.append(f"{title}: no class file, so the class ids found in the masks (0..{base.num_classes - 1}) are "
                     f"named class_0..class_{base.num_classes - 1}; name them in a class file (data.classes=FILE)")
    if label_map:
        beyond = next(((v, i) for v, i in label_map.items() if i != IGNORE_INDEX and i >= base.num_classes), None)
        if beyond is not None:
            raise SimsegError(f"data.label_map={options.label_map} maps the value {beyond[0]} to class {beyond[1]}, "
                              f"but {title} has {base.num_classes} classes (ids 0..{base.num_classes - 1}): fix "
                              f"data.label_map or the class file")
        # the label map replaces the class values a class file or the data gave (its ignored values stay), so a value
        # the map leaves out is an error, not silently read as the class whose id it happens to equal
        values = {v: i for v, i in values.items() if i == IGNORE_INDEX} | label_map
    stored: dict[int, int] = {}  # each class's value in the masks: the label map's first, as it overrides the rest
    for value, class_id in [*sorted(label_map.items()), *sorted(values.items())]:
        if class_id != IGNORE_INDEX:
            stored.setdefault(class_id, value)
    class_colours = list(base.colours)
    mask = first_mask() if first_mask is not None and uncoloured else None
    if isinstance(mask, Image.Image) and mask.mode == "P":  # its palette shows the ids in the dataset's colours
        table = mask.getpalette() or []
        for class_id in uncoloured:
            if 3 * class_id + 3 <= len(table):
                class_colours[class_id] = tuple(table[3 * class_id:3 * class_id + 3])
    label_set = LabelSet(base.names, tuple(class_colours), tuple(stored.get(i, i) for i in range(base.num_classes)),
                         base.title or title)
    return label_set, MaskMapping(values, colours, options.threshold, fix), notes


def _numbered_from_masks(scan: MaskScan, options: MaskOptions, title: str) -> tuple[LabelSet, dict[int, int]]:
    """``class_0 ..`` for the ids the masks hold, refusing masks whose values do not say what they mean."""
    found = scan.values
    if not scan.palette and found in ({0, 255}, {0, 1}):
        top = max(found)
        raise SimsegError(f"mask {scan.first_with[top]} holds only 0 and {top}, as binary masks do (is {top} a class, "
                          f"or ignored?): set data.label_map=0:0,{top}:1 (or give a class file)")
    ids = found - {IGNORE_INDEX}
    if len(ids) < 2:
        raise SimsegError(f"the masks of {title} hold only the value{'s' * (len(found) > 1)} "
                          f"{', '.join(map(str, sorted(found)))}: one class or none is nothing to learn; check the "
                          f"masks, or name the classes in a class file (data.classes)")
    top = max(ids)
    if top >= MAX_CLASSES:
        raise SimsegError(f"mask {scan.first_with[top]} holds the value {top}, above the largest class id "
                          f"{MAX_CLASSES - 1}: map values to ids with data.label_map or a class file's \"value\"s")
    return LabelSet.numbered(top + 1, title), {i: i for i in range(top + 1)}
