"""Which test score the report compares: the plain view (one forward pass per image) unless ``--tta`` asks for the
test-time-augmentation view, and at which resolution the cells were scored (the images' native size, or the model
input size of cells made before native scoring). Every table heading, figure label and per-image count the report
reads goes through :class:`View`, so one flag switches them all and every heading says which view it shows."""

from __future__ import annotations

from typing import NamedTuple

from simseg.experiments.sweep.results import Row, class_column, metric_column

NATIVE, INPUT = "native", "input"


class View(NamedTuple):
    """The plain (default) or TTA view of the rows' test scores."""
    tta: bool = False

    @property
    def name(self) -> str:
        """The view as results columns and ``test_scores.npz`` keys spell it: ``plain`` or ``tta``."""
        return "tta" if self.tta else "plain"

    @property
    def label(self) -> str:
        """The view as headings print it: ``plain`` or ``TTA``."""
        return "TTA" if self.tta else "plain"

    @property
    def miou(self) -> str:
        """The rows' test mIoU column of this view (``miou_plain``)."""
        return metric_column("miou", self.name)

    @property
    def boundary(self) -> str:
        """The rows' Boundary IoU column of this view (``boundary_iou_plain``)."""
        return metric_column("boundary_iou", self.name)

    def heading(self, what: str = "mIoU") -> str:
        """``mIoU, plain`` / ``test mIoU, TTA``: a column heading that says which view it holds."""
        return f"{what}, {self.label}"


PLAIN = View()


def per_class_column(kind: str, name: str, view: View = PLAIN) -> str:
    """The rows' column of one class's figure in ``view`` (``iou_road+sign_plain``)."""
    return class_column(kind, name, view.name)


def scored_at(row: Row) -> str:
    """Where a row's cell was scored: ``input`` for cells made before native-resolution scoring, else ``native``
    (hand-written rows that do not say count as native: nothing to warn about)."""
    return INPUT if row.get("scored_at") == INPUT else NATIVE


def resolution_line(rows: list[Row]) -> str | None:
    """One line when some cells were scored at the model input rather than the images' native size; None when every
    cell was scored at native size."""
    at_input = sum(scored_at(row) == INPUT for row in rows)
    if not at_input:
        return None
    which = "every cell was" if at_input == len(rows) else f"{at_input} of {len(rows)} cells were"
    return (f"Scored at the model input: {which} made before native-resolution scoring, so their test figures are "
            "of masks resized to the model's input, not of the images' own size"
            + ("." if at_input == len(rows) else "; a gain between such a cell and a native-scored one says so."))
