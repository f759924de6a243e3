"""``simseg demo``: the study's pipeline end to end on built-in synthetic images, at toy scale: the chain's SimMIM
pretraining and classification, then a six-cell sweep (scratch, pretrained, pretrained + classification at two
labelled-subset sizes) and its report. Rerunning it continues an interrupted demo, or just reports."""

from __future__ import annotations

from pathlib import Path

from simseg.experiments.chain import run_chain
from simseg.experiments.report.build import build_report
from simseg.experiments.run_folders import run_metrics
from simseg.experiments.sweep.command import sweep
from simseg.experiments.sweep.results import read_results

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


def run_demo(root: Path) -> Path:
    """Run (or continue) the demo in ``root`` and print what it found and where the pictures are."""
    chain = run_chain(None, [f"output_dir={root}", *(f"pretrain.{o}" for o in DEMO_PRETRAIN),
                             *(f"classify.{o}" for o in DEMO_CLASSIFY), "segment=null"])
    sweep_dir = sweep(["--subsets", DEMO_SUBSETS, "--init", f"scratch,pretrained={chain['pretrain']}",
                       "--intermediate", f"pretrained+classify={chain['classify']}",
                       "--output-dir", str(root / "sweep"), *DEMO_SEGMENT])
    report = build_report(sweep_dir)
    recon, classified = (run_metrics(chain[stage]) for stage in ("pretrain", "classify"))
    rows = read_results(sweep_dir)
    subsets = sorted({r["subset"] for r in rows})
    print("\nsimseg demo: the study's pipeline on synthetic images")
    print(f"  pretraining:    val reconstruction loss {recon['final_val_loss']:.3f}; grids in "
          f"{chain['pretrain'] / 'grids'}")
    print(f"  classification: test top-1 {classified['top1']:.3f} (chance {classified['chance']:.3f}); "
          f"{chain['classify'] / 'confusion.png'}")
    print(f"  segmentation test mIoU on {rows[0]['test_images']} test images, by labelled images:")
    print(f"    {'encoder':<24}" + "".join(f"{s:>8}" for s in subsets))
    for init in dict.fromkeys(r["init"] for r in rows):
        scores = {r["subset"]: r["miou_plain"] for r in rows if r["init"] == init}
        print(f"    {init:<24}" + "".join(f"{scores[s]:>8.3f}" if s in scores else f"{'-':>8}" for s in subsets))
    print(f"  report: {report} (figures and segmentation examples beside it)")
    largest = [r for r in rows if r["subset"] == max(subsets)]  # chosen on validation, never on the test set
    chosen = max(largest, key=lambda r: r["val_miou"] if r.get("val_miou") is not None else -1.0)
    print(f"  apply the cell validation chose to any photos: simseg predict {sweep_dir / chosen['run_dir']} PHOTOS/ "
          f"--out {root / 'predictions'} --overlay")
    print("  (a pipeline check at toy scale, one seed: these numbers say nothing about pretraining at the study's "
          "scale)")
    return root
