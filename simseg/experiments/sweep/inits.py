"""The inits of a sweep: ``scratch``, ``imagenet``, ``PATH`` or ``LABEL=PATH`` resolved to
:class:`~simseg.experiments.sweep.plan.Init`, with the values of the pretraining axes (the pretraining size, ...) and
the intermediate-step parent read from the run folders (:mod:`simseg.experiments.run_folders`). Which
inits fit which model is the model axis's rule (:func:`simseg.experiments.sweep.axes.arch_fits`)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from simseg.errors import SimsegError
from simseg.experiments.run_folders import exporting_run, lineage_parent, lineage_root
from simseg.experiments.sweep.axes import pretraining_axes
from simseg.experiments.sweep.plan import Init, pretraining_of
from simseg.training.handoff import export_path


def resolve_init(item: str, option: str) -> Init:
    """``scratch``, ``PATH`` or ``LABEL=PATH`` -> an :class:`Init` (its pretraining read from the run folders).
    ``LABEL=scratch`` (or ``=imagenet``) names a second such arm, e.g. a baseline run with other keys in the same
    sweep folder (``--init scratch-9ep=scratch train.epochs=9``), whose cells would otherwise take the scratch cells'
    folders."""
    if item in ("scratch", "imagenet"):
        return Init(item, item)
    label, sep, path_text = item.partition("=")
    if not sep or "/" in label:
        label, path_text = "", item
    if label and path_text in ("scratch", "imagenet"):
        return Init(check_label(label, option), path_text)
    file = export_path(path_text)
    if not file.is_file():
        raise SimsegError(f"{option} {path_text} has no encoder.safetensors: give a finished pretraining or "
                          f"classification run folder (or its exports/epoch_NNN), a CNN weights file, 'scratch' "
                          f"or 'imagenet'")
    if file.name != "encoder.safetensors":  # a CNN encoder's weights file
        return Init(check_label(label or file.stem, option), str(file.resolve()))
    run_dir = file.parent.resolve()
    run, epoch = exporting_run(run_dir)  # RUN/exports/epoch_NNN: named RUN-epoch_NNN, as two runs share NNN
    label = check_label(label or (run_dir.name if epoch is None else f"{run.name}-{run_dir.name}"), option)
    return Init(label, str(run_dir), pretraining_of_run(run_dir))


def check_label(label: str, option: str) -> str:
    if not label.replace("-", "").replace("_", "").replace(".", "").replace("+", "").isalnum():
        raise SimsegError(f"{option} label '{label}' may hold only letters, digits and - _ . +: name it LABEL=PATH")
    return label


def intermediate_init(init: Init, inits: list[Init]) -> Init:
    """An ``--intermediate`` run, tied to the init it was trained from when that init is in the sweep."""
    parent = lineage_parent(Path(init.path))
    base = next((other.label for other in inits if parent is not None and other.path == str(parent)), None)
    return replace(init, intermediate=True, base_init=base)


def pretraining_of_run(run_dir: Path) -> tuple:
    """Each pretraining axis's value for the pretraining at the root of ``run_dir``'s lineage (see
    :meth:`~simseg.experiments.sweep.axes.Axis.of_run`); none when the root is not known."""
    root = lineage_root(run_dir)
    if root is None:
        return ()
    root, _ = exporting_run(root)  # an intermediate export's values are its pretraining run's
    return pretraining_of({axis.column: axis.of_run(root) for axis in pretraining_axes()})
