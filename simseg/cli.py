"""The ``simseg`` command: stages, reconstruction grids and the demo.

    simseg pretrain [-c configs/pretrain.yaml] [key=value ...]
    simseg classify [-c configs/classify.yaml] [key=value ...]
    simseg segment [-c configs/segment.yaml] [key=value ...]
    simseg chain -c configs/chain.yaml [stage.section.key=value ...]
    simseg sweep --subsets 250,500,1k --init scratch,RUN_DIR [--seeds 0,1,2] [--data PETS] [--shard i/n] ...
    simseg report SWEEP_DIR
    simseg grid --checkpoint RUN_DIR --data SOURCE [--n 8] [--out FILE.png]
    simseg data cache SOURCE --out DIR [--img-size 128] [--workers 4] [--overwrite]
    simseg demo [--output-dir outputs/demo]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from simseg.command_line import run_main, stage_config
from simseg.errors import SimsegError
from simseg.experiments.stage_table import STAGES, run_stage

# The demo: the study's recipes on built-in synthetic images, with the encoder cut to 4 of its 12 blocks, so that
# pretraining, classification and a six-cell sweep fit in minutes on a laptop's CPU. A higher LR with warmup than
# the study's and a sin-cos start for the learned position embedding shorten the early plateau where every masked
# patch gets the image's mean colour, which a short run would not leave. No hue jitter: the synthetic colours are
# random already, and hue is the costliest augmentation on a CPU.
DEMO_SHARED = [
    "data.source=synthetic", "data.synthetic_image_size=128", "data.num_workers=1",
    "model.depth=4", "model.pos_embed_init=sincos", "aug.color_jitter=[0.4,0.4,0.4,0.0]",
    "train.batch_size=16", "train.lr=1e-3", "train.warmup_epochs=0.5",
]
DEMO_PRETRAIN = [*DEMO_SHARED, "data.synthetic_size=2000", "data.val_size=16", "train.epochs=6",
                 "train.milestones=[5]", "log.grid_every=2"]
DEMO_CLASSIFY = [*DEMO_SHARED, "data.subset=500", "data.test_size=200", "train.epochs=4", "train.milestones=[3]",
                 "eval.every=0"]
DEMO_SEGMENT = [*DEMO_SHARED, "data.test_size=200", "train.epochs=5", "train.milestones=[4]", "eval.every=0",
                "log.progress=false"]
DEMO_SUBSETS = "100,250"  # two sizes that keep the six cells near 1.5 minutes


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    commands = {**{name: stage_command(name) for name in STAGES}, "chain": chain, "sweep": sweep, "report": report,
                "grid": grid, "data": data, "demo": demo}
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in commands:
        print(__doc__.strip())
        if argv and argv[0] not in ("-h", "--help"):
            print(f"\nsimseg: error: unknown command '{argv[0]}'; choose one of {', '.join(commands)}", file=sys.stderr)
            sys.exit(2)
        return
    run_main(commands[argv[0]], argv[1:])


def stage_command(name: str):
    """``simseg pretrain|classify|segment [-c FILE] [key=value ...]``: one stage, in this process."""
    def run(argv: list[str]) -> Path:
        return run_stage(name, stage_config(STAGES[name].config, argv, name))
    return run


def chain(argv: list[str]) -> dict[str, Path]:
    """pretrain -> classify (optional) -> segment, each from the previous export; finished stages are skipped."""
    from simseg.experiments.chain import __doc__ as chain_doc
    from simseg.experiments.chain import run_chain

    parser = argparse.ArgumentParser(prog="simseg chain", description=chain_doc,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-c", "--config", help="chain file: output_dir and one config diff per stage")
    parser.add_argument("overrides", nargs="*", metavar="stage.section.key=value")
    args = parser.parse_args(argv)
    runs = run_chain(args.config, args.overrides)
    print("chain: done; run folders: " + ", ".join(f"{stage} {path}" for stage, path in runs.items()))
    return runs


def sweep(argv: list[str]) -> Path:
    """One segmentation run per init x subset x seed cell; see ``simseg sweep --help``."""
    from simseg.experiments.sweep import sweep as run_sweep

    return run_sweep(argv)


def report(argv: list[str]) -> Path:
    """Figures and report.md of a sweep folder, from its results and run folders."""
    from simseg.experiments.report import build_report

    parser = argparse.ArgumentParser(prog="simseg report", description=report.__doc__)
    parser.add_argument("sweep_dir", help="the --output-dir of simseg sweep")
    args = parser.parse_args(argv)
    path = build_report(args.sweep_dir)
    print(f"wrote {path} and its figures")
    return path


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

    from simseg.config.pretrain import PretrainConfig, PretrainDataConfig
    from simseg.data.transforms import eval_transform
    from simseg.data.unlabelled import open_image_source
    from simseg.models.masking import random_unit_mask
    from simseg.models.simmim import SimMIM
    from simseg.models.vit import build_encoder
    from simseg.training.export import read_weights
    from simseg.training.plots import save_reconstruction_grid
    from simseg.training.rundir import load_run_config

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
    source = open_image_source(PretrainDataConfig(source=args.data), stream="grid")
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


def data(argv: list[str]) -> Path:
    """Data tools. ``simseg data cache``: decode every image of a source once into an image cache, the format every
    stage's batched path reads (pretrain on it with data.source=DIR)."""
    from simseg.config.pretrain import PretrainDataConfig
    from simseg.data.cache_build import build_cache
    from simseg.data.image_cache import CacheSpec, cache_side
    from simseg.data.unlabelled import open_image_source

    parser = argparse.ArgumentParser(prog="simseg data", description=data.__doc__)
    tools = parser.add_subparsers(dest="tool", required=True)
    cache = tools.add_parser("cache", help="decode a source once into an image cache (*.npy + cache.json)")
    cache.add_argument("source", help="an image folder, a datasets dataset on disk, parquet/arrow files or 'synthetic'")
    cache.add_argument("--out", required=True, help="the cache folder (then pretrain with data.source=DIR)")
    cache.add_argument("--img-size", type=int, default=128, help="the model.img_size it will train (default 128)")
    cache.add_argument("--size", type=int, default=None,
                       help="side of the stored squares in pixels (default: a quarter more than --img-size, room for "
                            "the random crops)")
    cache.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1), help="decoding processes")
    cache.add_argument("--overwrite", action="store_true", help="replace an existing cache in --out")
    args = parser.parse_args(argv)
    size = args.size or cache_side(args.img_size)
    if size < 1 or args.img_size < 1:
        raise SimsegError(f"--size {size} and --img-size {args.img_size} must be positive numbers of pixels")
    source = open_image_source(PretrainDataConfig(source=args.source), stream="pretrain")
    out = build_cache(source, args.out, CacheSpec(size), workers=args.workers, overwrite=args.overwrite)
    print(f"wrote {out}: {len(source):,} images at {size} px; pretrain on it with data.source={out}")
    return out


def demo(argv: list[str]) -> Path:
    """The study's pipeline end to end on synthetic images: the chain's SimMIM pretraining and classification, then a
    small sweep (scratch, pretrained, pretrained + classify at two labelled-subset sizes) and its report; prints the
    test mIoUs and where the pictures are."""
    from simseg.experiments.chain import run_chain
    from simseg.experiments.report import build_report
    from simseg.experiments.results import read_results
    from simseg.experiments.sweep import sweep as run_sweep

    parser = argparse.ArgumentParser(prog="simseg demo", description=demo.__doc__)
    parser.add_argument("--output-dir", default="outputs/demo", help="parent folder of the demo's runs")
    args = parser.parse_args(argv)
    root = Path(args.output_dir)
    chain = run_chain(None, [f"output_dir={root}", *(f"pretrain.{o}" for o in DEMO_PRETRAIN),
                             *(f"classify.{o}" for o in DEMO_CLASSIFY), "segment=null"])
    # Finished cells are skipped, so rerunning the demo only reports.
    sweep_dir = run_sweep(["--subsets", DEMO_SUBSETS, "--init", f"scratch,pretrained={chain['pretrain']}",
                           "--intermediate", f"pretrained+classify={chain['classify']}",
                           "--output-dir", str(root / "sweep"), *DEMO_SEGMENT])
    report = build_report(sweep_dir)

    def metrics(run_dir: Path) -> dict:
        return json.loads((run_dir / "metrics.json").read_text())

    recon, classify_m = metrics(chain["pretrain"]), metrics(chain["classify"])
    rows = read_results(sweep_dir)
    subsets = sorted({r["subset"] for r in rows})
    print("\nsimseg demo: the study's pipeline on synthetic images")
    print(f"  pretraining:    val reconstruction loss {recon['final_val_loss']:.3f}; grids in "
          f"{chain['pretrain'] / 'grids'}")
    print(f"  classification: test top-1 {classify_m['top1']:.3f} (chance {classify_m['chance']:.3f}); "
          f"{chain['classify'] / 'confusion.png'}")
    print(f"  segmentation test mIoU on {rows[0]['test_images']} test images, by labelled images:")
    print(f"    {'encoder':<24}" + "".join(f"{s:>8}" for s in subsets))
    for init in dict.fromkeys(r["init"] for r in rows):
        scores = {r["subset"]: r["miou"] for r in rows if r["init"] == init}
        print(f"    {init:<24}" + "".join(f"{scores[s]:>8.3f}" if s in scores else f"{'-':>8}" for s in subsets))
    print(f"  report: {report} (figures and segmentation examples beside it)")
    print("  (a pipeline check at toy scale, one seed: these numbers say nothing about pretraining at the study's "
          "scale)")
    return root


if __name__ == "__main__":
    main()
