"""``simseg chain``: pretrain -> classify (optional) -> segment, each stage starting from the previous one's export.

    simseg chain -c configs/chain.yaml [pretrain.train.epochs=10 segment.data.subset=1k ...]

The chain file names the parent folder and holds one config diff per stage (the stage's own keys, as in its own YAML
files); leave ``classify`` out (or null) to segment straight from the pretraining export, or set ``segment: null`` to
stop after the export a sweep will start from (``simseg sweep --intermediate``)::

    output_dir: outputs/chain
    pretrain: {data: {source: /data/imagenet/train, subset: 45k}}
    classify: {data: {source: /data/intel-image-classification}}
    segment:  {data: {source: /data/oxford-iiit-pet, subset: 1k}}

Each stage runs in ``output_dir/<stage>``; the chain sets ``output_dir``, ``init`` and ``resume`` itself. Running the
chain again skips finished stages (after checking that their config is unchanged) and resumes an interrupted one.
"""

from __future__ import annotations

from pathlib import Path

from simseg.config.loader import build, parse_value, read_yaml, set_dotted
from simseg.errors import SimsegError
from simseg.experiments.run_folders import run_started
from simseg.experiments.stage_table import STAGES, run_stage
from simseg.training.resume_state import is_finished
from simseg.training.rundir import prepare_run_dir

_CHAIN_SET = ("output_dir", "init", "resume")


def load_chain(path: str | Path | None, overrides: list[str]) -> tuple[Path, dict[str, dict | None]]:
    """(parent folder, {stage: config diff or None}) from a chain file and ``stage.section.key=value`` overrides."""
    tree = read_yaml(Path(path)) if path is not None else {}
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise SimsegError(f"override '{item}' is not of the form stage.section.key=value")
        set_dotted(tree, key.strip(), parse_value(text))
    unknown = set(tree) - {"output_dir", *STAGES}
    if unknown:
        raise SimsegError(f"unknown chain key '{sorted(unknown)[0]}': a chain file holds output_dir and the sections "
                          f"{', '.join(STAGES)}")
    stages = {stage: tree.get(stage) for stage in STAGES}
    stages["pretrain"] = stages["pretrain"] or {}
    if "segment" not in tree:
        stages["segment"] = {}
    for stage, diff in stages.items():
        if diff is not None and not isinstance(diff, dict):
            raise SimsegError(f"chain section '{stage}' must be a mapping of config keys (or null), got {diff!r}")
        taken = [k for k in _CHAIN_SET if diff and k in diff]
        if taken:
            raise SimsegError(f"{stage}.{taken[0]} is set by the chain itself: remove it from the chain file")
    return Path(tree.get("output_dir", "outputs/chain")).expanduser(), stages


def stage_configs(root: Path, stages: dict[str, dict | None]) -> list[tuple[str, object]]:
    """The resolved config of every stage to run, in order, each ``init`` pointing at the previous run folder."""
    configs, previous = [], None
    for stage in STAGES:
        if stages[stage] is None:
            continue
        run_dir = root / stage
        tree = {**stages[stage], "output_dir": str(run_dir), "resume": run_started(run_dir)}
        if previous is not None:
            tree["init"] = str(previous)
        configs.append((stage, build(STAGES[stage].config, tree, f"{stage}.")))
        previous = run_dir
    return configs


def run_chain(path: str | Path | None, overrides: list[str]) -> dict[str, Path]:
    """Run (or resume, or skip) every stage of the chain; returns {stage: run folder}."""
    root, stages = load_chain(path, overrides)
    plan = stage_configs(root, stages)
    runs = {}
    for index, (stage, cfg) in enumerate(plan, start=1):
        run_dir = Path(cfg.output_dir)
        if cfg.resume:
            prepare_run_dir(cfg)  # refuses a finished or started stage whose config has changed since
            if is_finished(cfg):
                print(f"chain: [{index}/{len(plan)}] {stage} finished earlier in {run_dir}: skipped")
                runs[stage] = run_dir
                continue
        print(f"chain: [{index}/{len(plan)}] {stage} -> {run_dir}" + (" (resuming)" if cfg.resume else ""))
        runs[stage] = run_stage(stage, cfg)
    return runs

