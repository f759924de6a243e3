"""The inits of a sweep: ``scratch``, ``imagenet``, ``PATH`` or ``LABEL=PATH`` resolved to
:class:`~simseg.experiments.grid.Init`, with the pretraining size and intermediate-step parent read from the run
folders' ``lineage.json`` and ``metrics.json``; and which inits fit which model (a SimMIM export only a ViT, ImageNet
or a ResNet weights file only a CNN)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from simseg.errors import SimsegError
from simseg.experiments.grid import Init
from simseg.training.export import export_path


def resolve_init(item: str, option: str) -> Init:
    """``scratch``, ``PATH`` or ``LABEL=PATH`` -> an :class:`Init` (its pretraining size read from the run folders)."""
    if item in ("scratch", "imagenet"):
        return Init(item, item)
    label, sep, path_text = item.partition("=")
    if not sep or "/" in label:
        label, path_text = "", item
    file = export_path(path_text)
    if not file.is_file():
        raise SimsegError(f"{option} {path_text} has no encoder.safetensors: give a finished pretraining or "
                          f"classification run folder, a CNN weights file, 'scratch' or 'imagenet'")
    if file.name != "encoder.safetensors":  # a CNN encoder's weights file
        return Init(check_label(label or file.stem, option), str(file.resolve()))
    run_dir = file.parent
    label = check_label(label or run_dir.resolve().name, option)
    return Init(label, str(run_dir.resolve()), pretraining_images(run_dir))


def check_label(label: str, option: str) -> str:
    if not label.replace("-", "").replace("_", "").replace(".", "").replace("+", "").isalnum():
        raise SimsegError(f"{option} label '{label}' may hold only letters, digits and - _ . +: name it LABEL=PATH")
    return label


def is_cnn_init(init: Init) -> bool:
    """ImageNet or a weights file (not a run folder): an init for a CNN's encoder."""
    return init.path == "imagenet" or Path(init.path).suffix in (".pth", ".pt", ".bin", ".safetensors")


def init_fits(init: Init, family: str) -> bool:
    """Whether ``init`` can start a model of ``family`` (``vit`` or ``cnn``): scratch starts both."""
    return init.path == "scratch" or is_cnn_init(init) == (family == "cnn")


def intermediate_init(init: Init, inits: list[Init]) -> Init:
    """An ``--intermediate`` run, tied to the init it was trained from when that init is in the sweep."""
    parent = lineage_parent(Path(init.path))
    base = next((other.label for other in inits if parent is not None and other.path == str(parent)), None)
    return replace(init, intermediate=True, base_init=base)


def lineage_parent(run_dir: Path) -> Path | None:
    """The run folder whose export ``run_dir`` started from (its ``lineage.json``), or None for a first stage."""
    lineage = run_dir / "lineage.json"
    if not lineage.is_file():
        return None
    export = json.loads(lineage.read_text()).get("export")
    return Path(export).parent.resolve() if export else None


def pretraining_images(run_dir: Path) -> int | None:
    """Training images of the pretraining at the root of ``run_dir``'s lineage (None if it is not known)."""
    for _ in range(8):  # pretrain -> classify -> ... chains are short; a loop of links would be a damaged folder
        parent = lineage_parent(run_dir)
        if parent is None:
            break
        run_dir = parent
    metrics = run_dir / "metrics.json"
    if (run_dir / "lineage.json").exists() or not metrics.is_file():
        return None
    return json.loads(metrics.read_text()).get("train_images")
