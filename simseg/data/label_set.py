"""What the classes of a segmentation dataset are: their names, a colour each, the dataset's own mask value of each
class, and the value of unlabelled pixels. One :class:`LabelSet` describes the classes of a run from its data to
every output: the segment stage writes it into the run folder as ``classes.json`` and everything downstream (the
model's output count, metrics, pictures, ``simseg predict``, ONNX metadata, the model card, reports) reads it back
from there with :func:`read_run_label_set`.

Class ids are ``0 .. C-1`` in the order of ``names``; :data:`IGNORE_INDEX` (255) marks pixels without a label,
which neither the loss nor the metrics count.
"""

from __future__ import annotations

import colorsys
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from simseg.errors import SimsegError
from simseg.models.segmentation import IGNORE_INDEX  # 255, as mmseg, Ultralytics and LightlyTrain ignore it

CLASSES_FILE = "classes.json"
IGNORE_COLOUR = (128, 128, 128)  # how pictures show pixels without a label
BOUNDARY_CLASS = "boundary"  # the thin band around each object's outline (pets' and synthetic trimaps)
MAX_CLASSES = 255  # ids are stored as uint8 with 255 reserved for the ignored pixels

Colour = tuple[int, int, int]


@dataclass(frozen=True)
class LabelSet:
    """The classes of a segmentation dataset.

    ``names[i]`` and ``colours[i]`` (RGB 0-255) describe class id ``i``; ``values[i]`` is the value the dataset's own
    masks store for it (what ``simseg predict --label-values source`` writes; the class id itself for data stored as
    ids); ``title`` says in a few words what the dataset is.
    """

    names: tuple[str, ...]
    colours: tuple[Colour, ...]
    values: tuple[int, ...] = ()
    title: str = ""
    ignore_index: int = field(default=IGNORE_INDEX)

    def __post_init__(self):
        names = tuple(str(n) for n in self.names)
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "colours", tuple(tuple(int(c) for c in colour) for colour in self.colours))
        object.__setattr__(self, "values", tuple(int(v) for v in self.values) or tuple(range(len(names))))
        if not 1 <= len(names) <= MAX_CLASSES:
            raise SimsegError(f"a label set needs 1 to {MAX_CLASSES} classes; got {len(names)}")
        if len(set(names)) != len(names):
            twice = next(n for n in names if names.count(n) > 1)
            raise SimsegError(f"class name '{twice}' is given twice: give every class its own name")
        if len(self.colours) != len(names) or len(self.values) != len(names):
            raise SimsegError(f"{len(names)} classes need {len(names)} colours and values; got {len(self.colours)} "
                              f"colours and {len(self.values)} values")
        if any(len(c) != 3 or not all(0 <= v <= 255 for v in c) for c in self.colours):
            raise SimsegError("class colours must be [r, g, b] with each value in 0..255")

    @property
    def num_classes(self) -> int:
        return len(self.names)

    def palette(self) -> list[int]:
        """A 768-value PIL palette: class id i in ``colours[i]``, the ignore value grey, the rest black."""
        table = [0] * 768
        for i, colour in enumerate(self.colours):
            table[3 * i:3 * i + 3] = colour
        table[3 * self.ignore_index:3 * self.ignore_index + 3] = IGNORE_COLOUR
        return table

    def to_json(self, shares: dict | None = None) -> dict:
        """The ``classes.json`` record; ``shares`` (e.g. per split: pixel share and image count per class) rides
        along under ``shares``."""
        record = {"title": self.title, "ignore_index": self.ignore_index,
                  "classes": [{"id": i, "name": n, "colour": list(c), "value": v}
                              for i, (n, c, v) in enumerate(zip(self.names, self.colours, self.values))]}
        if shares is not None:
            record["shares"] = shares
        return record

    @classmethod
    def from_json(cls, record: dict, where: str = "classes.json") -> LabelSet:
        """The label set :meth:`to_json` wrote; a one-line error naming ``where`` when it is not one."""
        try:
            classes = sorted(record["classes"], key=lambda c: int(c["id"]))
            if [int(c["id"]) for c in classes] != list(range(len(classes))):
                raise ValueError("class ids must be 0, 1, 2, ...")
            return cls(tuple(c["name"] for c in classes), tuple(tuple(c["colour"]) for c in classes),
                       tuple(int(c["value"]) for c in classes), str(record.get("title", "")),
                       int(record.get("ignore_index", IGNORE_INDEX)))
        except (KeyError, TypeError, ValueError) as err:
            raise SimsegError(f"{where} is not a simseg class list ({type(err).__name__}: {err}): rewrite it or "
                              f"delete it to rerun the stage") from None

    @classmethod
    def numbered(cls, count: int, title: str = "", values: Sequence[int] | None = None) -> LabelSet:
        """``count`` classes named ``class_0 ..`` in :func:`default_colours`; ``values`` as the source stores them."""
        return cls(tuple(f"class_{i}" for i in range(count)), default_colours(count), tuple(values or ()), title)


def default_colours(count: int) -> tuple[Colour, ...]:
    """Distinct colours for ``count`` classes: black for class 0 (usually the background), then hues spread around
    the colour wheel at alternating brightness, so neighbouring ids differ at a glance."""
    colours: list[Colour] = [(0, 0, 0)]
    for i in range(1, count):
        hue = ((i - 1) * 0.618034) % 1.0  # golden-ratio steps keep any prefix of the hues spread out
        value = 1.0 if i % 2 else 0.7
        colours.append(tuple(round(255 * c) for c in colorsys.hsv_to_rgb(hue, 0.85, value)))
    return tuple(colours[:count])


# Oxford-IIIT Pet trimaps (1 = pet, 2 = background, 3 = boundary) as class ids 0 background, 1 pet, 2 boundary;
# the only place outside simseg.data.pets that knows them is this instance.
PETS = LabelSet(("background", "pet", "boundary"), ((0, 0, 0), (255, 153, 0), (255, 255, 255)), (2, 1, 3),
                "Oxford-IIIT Pet trimaps")


def write_run_label_set(run_dir: Path, label_set: LabelSet, shares: dict | None = None) -> None:
    """``classes.json`` in ``run_dir`` (atomically)."""
    from simseg.files import atomic_write_json

    atomic_write_json(Path(run_dir) / CLASSES_FILE, label_set.to_json(shares))


def read_run_label_set(run_dir: str | Path) -> LabelSet:
    """The classes of a segmentation run folder: its ``classes.json``; a run written before runs recorded their
    classes trained on pet trimaps (the only labels simseg read then), so it gets :data:`PETS`."""
    path = Path(run_dir) / CLASSES_FILE
    if not path.is_file():
        return PETS
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise SimsegError(f"{path} cannot be read ({type(err).__name__}): restore it or rerun the stage") from None
    return LabelSet.from_json(record, str(path))
