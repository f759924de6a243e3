"""The results table's figure columns: how a column names its figure's view (:func:`metric_column`,
:func:`class_column`), and the one mapping from a run's ``metrics.json`` to them (:func:`metric_figures`), with the
renaming of tables written in the columns of earlier versions (:func:`upgrade_old_columns`). Pure functions; the
table itself is :mod:`simseg.experiments.sweep.results`.

Every figure's column names its view: ``miou_plain`` (one forward pass) and ``miou_tta`` (test-time augmentation,
empty when a run used none), likewise ``boundary_iou_plain``, ``pixel_accuracy_tta``, ``iou_pet_plain``. They hold
the run's own scoring, at the mask's native size for runs that record ``scored_at``; column ``scored_at`` says where
(``native``; ``input``, the model's input size, for older runs), and ``miou_plain_input`` is the plain mIoU at the
model's input size for every run.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import unquote_plus

Row = dict[str, Any]
VIEWS = ("plain", "tta")  # one forward pass; the mean of the eval.tta views
SCORED_AT = ("native", "input")  # the mask's own size (the run's scoring); the model's input size
SCORES = ("miou", "boundary_iou", "pixel_accuracy", "mean_pixel_accuracy", "mean_dice", "fwiou")
PER_CLASS_KINDS = ("iou", "dice", "precision", "recall")  # metrics.json keys that map each class name to a value
MAIN_SCORE = "miou_plain"  # the figure every row has: the plain view's mIoU of the run's own scoring
_OLD_SCORES = ("miou", "boundary_iou", "plain_miou", "plain_boundary_iou", "pixel_accuracy", "mean_pixel_accuracy",
               "mean_dice", "fwiou")  # the score columns of earlier versions


def metric_column(metric: str, view: str = "plain", at: str = "native") -> str:
    """The column of one figure: ``metric`` (a name of :data:`SCORES`, or a per-class ``iou_<class>`` as
    :func:`class_column` spells it) in ``view`` (``plain``, ``tta``), from the run's own scoring (``at="native"``,
    where column ``scored_at`` says) or at the model's input size (``at="input"``)::

        metric_column("miou")                        -> miou_plain
        metric_column("boundary_iou", "tta")         -> boundary_iou_tta
        metric_column("miou", "plain", at="input")   -> miou_plain_input    (the only figure given at input)
    """
    if view not in VIEWS or at not in SCORED_AT:
        raise ValueError(f"view={view!r}, at={at!r}: choose a view of {VIEWS} and an at of {SCORED_AT}")
    return f"{metric}_{view}" + ("_input" if at == "input" else "")


INPUT_COLUMNS = (metric_column("miou", "plain", "input"),)  # figures also given at the model's input size
SCORE_COLUMNS = tuple(metric_column(score, view) for score in SCORES for view in VIEWS)


def class_column(kind: str, name: str, view: str = "plain") -> str:
    """The column of one class's figure, e.g. ``("iou", "road sign")`` -> ``iou_road+sign_plain``: letters, digits and
    ``_ . -`` stay, a space becomes ``+`` and every other character its UTF-8 bytes as ``%XX``, so any class name
    makes one plain column that spreadsheets, pandas and Markdown take, and :func:`class_names` reads back."""
    return metric_column(_class_metric(kind, name), view)


def _class_metric(kind: str, name: str) -> str:
    return f"{kind}_" + "".join(c if c.isalnum() or c in "_.-" else "+" if c == " " else
                                "".join(f"%{byte:02X}" for byte in c.encode()) for c in name)


def class_of_column(column: str) -> tuple[str, str, str] | None:
    """``iou_road+sign_plain`` -> ``("iou", "road sign", "plain")`` (:func:`class_column` reversed; a hand-written
    ``iou_road sign_plain`` reads the same); None for a column that is not a per-class figure."""
    kind, sep, rest = column.partition("_")
    encoded, sep_view, view = rest.rpartition("_")
    if not (sep and sep_view and encoded and kind in PER_CLASS_KINDS and view in VIEWS):
        return None
    return kind, unquote_plus(encoded), view


def class_names(columns: Iterable[str]) -> tuple[str, ...]:
    """The class names of the per-class columns among ``columns``, in the order they first appear; ``()`` when
    there are none."""
    return tuple(dict.fromkeys(found[1] for column in columns if (found := class_of_column(column))))


def class_columns(classes: Sequence[str]) -> tuple[str, ...]:
    """The per-class columns of ``classes``: per kind, the plain view of every class, then the TTA view."""
    return tuple(class_column(kind, name, view) for kind in PER_CLASS_KINDS for view in VIEWS for name in classes)


def metric_figures(metrics: Mapping[str, Any], classes: Sequence[str]) -> Row:
    """The results columns a run's ``metrics.json`` fills, as a pure function of the file: its figures under the
    names of :func:`metric_column` and :func:`class_column`, ``scored_at`` and ``val_images`` / ``val_miou``.

    ====================  ============================================  ===========================================
    column                metrics.json with ``scores`` (new runs)       metrics.json of older runs (top-level keys)
    ====================  ============================================  ===========================================
    ``scored_at``         ``scored_at`` (``native``)                    ``input``: they scored at the model's input
    ``F_plain``           ``scores[scored_at]["plain"][F]``             ``plain_F`` with TTA, else ``F``
    ``F_tta``             ``scores[scored_at]["tta"][F]``               ``F`` with TTA, else empty
    ``K_<class>_plain``   ``scores[scored_at]["plain"][K][class]``      ``K[class]`` without TTA, else empty
    ``K_<class>_tta``     ``scores[scored_at]["tta"][K][class]``        ``K[class]`` with TTA, else empty
    ``miou_plain_input``  ``scores["input"]["plain"]["miou"]``          ``miou_plain`` (that was at input)
    ``val_images``        ``val_images``                                ``val_images``; 0 without it and without
                                                                        ``best_val_miou`` (no validation then)
    ``val_miou``          ``best_val_miou``                             ``best_val_miou``
    ====================  ============================================  ===========================================

    F is a score of :data:`SCORES` (miou, boundary_iou, pixel_accuracy, ...), K a kind of :data:`PER_CLASS_KINDS`.
    "With TTA": the file's ``tta`` is not null. Older files kept the plain view only as ``plain_miou`` and
    ``plain_boundary_iou`` beside the TTA figures, so an old TTA run's other plain figures are empty, never the TTA
    ones under a plain name. Figures a file lacks are None.
    """
    views: dict[str, Mapping] = {}
    if isinstance(metrics.get("scores"), Mapping):
        scored_at = metrics.get("scored_at") or "native"
        views = {view: metrics["scores"].get(scored_at, {}).get(view) or {} for view in VIEWS}
        input_plain = (metrics["scores"].get("input", {}).get("plain") or {}).get("miou")
    else:  # top-level figures are the reported view's: the TTA one when TTA ran
        scored_at, tta = "input", metrics.get("tta") is not None
        views = {"plain": {**({} if tta else metrics),
                           **({"miou": metrics.get("plain_miou"), "boundary_iou": metrics.get("plain_boundary_iou")}
                              if tta else {})},
                 "tta": metrics if tta else {}}
        input_plain = views["plain"].get("miou")
    figures: Row = {"scored_at": scored_at}
    for view, figs in views.items():
        figures.update({metric_column(score, view): figs.get(score) for score in SCORES})
        figures.update({class_column(kind, name, view): (figs.get(kind) or {}).get(name)
                        for kind in PER_CLASS_KINDS for name in classes})
    val_miou = metrics.get("best_val_miou")
    val_images = metrics.get("val_images", 0 if val_miou is None else None)
    return {**figures, INPUT_COLUMNS[0]: input_plain, "val_images": val_images, "val_miou": val_miou}


def upgrade_old_columns(values: Mapping[str, Any]) -> Row:
    """A row in the columns of earlier versions (``miou``, ``plain_miou``, ``boundary_iou``, ``iou_<class>``, ...)
    renamed to today's; a row that has ``miou_plain`` comes back as it is. Old rows were scored at the model's
    input (``scored_at`` ``input``, ``miou_plain_input`` their plain mIoU) and held the TTA view's figures when
    ``plain_miou`` is filled (the plain view then only in ``plain_miou`` and ``plain_boundary_iou``), else the plain
    view's: ``miou`` -> ``miou_tta`` or ``miou_plain``, ``iou_pet`` -> ``iou_pet_tta`` or ``iou_pet_plain``."""
    if MAIN_SCORE in values or "miou" not in values:
        return dict(values)
    tta = values.get("plain_miou") not in (None, "")
    view = "tta" if tta else "plain"
    row: Row = {}
    for key, value in values.items():
        if key in ("plain_miou", "plain_boundary_iou"):
            if tta:  # else empty: the plain view is the row's only one
                row[metric_column(key.removeprefix("plain_"), "plain")] = value
        elif key in _OLD_SCORES:
            row[metric_column(key, view)] = value
        elif key.partition("_")[0] in PER_CLASS_KINDS and key.partition("_")[2]:
            row[metric_column(key, view)] = value  # every per-class column of an old table lacks a view
        else:
            row[key] = value
    row.setdefault("scored_at", "input")
    row.setdefault(INPUT_COLUMNS[0], row.get(MAIN_SCORE))
    return row


def as_reported(row: Mapping[str, Any], metric: str) -> Any:
    """``metric`` (``miou``, ``iou_pet``) as metrics.json's top level reported it before columns named their view:
    the TTA view's where the row has one, else the plain view's. For scripts that reprint pages made from the old
    ``miou`` / ``iou_<class>`` columns; new tables should name their view."""
    tta = row.get(metric_column(metric, "tta"))
    return row.get(metric_column(metric, "plain")) if tta in (None, "") else tta
