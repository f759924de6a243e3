"""The ``simseg`` command: each subcommand parses its arguments and calls the library function that does the work
(the stage scripts share :mod:`simseg.experiments.stage_entry` with it).

    simseg pretrain [-c configs/pretrain.yaml] [key=value ...]
    simseg classify [-c configs/classify.yaml] [key=value ...]
    simseg segment [-c configs/segment.yaml] [key=value ...]
    simseg chain -c configs/chain.yaml [stage.section.key=value ...]
    simseg sweep --subsets 250,500,1k --init scratch,RUN_DIR [--seeds 0,1,2] [--data PETS] [--shard i/n] ...
    simseg report SWEEP_DIR [--tta] [--reference LABEL] [--compare A[+A2],B ...] [--publish DIR]
    simseg report --page docs/results/PAGE.md [--check]
    simseg grid --checkpoint RUN_DIR --data SOURCE [--n 8] [--out FILE.png]
    simseg data cache SOURCE --out DIR [--img-size 128] [--workers 4] [--overwrite] [--exclude FILE]
    simseg data synthetic --out DIR --layout mask-folder|palette|colour|binary|hf [--count 120] [--size 96] [--split]
    simseg demo [--output-dir outputs/demo]
    simseg predict RUN_DIR|MODEL.onnx SOURCE... --out DIR [--overlay] [--probs] [--tta] ...
    simseg export RUN_DIR --format onnx --out FILE.onnx
    simseg card RUN_DIR [--evaluate] [--out FILE.md]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from simseg.errors import SimsegError
from simseg.experiments.stage_entry import run_main, stage_config
from simseg.experiments.stage_table import STAGES, run_stage

__all__ = ["main", "run_main", "stage_config"]  # the last two re-exported for scripts written against simseg.cli


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    commands = {**{name: stage_command(name) for name in STAGES}, "chain": chain, "sweep": sweep, "report": report,
                "grid": grid, "data": data, "demo": demo, "predict": predict, "export": export, "card": card}
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
    from simseg.experiments.sweep.command import sweep as run_sweep

    return run_sweep(argv)


def report(argv: list[str]) -> Path:
    """Figures and report.md of a sweep folder, from its results and run folders; or a results page's tables
    regenerated from the results committed beside it (--page), or the light copy of a sweep a page commits
    (--publish)."""
    from simseg.experiments.report.build import build_report

    parser = argparse.ArgumentParser(prog="simseg report", description=report.__doc__)
    parser.add_argument("sweep_dir", nargs="?", help="the --output-dir of simseg sweep (not with --page)")
    add_report_options(parser)
    parser.add_argument("--page", metavar="PAGE.md",
                        help="rewrite the page's '<!-- simseg report FOLDER ...: \"SECTION\" -->' blocks from their "
                             "results folders (no SWEEP_DIR)")
    parser.add_argument("--check", action="store_true",
                        help="with --page: change nothing, fail if a block differs from what its results give")
    parser.add_argument("--publish", metavar="DIR",
                        help="also copy the results, sweep.json and each cell's metrics and per-image scores (no "
                             "weights) into DIR, for committing beside a page")
    args = parser.parse_args(argv)
    if args.page:
        from simseg.experiments.report.page import update_page

        if args.sweep_dir or args.publish:
            parser.error("--page regenerates a page from the folders its blocks name: give no SWEEP_DIR or --publish")
        changed = update_page(args.page, page_renderer(), check=args.check)
        print(f"{args.page}: {len(changed)} table(s) " + ("differ" if args.check else "rewritten")
              + (f" ({', '.join(changed)})" if changed else ", all as their results give"))
        return Path(args.page)
    if not args.sweep_dir:
        parser.error("give SWEEP_DIR, or --page PAGE.md")
    if args.publish:  # refused before the report writes anything
        from simseg.experiments.report.publish import check_destination

        check_destination(Path(args.sweep_dir), Path(args.publish))
    path = build_report(args.sweep_dir, tta=args.tta, reference=args.reference, compare=tuple(args.compare))
    print(f"wrote {path} and its figures")
    if args.publish:
        from simseg.experiments.report.publish import publish_results

        written = publish_results(args.sweep_dir, args.publish)
        print(f"published {len(written)} files into {args.publish}")
    return path


def add_report_options(parser: argparse.ArgumentParser) -> None:
    """The options that change what a report compares: the command's and a page block's."""
    parser.add_argument("--tta", action="store_true",
                        help="compare the test-time-augmentation view instead of the plain one (cells run with "
                             "eval.tta=true)")
    parser.add_argument("--reference", metavar="LABEL",
                        help="also give every arm's gain over this one (a label as the report's tables print it)")
    parser.add_argument("--compare", action="append", default=[], metavar="A,B",
                        help="also give A's gain over B; A may pool arms as A1+A2 (e.g. two pretraining seeds: "
                             "their mean gain, each a block of one interval); may be repeated")


def page_renderer():
    """(results folder, a block's report options) -> the report's markdown, for :func:`update_page`."""
    from simseg.experiments.report.build import report_markdown

    def render(folder: Path, options: list[str]) -> str:
        parser = argparse.ArgumentParser(prog="simseg report block", exit_on_error=False, add_help=False)
        add_report_options(parser)
        try:
            args = parser.parse_args(options)
        except (argparse.ArgumentError, SystemExit):
            raise SimsegError(f"a page block for {folder} has options {' '.join(options)!r} that simseg report "
                              f"does not take: use --tta, --reference LABEL, --compare A,B") from None
        return report_markdown(folder, tta=args.tta, reference=args.reference, compare=tuple(args.compare))

    return render


def grid(argv: list[str]) -> Path:
    """Reconstruction grid of a pretraining run on any images, with seeded masks."""
    parser = argparse.ArgumentParser(prog="simseg grid", description=grid.__doc__)
    parser.add_argument("--checkpoint", required=True, help="a pretraining run folder (or its model.safetensors)")
    parser.add_argument("--data", required=True, help="image source: folder, datasets dataset or 'synthetic'")
    parser.add_argument("--n", type=int, default=8, help="rows (images)")
    parser.add_argument("--out", help="PNG to write (default: RUN_DIR/grids/grid.png)")
    parser.add_argument("--seed", type=int, default=0, help="which images and masks")
    args = parser.parse_args(argv)
    from simseg.training.run_grid import grid_of_run

    out = grid_of_run(args.checkpoint, args.data, args.n, args.seed, args.out)
    print(f"wrote {out}")
    return out


def data(argv: list[str]) -> Path:
    """Data tools. ``simseg data cache``: decode every image of a source once into an image cache, the format every
    stage's batched path reads (pretrain on it with data.source=DIR). ``simseg data synthetic``: write the synthetic
    shapes (7 classes) to disk in a layout users bring their own data in, a working example of each format."""
    from simseg.data.synthetic_export import LAYOUTS

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
    cache.add_argument("--exclude", default="", metavar="FILE",
                       help="leave out the images this file names (one file name or stem a line), as data.exclude")
    synthetic = tools.add_parser("synthetic", help="write the synthetic shapes (7 classes) as a mask folder, palette "
                                                   "or colour masks, binary masks or a datasets dataset")
    synthetic.add_argument("--out", required=True, help="the folder to write (absent or empty)")
    synthetic.add_argument("--layout", required=True, choices=LAYOUTS,
                           help="mask-folder: class-id PNGs; palette: palette PNGs; colour: RGB masks + classes.json; "
                                "binary: 0/255 shape masks (2 classes); hf: a datasets save_to_disk folder")
    synthetic.add_argument("--count", type=int, default=120, help="images (default 120)")
    synthetic.add_argument("--size", type=int, default=96, help="side of the square images in pixels (default 96)")
    synthetic.add_argument("--seed", type=int, default=0, help="which synthetic images (default 0)")
    synthetic.add_argument("--split", action="store_true",
                           help="write train/ and test/ (the last quarter) instead of one set")
    args = parser.parse_args(argv)
    return data_synthetic(args) if args.tool == "synthetic" else data_cache(args)


def data_cache(args: argparse.Namespace) -> Path:
    """``simseg data cache``."""
    from simseg.data.cache_build import cache_source

    made = cache_source(args.source, args.out, args.img_size, args.size, args.workers, args.overwrite, args.exclude)
    if made.excluded:
        print(f"left out {made.excluded['excluded']:,} images of the {made.excluded['listed']:,} names in "
              f"{args.exclude}")
    print(f"wrote {made.out}: {made.images:,} images at {made.side} px; pretrain on it with data.source={made.out}")
    return made.out


def data_synthetic(args: argparse.Namespace) -> Path:
    """``simseg data synthetic``."""
    from simseg.data.synthetic_export import segment_command, write_synthetic

    out = write_synthetic(args.out, args.layout, args.count, args.size, args.seed, args.split)
    split = " in train/ and test/" if args.split else ""
    print(f"wrote {out}: {args.count:,} synthetic {args.size} px images with their masks as {args.layout}{split}; "
          f"segment on them with: {segment_command(out, args.layout, args.count, args.split)}")
    return out


def demo(argv: list[str]) -> Path:
    """The study's pipeline end to end on synthetic images: the chain's SimMIM pretraining and classification, then a
    small sweep (scratch, pretrained, pretrained + classify at two labelled-subset sizes) and its report; prints the
    test mIoUs and where the pictures are."""
    from simseg.experiments.demo import run_demo

    parser = argparse.ArgumentParser(prog="simseg demo", description=demo.__doc__)
    parser.add_argument("--output-dir", default="outputs/demo", help="parent folder of the demo's runs")
    return run_demo(Path(parser.parse_args(argv).output_dir))


def predict(argv: list[str]) -> Path:
    """Label maps of photos from a finished segmentation run folder or an ONNX file of simseg export: NAME.png per
    input image (a palette PNG at the image's own size), named after the input and keeping its relative folder; and
    predictions.jsonl. Exits 1 when some images could not be read (the others are written)."""
    from simseg.inference.label_maps import LABEL_VALUES
    from simseg.inference.predict_files import PredictOptions, predict_sources
    from simseg.inference.segmenter import RESOLUTIONS

    parser = argparse.ArgumentParser(prog="simseg predict", description=predict.__doc__)
    parser.add_argument("model", help="a finished `simseg segment` run folder, or an .onnx file from simseg export")
    parser.add_argument("sources", nargs="+", metavar="SOURCE",
                        help="image files, folders (recursive), globs (quoted) or text files listing image paths")
    parser.add_argument("--out", required=True, help="folder for the outputs (made if absent)")
    parser.add_argument("--overlay", action="store_true", help="also NAME_overlay.jpg: the classes over the photo")
    parser.add_argument("--probs", action="store_true", help="also NAME.npy: float16 (C, H, W) class probabilities")
    parser.add_argument("--label-values", choices=(*LABEL_VALUES, "oxford"), default="classes",
                        help="classes: the class ids 0..C-1; source: the value each class has in the training data's "
                             "own masks (the \"value\" of the run's classes.json); oxford: the old name of source, "
                             "for pet-trimap models only")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--device", default="auto", help="auto (CUDA when there is one), cpu or cuda")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"),
                        help="autocast precision of the forward pass (a run folder only)")
    parser.add_argument("--tta", action="store_true",
                        help="average the probabilities over the run's test-time views (eval.tta_scales x flips)")
    parser.add_argument("--resolution", choices=RESOLUTIONS, default="original",
                        help="original: label maps at each image's size; input: at the model's input size, as the "
                             "run's test evaluation scores them")
    parser.add_argument("--threads", type=int, default=None, help="ONNX Runtime threads (an .onnx model only)")
    parser.add_argument("--workers", type=int, default=None,
                        help="threads that decode and write beside the forward pass (default: none on the CPU, the "
                             "cores but one, at most 8, beside a GPU)")
    parser.add_argument("--overwrite", action="store_true", help="redo images whose outputs are already in --out")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    options = PredictOptions(args.overlay, args.probs, "classes", args.batch_size, args.overwrite, args.resolution,
                             not args.quiet, args.workers)
    try:
        summary = predict_sources(args.model, args.sources, args.out, options, args.device, args.precision, args.tta,
                                  args.threads, args.label_values)
    except KeyboardInterrupt:
        print("simseg: interrupted; rerun the same command to go on: the images already written are skipped",
              file=sys.stderr)
        sys.exit(130)
    rate = summary.predicted / summary.seconds if summary.seconds else 0.0
    print(f"predicted {summary.predicted:,} images in {summary.seconds:.1f}s ({rate:.1f} images/s) into "
          f"{summary.out}; {summary.skipped:,} already there were skipped"
          + (f"; {len(summary.failed):,} could not be read (see predictions.jsonl)" if summary.failed else ""))
    if summary.failed:
        sys.exit(1)
    return summary.out


def export(argv: list[str]) -> Path:
    """Export a finished segmentation run to ONNX (fixed input size, dynamic batch, softmax probabilities out;
    classes, palette, mean/std, input size and the weights' SHA-256 in its metadata), verify it against PyTorch on
    the run's own test images (export_report.json beside the file; a failed check is an error) and write
    MODEL_CARD.md beside it, its test figures scored afresh with and without test-time augmentation."""
    from simseg.inference.release import export_release

    parser = argparse.ArgumentParser(prog="simseg export", description=export.__doc__)
    parser.add_argument("run_dir", help="a finished `simseg segment` run folder")
    parser.add_argument("--format", choices=("onnx",), default="onnx")
    parser.add_argument("--out", required=True, help="the .onnx file to write (its folder gets the report and card)")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for both runtimes in the speed comparison (default: torch's)")
    args = parser.parse_args(argv)
    made = export_release(args.run_dir, args.out, args.threads)
    print(f"wrote {made.onnx}, {made.report} and {made.card}")
    return made.onnx


def card(argv: list[str]) -> Path:
    """MODEL_CARD.md of a finished segmentation run: what the model is, how it was trained and tested, its figures,
    preprocessing, classes and how to load it."""
    from simseg.inference.release import write_run_card

    parser = argparse.ArgumentParser(prog="simseg card", description=card.__doc__)
    parser.add_argument("run_dir", help="a finished `simseg segment` run folder")
    parser.add_argument("--evaluate", action="store_true",
                        help="score the test set again, with and without test-time augmentation, for the per-class "
                             "table (needs the run's data)")
    parser.add_argument("--out", default=None, help="the card's path (default RUN_DIR/MODEL_CARD.md)")
    args = parser.parse_args(argv)
    out = write_run_card(args.run_dir, args.out, args.evaluate)
    print(f"wrote {out}")
    return out


if __name__ == "__main__":
    main()
