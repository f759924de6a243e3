"""What a model card says about a run's data and classes: what the model segments, how the test set was drawn, the
classes table and the limits. Everything comes from the run's config and its classes (``classes.json``), so a card
reads right for Oxford-IIIT Pet, the synthetic shapes and any other dataset, with two classes or twenty."""

from __future__ import annotations

from pathlib import Path

from simseg.data.label_set import BOUNDARY_CLASS, LabelSet
from simseg.data.pets import OxfordPetsSource
from simseg.data.synthetic_pairs import SYNTHETIC_MODES
from simseg.inference.trained_run import TrainedRun

MISSING = "—"
DRAWS = {"synthetic": "stratified by shape",
         "oxford": "stratified by breed (the image name without its number)",
         "dataset": "stratified by each image's main class (its most frequent class other than class 0; a test "
                    "split the data has is used as given instead)"}


def data_kind(source: str) -> str:
    """``synthetic`` (any of the synthetic sources), ``oxford`` (an Oxford-IIIT Pet folder) or ``dataset`` (any other
    folder or dataset): what the card may say about the data."""
    if source in SYNTHETIC_MODES:
        return "synthetic"
    return "oxford" if OxfordPetsSource.find_root(Path(source).expanduser()) is not None else "dataset"


def joined(names: tuple[str, ...] | list[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def what_it_segments(classes: LabelSet) -> str:
    """The card's opening sentence: the classes by name, and the dataset's title when the run recorded one."""
    return (f"Segments an image into {classes.num_classes} classes: {joined(classes.names)}"
            + (f" ({classes.title})." if classes.title else "."))


def test_draw(source: str) -> str:
    """How the test set of a run on ``source`` was drawn, in a few words."""
    return DRAWS[data_kind(source)]


def classes_table(classes: LabelSet) -> str:
    """The Classes section: id, name, colour and the value the dataset's own masks store for each class."""
    rows = [f"| {i} | {name} | `#{''.join(f'{c:02x}' for c in colour)}` | {value} |"
            for i, (name, colour, value) in enumerate(zip(classes.names, classes.colours, classes.values))]
    return ("## Classes\n\n| id | class | colour | value in the masks |\n|---:|---|---|---:|\n" + "\n".join(rows)
            + "\n\n`simseg predict` writes label maps of the ids, or with `--label-values source` of the values in the "
              "last column.")


def weakest_class(figures: dict) -> str | None:
    """A line naming the class of lowest test IoU in ``figures`` (metrics with ``iou`` by name and ``miou``), or
    None when fewer than two classes have a defined IoU."""
    iou = {name: value for name, value in (figures.get("iou") or {}).items() if value is not None}
    if len(iou) < 2:
        return None
    name = min(iou, key=iou.get)
    against = f" against a mIoU of {figures['miou']:.3f}" if figures.get("miou") is not None else ""
    return (f"Its weakest class on the test set is {name}, IoU {iou[name]:.3f}{against}: expect its pixels to be "
            f"missed or misplaced most often.")


def data_limit(run: TrainedRun, images: str) -> str:
    """The first limit: what the model was trained on, so what it says nothing about."""
    kind, source, classes = data_kind(run.cfg.data.source), run.cfg.data.source, run.classes
    if kind == "synthetic":
        return (f"Trained and tested on synthetic shapes (`data.source={source}`, {images} labelled images), not "
                f"photographs: its figures say nothing about real photos; not for use on them.")
    if kind == "oxford":
        return (f"Trained on {images} labelled Oxford-IIIT Pet photos of cats and dogs: no guarantee on other "
                f"animals, drawings, or photos without a pet.")
    what = classes.title or f"`{source}`"
    return (f"Trained on {images} labelled images of {what}, {classes.num_classes} classes: no guarantee on images "
            f"unlike them.")


def limits(run: TrainedRun, images: str, evaluation: dict | None) -> str:
    """The Limits section; ``images`` is the labelled-image count as the card prints it, ``evaluation`` the fresh
    scores (:func:`~simseg.inference.model_card.evaluate_for_card`) if any, else the run's metrics.json is read."""
    cfg, size, names = run.cfg, run.cfg.model.img_size, run.classes.names
    pets = data_kind(cfg.data.source) == "oxford"
    items = [data_limit(run, images),
             *([f"The {BOUNDARY_CLASS} class is a thin band around each object's outline (on pets, the trimaps' "
                f"unclassified band): a shift of a pixel or two costs much of its IoU."]
               if BOUNDARY_CLASS in names else []),
             *filter(None, [weakest_class(evaluation["plain"] if evaluation else run.metrics)]),
             "It labels pixels, not animals: several pets come out as one pet region, with no species or breed."
             if pets else "It labels pixels, not objects: touching objects of one class come out as one region.",
             f"Test figures are measured at {size}x{size} on one draw of {cfg.data.sizes()[0]:,} images: they carry "
             f"sampling noise that a single test set cannot show.",
             f"Every image is squeezed to {size}x{size}: {'pets' if pets else 'objects'} in very wide or tall images "
             f"appear distorted.",
             f"The ONNX export takes only {size}x{size} inputs and runs no TTA; TTA needs the run folder "
             f"(`simseg predict RUN --tta`)."]
    return "## Limits\n\n" + "\n".join(f"- {item}" for item in items)
