"""How fast ``simseg predict`` is end to end against the model's forward pass alone, and where the rest goes.

    python benchmarks/predict_speed.py [--run RUN_DIR] [--images ../shared/data/oxford-iiit-pet/images] [--n 400]
        [--batch-size 8] [--device cpu] [--precisions fp32] [--onnx]

One sitting, same batch size, same images:
1. forward alone: the preprocessed batches already in memory, ``segmenter.backend.probabilities`` on each;
2. end to end: ``predict_files`` on the folder (decode, preprocess, forward, resize back, argmax, palette PNG,
   predictions.jsonl), outputs overwritten each time; (1) and (2) alternate 3 times and the fastest of each counts;
3. where the rest goes: each step outside the forward pass timed alone on the same images, in ms per image;
4. with ``--onnx``: the model exported to ONNX and ONNX Runtime against PyTorch at equal thread counts;
5. with several ``--precisions`` (on CUDA): throughput of each and its agreement with fp32 on the same images.

Without ``--run`` the model is the default ``vit_fused_skip`` with untrained weights: speed does not depend on
what the weights are.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(HERE))

from simseg.data.sources import read_rgb  # noqa: E402
from simseg.inference.inputs import expand_inputs  # noqa: E402
from simseg.inference.label_maps import label_image  # noqa: E402
from simseg.inference.predict_files import PredictOptions, predict_files, run_header  # noqa: E402
from simseg.inference.segmenter import Segmenter  # noqa: E402


def untrained_run(folder: Path, arch: str) -> Path:
    """A finished-run folder of ``arch`` at the default config with untrained weights."""
    from simseg.config.loader import load_config
    from simseg.config.segment import SegmentConfig
    from simseg.files import atomic_write_json
    from simseg.models.registry import model_for_config
    from simseg.training.rundir import write_config
    from simseg.training.stage_steps import write_labelled_exports

    cfg = load_config(SegmentConfig, None, [f"model.arch={arch}", f"output_dir={folder}"])
    folder.mkdir(parents=True)
    write_config(folder, cfg, command=["benchmarks/predict_speed.py"])
    atomic_write_json(folder / "metrics.json", {"arch": arch, "note": "untrained weights, for timing"})
    write_labelled_exports(folder, model_for_config(cfg.model, 3, cfg.loss).eval(), cfg, "segment", arch=arch)
    return folder


def timed(work, repeat: int = 1) -> float:
    """Seconds of the fastest of ``repeat`` calls."""
    best = float("inf")
    for _ in range(repeat):
        began = time.perf_counter()
        work()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - began)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", default=None, help="a finished segment run (default: untrained vit_fused_skip)")
    parser.add_argument("--arch", default="vit_fused_skip")
    parser.add_argument("--images", default=str(HERE.parent / "shared/data/oxford-iiit-pet/images"))
    parser.add_argument("--n", type=int, default=400, help="images to predict")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precisions", default="fp32", help="comma-separated: fp32,bf16,fp16")
    parser.add_argument("--onnx", action="store_true", help="also ONNX Runtime against PyTorch at equal threads")
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="predict_speed_"))
    run = Path(args.run) if args.run else untrained_run(work / "run", args.arch)
    inputs = expand_inputs([args.images])[:args.n]
    folder = work / "images"  # the n images alone, as a user's folder
    folder.mkdir()
    for item in inputs:
        (folder / item.path.name).symlink_to(item.path.resolve())
    inputs = expand_inputs([str(folder)])
    figures = {"run": str(run), "images": len(inputs), "batch_size": args.batch_size, "device": args.device,
               "threads": torch.get_num_threads(), "torch": torch.__version__}
    print(f"{len(inputs)} images of {args.images}, batch {args.batch_size}, {args.device}, "
          f"{torch.get_num_threads()} threads; model {run}")

    results = {}
    for precision in args.precisions.split(","):
        segmenter = Segmenter.from_run(run, device=args.device, precision=precision)
        photos = [read_rgb(item.path, upright=True) for item in inputs]
        batches = [torch.stack([segmenter.preprocess(p) for p in photos[i:i + args.batch_size]])
                   for i in range(0, len(photos), args.batch_size)]
        for batch in batches[:2]:  # warm-up: allocator, kernels, thread pools
            segmenter.backend.probabilities(batch)
        options = PredictOptions(batch_size=args.batch_size, overwrite=True, progress=False)
        header = run_header(segmenter, options, tta=False)

        def forward_only(segmenter=segmenter, batches=batches):
            for batch in batches:
                segmenter.backend.probabilities(batch)

        def end_to_end(segmenter=segmenter, options=options, header=header, out=work / f"out_{precision}"):
            predict_files(segmenter, inputs, out, options, header)

        alternated = [(timed(forward_only), timed(end_to_end)) for _ in range(3)]
        forward_s, total_s = min(f for f, _ in alternated), min(t for _, t in alternated)
        row = {"forward_images_per_s": len(inputs) / forward_s, "predict_images_per_s": len(inputs) / total_s,
               "ratio": forward_s / total_s}
        results[precision] = row
        print(f"{precision}: forward alone {row['forward_images_per_s']:.1f} images/s, simseg predict end to end "
              f"{row['predict_images_per_s']:.1f} images/s: {row['ratio']:.2f}x of the forward pass")
        if precision == args.precisions.split(",")[0]:
            figures["steps_ms_per_image"] = steps(segmenter, inputs, photos, batches, forward_s, work)
            reference = [segmenter.backend.probabilities(b).cpu() for b in batches]
        else:
            mine = [segmenter.backend.probabilities(b).cpu() for b in batches]
            row["max_prob_diff_vs_first"] = max(float((a - b).abs().max()) for a, b in zip(mine, reference))
            row["class_agreement_vs_first"] = float(np.mean([(a.argmax(1) == b.argmax(1)).float().mean().item()
                                                             for a, b in zip(mine, reference)]))
            print(f"  against {args.precisions.split(',')[0]}: largest probability difference "
                  f"{row['max_prob_diff_vs_first']:.2e}, pixels of the same class "
                  f"{row['class_agreement_vs_first']:.5f}")
    figures["precisions"] = results
    if args.onnx:
        figures["onnx"] = onnx_against_torch(run, batches, work)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")


def steps(segmenter: Segmenter, inputs, photos, batches, forward_s: float, work: Path) -> dict:
    """Each step of ``simseg predict`` timed alone on the same images, in ms per image."""
    n = len(inputs)
    probs = [segmenter.backend.probabilities(b) for b in batches]
    sizes = [(p.height, p.width) for p in photos]

    def resize_back():
        for i, p in enumerate(probs):
            for j in range(p.shape[0]):
                h, w = sizes[i * len(batches[0]) + j]
                F.interpolate(p[j:j + 1], size=(h, w), mode="bilinear", align_corners=False)[0].max(0)

    labels = [np.zeros(s, dtype=np.uint8) for s in sizes]
    out = work / "png"
    out.mkdir(exist_ok=True)
    found = {
        "decode": timed(lambda: [read_rgb(item.path, upright=True) for item in inputs]),
        "preprocess": timed(lambda: [segmenter.preprocess(p) for p in photos]),
        "forward": forward_s,
        "resize_back_and_argmax": timed(resize_back),
        "write_png": timed(lambda: [label_image(x, segmenter.label_set).save(out / f"{i}.png")
                                    for i, x in enumerate(labels)]),
    }
    shown = {k: 1000 * v / n for k, v in found.items()}
    print("  ms per image, each step alone: " + ", ".join(f"{k} {v:.2f}" for k, v in shown.items()))
    return shown


def onnx_against_torch(run: Path, batches, work: Path) -> dict:
    from simseg.inference.backends import OnnxBackend
    from simseg.inference.onnx_export import export_onnx
    from simseg.inference.trained_run import load_trained_run

    trained = load_trained_run(run)
    path = work / "model.onnx"
    export_onnx(trained, path)
    threads = torch.get_num_threads()
    onnx_backend = OnnxBackend(path, threads=threads)
    torch_backend = Segmenter.from_run(run, device="cpu").backend
    speeds = {}
    for name, backend in (("pytorch", torch_backend), ("onnxruntime", onnx_backend)):
        backend.probabilities(batches[0])
        seconds = [timed(lambda b=backend: [b.probabilities(x) for x in batches]) for _ in range(3)]
        speeds[name] = sum(len(b) for b in batches) / statistics.median(seconds)
    print(f"CPU at {threads} threads: PyTorch {speeds['pytorch']:.1f} images/s, ONNX Runtime "
          f"{speeds['onnxruntime']:.1f} images/s ({speeds['onnxruntime'] / speeds['pytorch']:.2f}x)")
    return {"threads": threads, **{f"{k}_images_per_s": v for k, v in speeds.items()}}


if __name__ == "__main__":
    main()
