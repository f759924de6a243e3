"""The linear probe (simseg.training.probe, what ``probe.every`` runs during pretraining) of every intermediate export
of a finished pretraining run, for a run that was not probed while it trained, or to compare with fine-tuning.

    python studies/probe_exports.py RUN_DIR --data ../shared/data/oxford-iiit-pet [--exclude TEST_LIST]

Wall time: not recorded (a probe of 300 steps per export; studies/pretraining.sh and studies/pretraining_budget.sh
run it for docs/results/pretraining.md).

Probes RUN_DIR/exports/epoch_NNN/encoder.safetensors (``log.export_every``) and the final RUN_DIR/encoder.safetensors
with the run's own probe.* settings (data from --data), after a probe of the untrained encoder of the run's seed,
and writes RUN_DIR/probe_exports.json: [{"export", "epoch", "minutes", "probe_miou", "probe_boundary_iou",
"probe_seconds"}], minutes being the pretraining minutes that export had (0 for the untrained encoder).
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import torch

from simseg.config.pretrain import PretrainConfig
from simseg.data.unlabelled import read_exclude_file
from simseg.files import atomic_write_json
from simseg.models.vit import build_encoder
from simseg.training.handoff import load_encoder
from simseg.training.probe import LinearProbe
from simseg.training.rundir import load_run_config, read_metrics


def exports(run_dir: Path, final_epoch: int) -> list[tuple[str, int, Path]]:
    """(name, 0-based epoch, file) of each kept export and the final one, in training order."""
    kept = [(p.name, int(p.name.split("_")[1]), p / "encoder.safetensors")
            for p in sorted((run_dir / "exports").glob("epoch_*")) if (p / "encoder.safetensors").is_file()]
    if not any(epoch == final_epoch for _, epoch, _ in kept):
        kept.append(("final", final_epoch, run_dir / "encoder.safetensors"))
    return kept


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--data", required=True, help="the labelled segmentation source (probe.data)")
    parser.add_argument("--exclude", help="image names the probe must never use (e.g. the sweep's test list)")
    args = parser.parse_args()
    cfg = load_run_config(args.run_dir, PretrainConfig)
    probe_cfg = dataclasses.replace(cfg.probe, data=args.data)
    never = read_exclude_file(args.exclude, "--exclude")[0] if args.exclude else set()
    probe = LinearProbe.prepare(probe_cfg, cfg.model.img_size, cfg.aug.mean, cfg.aug.std, never, cfg.seed)

    minutes, total = {}, 0.0
    for record in read_metrics(args.run_dir):
        total += record["seconds"] / 60
        minutes[record["epoch"]] = total
    torch.manual_seed(cfg.seed)
    rows = [{"export": "untrained", "epoch": -1, "minutes": 0.0, **probe.score(build_encoder(cfg.model))}]
    for name, epoch, file in exports(args.run_dir, max(minutes)):
        encoder, _ = load_encoder(file)
        rows.append({"export": name, "epoch": epoch, "minutes": minutes[epoch], **probe.score(encoder)})
        print(f"{name}: {minutes[epoch]:.1f} min, probe mIoU {rows[-1]['probe_miou']:.3f}", flush=True)
    atomic_write_json(args.run_dir / "probe_exports.json", rows)
    print(f"wrote {args.run_dir / 'probe_exports.json'}")


if __name__ == "__main__":
    main()
