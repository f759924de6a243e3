"""Does an ONNX export predict what its run predicts? The figures that say so, and the verdict on them.

:func:`verify_export` runs the ONNX file on ONNX Runtime and the run's model on PyTorch (fp32, CPU) over the run's
own test images, at batch 1 and at batch 8 (the graph's batch axis is free, so both sizes must give the same
answer), and times both at equal thread counts. :func:`check_figures` turns the figures into a pass or a one-line
failure; :func:`write_figures` keeps them as ``export_report.json`` beside the file.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from pathlib import Path

import torch

from simseg.data.label_set import IGNORE_INDEX
from simseg.errors import SimsegError, one_line
from simseg.files import atomic_write_json, sha256
from simseg.inference.backends import OnnxBackend, TorchBackend
from simseg.inference.own_test_set import own_test_loader
from simseg.inference.trained_run import TrainedRun
from simseg.training.metrics import confusion_matrix, segmentation_metrics

try:
    import onnx
    import onnxruntime
except ImportError as missing:
    raise SimsegError(f"checking an ONNX export needs the {missing.name} package: pip install "
                      f"'simseg[export]'") from None

MAX_PROBABILITY_DIFFERENCE = 1e-3  # two runtimes' fp32 kernels differ by rounding, far less; this much is a wrong op
MIN_CLASS_AGREEMENT = 0.9999  # rounding flips only pixels on a near-tie between two classes: a few per 10,000
MAX_MIOU_DIFFERENCE = 1e-3  # a tenth of a point of test mIoU: more than near-tie flips can move it
BATCH_SIZES = (1, 8)
SPEED_BATCH = 8
WARMUP_RUNS = 2  # the first runs allocate buffers and (ONNX Runtime) pick kernels: not timed
TIMED_RUNS = 5


def verify_export(run: TrainedRun, onnx_path: Path, threads: int | None = None) -> dict:
    """The verification report of ``onnx_path`` against ``run`` (see the module docstring). ``threads``: the CPU
    threads both runtimes get throughout (default: torch's current number; torch's setting is put back after)."""
    onnx_path = Path(onnx_path).expanduser()
    threads = threads or torch.get_num_threads()
    try:
        onnx.checker.check_model(str(onnx_path), full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as err:
        raise SimsegError(f"{onnx_path} fails onnx.checker ({one_line(err)}): export it again with simseg "
                          f"export") from None
    onnx_backend = OnnxBackend(onnx_path, threads)
    if onnx_backend.info.get("weights_sha256") != run.weights_sha256:
        raise SimsegError(f"{onnx_path} was exported from other weights than {run.weights} (sha256 "
                          f"{str(onnx_backend.info.get('weights_sha256'))[:12]}... vs {run.weights_sha256[:12]}...): "
                          f"give the run it came from, or export this run again")
    torch_backend = TorchBackend(run.model, torch.device("cpu"), "fp32")
    with torch_threads(threads):
        batches = [compare_on_test_set(run, torch_backend, onnx_backend, size) for size in BATCH_SIZES]
        speed = cpu_speed(run, torch_backend, onnx_backend, threads)
    return {
        "onnx": str(onnx_path),
        "onnx_sha256": sha256(onnx_path),
        "run": str(run.run_dir),
        "weights_sha256": run.weights_sha256,
        "arch": run.cfg.model.arch,
        "img_size": run.cfg.model.img_size,
        "onnx_checker": "passed",
        "test_images": len(run.test_names()),
        "batches": batches,
        "speed": speed,
        "thresholds": {"max_probability_difference": MAX_PROBABILITY_DIFFERENCE,
                       "min_class_agreement": MIN_CLASS_AGREEMENT, "max_miou_difference": MAX_MIOU_DIFFERENCE},
        "versions": {"torch": torch.__version__, "onnxruntime": onnxruntime.__version__, "onnx": onnx.__version__},
    }


@contextlib.contextmanager
def torch_threads(threads: int):
    """torch's intra-op CPU threads set to ``threads`` inside, put back after."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def compare_on_test_set(run: TrainedRun, torch_backend, onnx_backend, batch_size: int) -> dict:
    """Both backends over the run's test set in batches of ``batch_size``: their largest probability difference,
    the share of pixels whose argmax agrees, and each one's test mIoU scored as
    :func:`~simseg.inference.own_test_set.score_test_set` scores (one pass runs both models, not one pass each)."""
    count, names = run.classes.num_classes, list(run.classes.names)
    confusions = {name: torch.zeros(count, count, dtype=torch.long) for name in ("torch", "onnx")}
    largest, agreeing, pixels = 0.0, 0, 0
    for images, masks in own_test_loader(run, batch_size):
        expected = torch_backend.probabilities(images).cpu()  # (B, C, S, S)
        found = onnx_backend.probabilities(images)  # (B, C, S, S)
        largest = max(largest, float((found - expected).abs().max()))
        labels = {"torch": expected.argmax(1), "onnx": found.argmax(1)}  # (B, S, S) each
        agreeing += int((labels["torch"] == labels["onnx"]).sum())
        pixels += labels["torch"].numel()
        for name, predicted in labels.items():
            confusions[name] += confusion_matrix(predicted, masks, count, IGNORE_INDEX)
    miou = {name: segmentation_metrics(confusion, names)["miou"] for name, confusion in confusions.items()}
    return {
        "batch_size": batch_size,
        "max_probability_difference": largest,
        "class_agreement": agreeing / pixels if pixels else None,
        "pixels": pixels,
        "miou_onnx": miou["onnx"],
        "miou_torch": miou["torch"],
        "miou_difference": difference(miou["onnx"], miou["torch"]),
    }


def cpu_speed(run: TrainedRun, torch_backend, onnx_backend, threads: int) -> dict:
    """Images per second of each backend on one batch of :data:`SPEED_BATCH` test images, median of
    :data:`TIMED_RUNS` timed runs after :data:`WARMUP_RUNS`; ONNX Runtime's session already has ``threads``
    intra-op threads, and torch is given as many by the caller (:func:`torch_threads`)."""
    images = next(iter(own_test_loader(run, SPEED_BATCH)))[0]
    images = images.repeat((SPEED_BATCH + len(images) - 1) // len(images), 1, 1, 1)[:SPEED_BATCH]  # a full batch
    speeds = {name: len(images) / median_seconds(backend.probabilities, images)
              for name, backend in (("torch", torch_backend), ("onnx", onnx_backend))}
    return {"device": "cpu", "threads": threads, "batch_size": len(images), "timed_runs": TIMED_RUNS,
            "torch_images_per_s": speeds["torch"], "onnx_images_per_s": speeds["onnx"],
            "onnx_speedup": speeds["onnx"] / speeds["torch"]}


def median_seconds(probabilities, images: torch.Tensor) -> float:
    for _ in range(WARMUP_RUNS):
        probabilities(images)
    times = []
    for _ in range(TIMED_RUNS):
        start = time.perf_counter()
        probabilities(images)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def difference(a: float | None, b: float | None) -> float | None:
    """a - b; 0 when both are None (no class defined in either), None when only one is."""
    if a is None or b is None:
        return 0.0 if a is b else None
    return a - b


def check_figures(report: dict) -> None:
    """Pass quietly, or one line naming the first figure of ``report`` beyond its threshold."""
    for figures in report["batches"]:
        at = f"at batch {figures['batch_size']}"
        largest, agreement = figures["max_probability_difference"], figures["class_agreement"]
        if not largest <= MAX_PROBABILITY_DIFFERENCE:  # written so that NaN fails too
            fail(f"largest probability difference {at} is {largest:.3g}, above {MAX_PROBABILITY_DIFFERENCE:g}")
        if agreement is None or not agreement >= MIN_CLASS_AGREEMENT:
            fail(f"argmax class agreement {at} is {agreement}, below {MIN_CLASS_AGREEMENT}")
        gap = figures["miou_difference"]
        if gap is None or not abs(gap) <= MAX_MIOU_DIFFERENCE:
            fail(f"test mIoU {at} is {figures['miou_onnx']} on ONNX vs {figures['miou_torch']} on PyTorch, a "
                 f"difference beyond {MAX_MIOU_DIFFERENCE:g}")


def fail(what: str) -> None:
    raise SimsegError(f"the ONNX export does not match its run: {what}; export_report.json has every figure")


def write_figures(path: str | Path, report: dict) -> None:
    atomic_write_json(path, report)
