"""The one table of stages: each stage's name, its config class and its script, and how to run one in this process.

The CLI's stage commands, the chain and the sweep all run stages through :func:`run_stage`. The scripts in
``stages/`` are the top floor: they import the library and never the other way round, so a script's module is
imported here by name when its stage runs, not when the library loads.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Stage:
    name: str
    config_class: str
    """``module:Class`` of the stage's config dataclass, imported when asked for (it imports torch and timm, which
    ``simseg --help`` should not wait for)."""
    module: str
    """The stage script's module, whose ``main(cfg)`` runs the stage and returns its run folder."""

    @property
    def config(self) -> type:
        module, _, name = self.config_class.partition(":")
        return getattr(importlib.import_module(module), name)


STAGES: dict[str, Stage] = {stage.name: stage for stage in (
    Stage("pretrain", "simseg.config.pretrain:PretrainConfig", "stages.pretrain"),
    Stage("classify", "simseg.config.classify:ClassifyConfig", "stages.classify"),
    Stage("segment", "simseg.config.segment:SegmentConfig", "stages.segment"),
)}


def run_stage(name: str, cfg) -> Path:
    """Run stage ``name`` with ``cfg`` in this process (on every rank under ``accelerate launch``); returns its run
    folder.

    Each stage builds its own Accelerator (mixed precision may differ per stage), but Accelerate keeps one state per
    process, so it is cleared after the stage. Running each stage as a process of its own would need no clearing,
    but a sweep launched on several GPUs runs its cells on the ranks it already has, in one process group; per-cell
    processes belong with the launcher that gives each cell its own ``accelerate launch``."""
    from simseg.training.engine import reset_accelerate_state

    run_dir = importlib.import_module(STAGES[name].module).main(cfg)
    reset_accelerate_state()
    return run_dir
