"""The ``simseg`` command: stages, reconstruction grids and the demo.

    simseg pretrain [-c configs/pretrain.yaml] [key=value ...]
    simseg grid --checkpoint RUN_DIR --data SOURCE [--n 8] [--out FILE.png]
    simseg demo [--output-dir outputs/demo]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from simseg.cli_utils import run_main, stage_config
from simseg.errors import SimsegError

# The demo: the study's encoder with 4 of its 12 blocks, on built-in synthetic images, so that reconstructions visibly
# take shape within ~3 minutes of a 2-core CPU (~1,100 steps). A higher LR with warmup than the study's 1e-4 and a
# sin-cos start for the learned position embedding shorten the early plateau where every masked patch gets the
# image's mean colour (measured: the 12-block encoder was still on it after the same time budget).
DEMO_PRETRAIN = [
    "data.source=synthetic", "data.synthetic_size=2000", "data.synthetic_image_size=128", "data.val_size=16",
    "data.num_workers=1",
    "model.depth=4", "model.pos_embed_init=sincos",
    "train.epochs=9", "train.batch_size=16", "train.lr=1e-3", "train.warmup_epochs=0.5", "train.milestones=[8]",
    "log.grid_every=3",
]


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    commands = {"pretrain": pretrain, "grid": grid, "demo": demo}
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in commands:
        print(__doc__.strip())
        if argv and argv[0] not in ("-h", "--help"):
            print(f"\nsimseg: error: unknown command '{argv[0]}'; choose one of {', '.join(commands)}", file=sys.stderr)
            sys.exit(2)
        return
    run_main(commands[argv[0]], argv[1:])


def pretrain(argv: list[str]) -> Path:
    from simseg.config import PretrainConfig
    from stages.pretrain import main as run_pretrain

    return run_pretrain(stage_config(PretrainConfig, argv, "pretrain"))


def grid(argv: list[str]) -> Path:
    """Reconstruction grid of a pretraining run on any images, with seeded masks."""
    parser = argparse.ArgumentParser(prog="simseg grid", description=grid.__doc__)
    parser.add_argument("--checkpoint", required=True, help="a pretraining run folder (or its model.safetensors)")
    parser.add_argument("--data", required=True, help="image source: folder, datasets dataset or 'synthetic'")
    parser.add_argument("--n", type=int, default=8, help="rows (images)")
    parser.add_argument("--out", help="PNG to write (default: RUN_DIR/grids/grid.png)")
    parser.add_argument("--seed", type=int, default=0, help="which images and masks")
    args = parser.parse_args(argv)

    import torch

    from simseg.checkpoint import read_weights
    from simseg.config import DataConfig, PretrainConfig
    from simseg.data import open_image_source
    from simseg.masking import random_unit_mask
    from simseg.plots import save_reconstruction_grid
    from simseg.rundir import load_run_config
    from simseg.simmim import SimMIM
    from simseg.transforms import eval_transform
    from simseg.vit import build_encoder

    run_dir = Path(args.checkpoint).expanduser()
    run_dir = run_dir.parent if run_dir.is_file() else run_dir
    if not run_dir.is_dir():
        raise SimsegError(f"--checkpoint {args.checkpoint} does not exist: give a pretraining run folder")
    cfg = load_run_config(run_dir, PretrainConfig)
    model = SimMIM(build_encoder(cfg.model))
    tensors, _ = read_weights(run_dir / "model.safetensors")
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    if missing or unexpected:
        raise SimsegError(f"{run_dir}/model.safetensors does not fit the run's config.yaml: "
                          f"was it copied from another run?")
    source = open_image_source(DataConfig(source=args.data), stream="grid")
    if args.n < 1:
        raise SimsegError("--n must be at least 1")
    generator = torch.Generator().manual_seed(args.seed)
    picks = torch.randperm(len(source), generator=generator)[: args.n].tolist()
    transform = eval_transform(cfg.model.img_size, cfg.aug.mean, cfg.aug.std)
    images = torch.stack([transform(source.image(i)) for i in picks])
    masks = random_unit_mask(len(picks), cfg.model.img_size, cfg.model.patch_size, cfg.mask.unit, cfg.mask.ratio,
                             generator)
    out = Path(args.out) if args.out else run_dir / "grids" / "grid.png"
    save_reconstruction_grid(out, model, images, masks, cfg.aug.mean, cfg.aug.std, f"{run_dir.name} on {source.name}")
    print(f"wrote {out}")
    return out


def demo(argv: list[str]) -> Path:
    """SimMIM pretraining on synthetic images, end to end in a few minutes; prints where the results are."""
    parser = argparse.ArgumentParser(prog="simseg demo", description=demo.__doc__)
    parser.add_argument("--output-dir", default="outputs/demo", help="parent folder of the demo's runs")
    args = parser.parse_args(argv)
    run_dir = Path(args.output_dir) / "pretrain"
    # A demo run folder that exists is continued (or, when finished, only reported): rerunning the demo is safe.
    resume = (run_dir / "config.yaml").exists()
    pretrain([*DEMO_PRETRAIN, f"output_dir={run_dir}", f"resume={str(resume).lower()}"])
    metrics = json.loads((run_dir / "metrics.json").read_text())
    grids = sorted((run_dir / "grids").glob("epoch_*.png"))
    print("\nsimseg demo: SimMIM pretraining on synthetic images")
    print(f"  val reconstruction loss {metrics['final_val_loss']:.3f} (best {metrics['best_val_loss']:.3f}), "
          f"{metrics['images_per_s']:.0f} images/s, {metrics['train_seconds']:.0f}s of training")
    print(f"  run folder:           {run_dir}")
    print(f"  reconstruction grids: {', '.join(str(g) for g in grids)}")
    print(f"  encoder export:       {run_dir / 'encoder.safetensors'}")
    return run_dir


if __name__ == "__main__":
    main()
