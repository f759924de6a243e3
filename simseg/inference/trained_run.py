"""A finished segmentation run folder rebuilt as the model it reports, from the folder alone.

The classes are the run's ``classes.json`` (:func:`~simseg.data.label_set.read_run_label_set`; a folder written
before runs recorded them trained on pet trimaps and gets :data:`~simseg.data.label_set.PETS`), and the model has
one output per class.

The weights are ``model.safetensors``: the segment stage writes there the weights whose scores ``metrics.json``
reports (the EMA average when the run kept one, the best validation epoch's when it had a validation split), so
loading them reproduces the reported model. The architecture comes from the run's ``config.yaml``; anything that is
not a finished segmentation run is refused in one line saying what it is and what to give instead.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from simseg.config.segment import SegmentConfig
from simseg.data.label_set import CLASSES_FILE, LabelSet, read_run_label_set
from simseg.errors import SimsegError
from simseg.files import sha256
from simseg.models.registry import model_for_config
from simseg.training.rundir import load_run_config
from simseg.training.weight_files import read_weights

WEIGHTS = "model.safetensors"
NEEDS = "give the output_dir of a finished `simseg segment` run"


@dataclass
class TrainedRun:
    run_dir: Path
    cfg: SegmentConfig
    model: nn.Module
    """The reported weights, in eval mode, on the CPU."""
    weights_sha256: str
    metrics: dict
    """The run's ``metrics.json``."""
    classes: LabelSet
    """The run's classes (``classes.json``): the model's output ``i`` is class ``classes.names[i]``."""

    @property
    def weights(self) -> Path:
        return self.run_dir / WEIGHTS

    def test_names(self) -> list[str]:
        """The names of the run's test items (``test_images.txt``), in the order the run scored them."""
        path = self.run_dir / "test_images.txt"
        if not path.is_file():
            raise SimsegError(f"{self.run_dir} has no test_images.txt: the run folder is incomplete; rerun it")
        return [line for line in path.read_text().splitlines() if line]

    def tta_views(self) -> tuple[list[float], bool]:
        """The run's test-time views (``eval.tta_scales``, ``eval.tta_flip``), whether or not it scored with them."""
        return list(self.cfg.eval.tta_scales), self.cfg.eval.tta_flip

    def lineage(self) -> dict:
        path = self.run_dir / "lineage.json"
        return json.loads(path.read_text()) if path.is_file() else {"init": self.cfg.init}


def load_trained_run(path: str | Path) -> TrainedRun:
    """The segmentation run at ``path`` (its folder, or the folder's ``model.safetensors``) with its reported weights
    loaded into the architecture its config names."""
    run_dir = Path(path).expanduser()
    if run_dir.is_file() and run_dir.name == WEIGHTS:
        run_dir = run_dir.parent
    if not run_dir.exists():
        raise SimsegError(f"run folder {run_dir} does not exist: {NEEDS} (or an .onnx file from simseg export)")
    if not run_dir.is_dir():
        raise SimsegError(f"{run_dir} is neither a run folder nor an .onnx file: {NEEDS}")
    if not (run_dir / "config.yaml").is_file():
        raise SimsegError(f"{run_dir} is not a simseg run folder (no config.yaml): {NEEDS}")
    stage = _stage_of(run_dir)
    if stage == "pretrain":
        raise SimsegError(f"{run_dir} is a pretraining run, which predicts pixels, not classes: segment with it "
                          f"first (simseg segment init={run_dir} ...) and give that run's folder")
    if stage not in (None, "segment"):
        raise SimsegError(f"{run_dir} is a {stage} run: {NEEDS}")
    if not (run_dir / WEIGHTS).is_file() or not (run_dir / "metrics.json").is_file():
        raise SimsegError(f"{run_dir} is an unfinished segmentation run (no {WEIGHTS} or metrics.json yet): finish "
                          f"it with simseg segment resume=true output_dir={run_dir}")
    cfg = load_run_config(run_dir, SegmentConfig)
    classes = read_run_label_set(run_dir)
    tensors, metadata = read_weights(run_dir / WEIGHTS)
    if metadata.get("num_classes", str(classes.num_classes)) != str(classes.num_classes):
        listed = (f"{run_dir / CLASSES_FILE} lists {classes.num_classes}" if (run_dir / CLASSES_FILE).is_file() else
                  f"the folder has no {CLASSES_FILE} (a run from before runs recorded their classes: pet trimaps, 3)")
        raise SimsegError(f"{run_dir / WEIGHTS} predicts {metadata['num_classes']} classes but {listed}: the folder "
                          f"mixes files of different runs; restore the run's own {CLASSES_FILE} or rerun it")
    model = model_for_config(cfg.model, classes.num_classes, cfg.loss)
    try:
        missing, unexpected = model.load_state_dict(tensors, strict=False)
    except RuntimeError as err:  # a tensor of another shape: strict=False forgives only missing and extra keys
        missing, unexpected = [str(err).split("size mismatch for ")[-1].split(":")[0]], []
    if missing or unexpected:
        raise SimsegError(f"{run_dir / WEIGHTS} does not fit the {cfg.model.arch} model of its config.yaml and "
                          f"{CLASSES_FILE} (missing or misshapen {sorted(missing)[:3]}, unexpected "
                          f"{sorted(unexpected)[:3]}): the folder mixes files of different runs; rerun it")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return TrainedRun(run_dir, cfg, model.eval(), sha256(run_dir / WEIGHTS), metrics, classes)


def _stage_of(run_dir: Path) -> str | None:
    """The stage that wrote the folder's exports (their metadata says), or None when it has written none yet."""
    for name in (WEIGHTS, "encoder.safetensors"):
        if (run_dir / name).is_file():
            return read_weights(run_dir / name, tensors=False)[1].get("stage")
    return None
