"""``simseg predict``'s work: predict every input image with a :class:`Segmenter` and write its outputs under
``out``, named after the input (see :mod:`simseg.inference.inputs`):

- ``NAME.png``: the label map at the photo's size, a palette PNG in the classes' colours (class ids, or with
  ``label_values="source"`` the dataset's own mask values; see :func:`~simseg.inference.label_maps.label_image`);
- ``NAME_overlay.jpg`` (``overlay``): the prediction blended over the photo;
- ``NAME.npy`` (``probs``): float16 (C, H, W) probabilities;
- ``predictions.jsonl``: a first line naming the model, its SHA-256 and its classes (names, palette, values), then
  one line per image (size, class fractions, mean confidence, seconds), or its error.

Each file is written atomically. An image whose outputs are all there already is skipped (``overwrite`` redoes
it) and keeps its line from the last run's predictions.jsonl, as do the earlier runs' other images; an image that
cannot be read is one line on stderr and in predictions.jsonl, and the others go on. Beside a GPU, decoding the next
batches and writing the last ones' files run image by image in a pool of threads (PIL's decoding and zlib release
the GIL), so the GPU is rarely kept waiting; on the CPU they take turns with the forward pass, which has every core.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import partial
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from simseg.data.label_set import PETS, LabelSet
from simseg.errors import SimsegError, one_line
from simseg.files import atomic_write, atomic_write_text
from simseg.inference.inputs import InputImage, expand_inputs
from simseg.inference.label_maps import LABEL_VALUES, blend, label_image
from simseg.inference.segmenter import Prediction, Segmenter, as_photo
from simseg.training.engine import print_above_bar, progress_bar

RECORDS = "predictions.jsonl"
READ_AHEAD = 2  # batches being read while one is predicted: enough to hide decoding, little memory


@dataclass
class PredictOptions:
    overlay: bool = False
    probs: bool = False
    label_values: str = "classes"
    """What a label map stores: ``classes`` (class ids) or ``source`` (the dataset's own mask values)."""
    batch_size: int = 8
    overwrite: bool = False
    resolution: str = "original"
    progress: bool = True
    workers: int | None = None
    """Threads that decode and write (0: none, in turn with the forward pass; None: :func:`default_workers`)."""


@dataclass
class PredictSummary:
    out: Path
    predicted: int = 0
    skipped: int = 0
    failed: list[str] = field(default_factory=list)
    seconds: float = 0.0


# What each output appends to its input's relative name: one table for writing them and for skipping what is there.
LABELS, OVERLAY, PROBS = ".png", "_overlay.jpg", ".npy"


def output_names(stem, options: PredictOptions) -> list[str]:
    return [f"{stem}{suffix}" for suffix, wanted in ((LABELS, True), (OVERLAY, options.overlay),
                                                     (PROBS, options.probs)) if wanted]


def default_workers(device: torch.device) -> int:
    """Threads that decode and write beside the forward pass. None on the CPU, whose cores the forward pass already
    uses (threads beside it slowed the whole down on 2 cores: docs/performance.md); beside a GPU, the cores but one,
    at most 8."""
    return 0 if device.type == "cpu" else max(1, min(8, (os.cpu_count() or 2) - 1))


class InlineExecutor:
    """The executor of ``workers=0``: each task runs when it is submitted, in the caller's thread."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        return None

    def submit(self, work, *args) -> Future:
        future = Future()
        try:
            future.set_result(work(*args))
        except BaseException as err:  # kept for .result(), as a thread pool would keep it
            future.set_exception(err)
        return future


def predict_files(segmenter: Segmenter, inputs: list[InputImage], out: Path, options: PredictOptions,
                  header: dict) -> PredictSummary:
    """Predict ``inputs`` into ``out``; ``header`` is predictions.jsonl's first line (the model and how it ran)."""
    out = prepare_out(Path(out))
    previous = read_records(out, header["sha256"], options.overwrite)
    todo = [item for item in inputs if options.overwrite
            or not all((out / name).is_file() for name in output_names(item.stem, options))]
    summary = PredictSummary(out, skipped=len(inputs) - len(todo))
    redone = {str(item.stem) for item in todo}
    records = {stem: record for stem, record in previous.items() if stem not in redone}  # earlier runs' too
    start = time.perf_counter()
    batches = deque(todo[i:i + options.batch_size] for i in range(0, len(todo), options.batch_size))
    workers = default_workers(segmenter.backend.device) if options.workers is None else options.workers
    with (ThreadPoolExecutor(workers) if workers else InlineExecutor()) as pool, \
            progress_bar(len(todo), "predict", options.progress, unit="img") as bar:
        reading: deque[list[Future]] = deque()  # per-image reads of the next batches, in order
        writing: list[Future] = []
        try:
            while batches or reading:
                while batches and len(reading) < READ_AHEAD:
                    reading.append([pool.submit(load_one, segmenter, item) for item in batches.popleft()])
                loaded = [future.result() for future in reading.popleft()]
                predictions = iter(forward(segmenter, loaded, options))
                writing += [pool.submit(write_one, out, one, next(predictions) if one.photo else None, options,
                                        segmenter.label_set) for one in loaded]
                writing = collect(writing, records, summary, bar, wait=False)
            collect(writing, records, summary, bar, wait=True)
        finally:
            summary.seconds = time.perf_counter() - start
            order = {str(item.stem): i for i, item in enumerate(inputs)}
            lines = [header, *sorted(records.values(), key=lambda r: order.get(stem_of(r), len(order)))]
            atomic_write_text(out / RECORDS, "".join(json.dumps(line) + "\n" for line in lines))
    return summary


@dataclass
class LoadedImage:
    item: InputImage
    photo: object | None  # the RGB PIL image, None when the file could not be read
    pixels: torch.Tensor | None  # (3, S, S) preprocessed
    error: str | None
    seconds: float


def load_one(segmenter: Segmenter, item: InputImage) -> LoadedImage:
    began = time.perf_counter()
    try:
        photo = as_photo(item.path)
        return LoadedImage(item, photo, segmenter.preprocess(photo), None, time.perf_counter() - began)
    except SimsegError as err:
        return LoadedImage(item, None, None, one_line(err), time.perf_counter() - began)


def forward(segmenter: Segmenter, loaded: list[LoadedImage], options: PredictOptions) -> list[Prediction]:
    """Predictions of the readable images of a batch; each image's seconds get its share of the forward pass."""
    readable = [one for one in loaded if one.photo is not None]
    if not readable:
        return []
    began = time.perf_counter()
    found = segmenter.predict_batch(torch.stack([one.pixels for one in readable]), [one.photo.size for one in readable],
                                    options.probs, options.resolution)
    share = (time.perf_counter() - began) / len(found)
    for one in readable:
        one.seconds += share
    return found


def write_one(out: Path, loaded: LoadedImage, prediction: Prediction | None, options: PredictOptions,
              classes: LabelSet) -> dict:
    """Write one image's files; its record (or its error)."""
    item, photo = loaded.item, loaded.photo
    if prediction is None:
        return {"input": str(item.path), "output": f"{item.stem}{LABELS}", "error": loaded.error}
    began = time.perf_counter()
    base = out / item.stem
    base.parent.mkdir(parents=True, exist_ok=True)
    labels = prediction.labels  # (H, W)
    written = label_image(labels, classes, options.label_values)
    # zlib level 1: a label map has few colours and long runs, so it compresses nearly as well, several times faster
    atomic_write(f"{base}{LABELS}", partial(written.save, format="PNG", compress_level=1), durable=False)
    if options.overlay:  # at input resolution the photo is shown resized to the labels
        under = photo if photo.size == labels.shape[::-1] else photo.resize(labels.shape[::-1])
        shown = blend(under, labels, classes.colours)
        atomic_write(f"{base}{OVERLAY}", partial(shown.save, format="JPEG", quality=90), durable=False)
    if options.probs:
        probs = prediction.probabilities.astype(np.float16)  # (C, H, W)
        atomic_write(f"{base}{PROBS}", partial(np.save, arr=probs), durable=False)
    return {"input": str(item.path), "output": f"{item.stem}{LABELS}", "width": photo.width, "height": photo.height,
            "fractions": rounded(prediction.class_fractions()), "mean_confidence": round(prediction.mean_confidence, 4),
            "seconds": round(loaded.seconds + time.perf_counter() - began, 4)}


def collect(writing: list[Future], kept: dict, summary: PredictSummary, bar: tqdm, wait: bool) -> list[Future]:
    """Take in the records of the finished writes (all of them when ``wait``); the writes still running."""
    running = []
    for future in writing:
        if wait or future.done():
            take_record(future.result(), kept, summary, bar)
        else:
            running.append(future)
    return running


def take_record(record: dict, kept: dict, summary: PredictSummary, bar: tqdm) -> None:
    """Count one written (or failed) image's record and keep it for predictions.jsonl."""
    kept[stem_of(record)] = record
    if "error" in record:
        summary.failed.append(record["input"])
        print_above_bar(f"simseg: skipped {record['input']}: {record['error']}")
    else:
        summary.predicted += 1
    bar.update(1)


def prepare_out(out: Path) -> Path:
    if out.exists() and not out.is_dir():
        raise SimsegError(f"--out {out} is a file: give a folder for the predictions")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise SimsegError(f"cannot make --out {out} ({err.strerror or err}): give a folder you can write") from None
    return out


def read_records(out: Path, sha256: str, overwrite: bool) -> dict[str, dict]:
    """The last run's records in ``out`` by output name; outputs of another model are refused unless overwritten."""
    path = out / RECORDS
    if not path.is_file():
        return {}
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if not lines:
        return {}
    if lines[0].get("sha256") != sha256 and not overwrite:
        raise SimsegError(f"{out} holds predictions of another model ({lines[0].get('model')}): give --overwrite to "
                          f"replace them, or another --out")
    return {stem_of(record): record for record in lines[1:] if "error" not in record}


def stem_of(record: dict) -> str:
    return record["output"].removesuffix(LABELS)


def rounded(fractions: dict[str, float]) -> dict[str, float]:
    return {name: round(value, 5) for name, value in fractions.items()}


def run_header(segmenter: Segmenter, options: PredictOptions, tta: bool) -> dict:
    """predictions.jsonl's first line; the classes under the keys the ONNX metadata gives them (``classes`` names,
    ``palette``, ``values``: class id -> the dataset's own mask value)."""
    classes = segmenter.label_set
    return {"model": segmenter.source, "kind": "onnx" if segmenter.run is None else "run",
            "sha256": segmenter.sha256, "device": str(segmenter.backend.device),
            "precision": segmenter.backend.precision, "tta": tta, "resolution": options.resolution,
            "label_values": options.label_values, "classes": list(classes.names),
            "palette": [list(c) for c in classes.colours], "values": list(classes.values), "title": classes.title,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def resolve_label_values(requested: str, classes: LabelSet) -> str:
    """``--label-values``: ``classes`` or ``source``; ``oxford``, its name when only pet trimaps were read, is taken
    for ``source`` on a pet-trimap model and refused in one line on any other."""
    if requested in LABEL_VALUES:
        return requested
    if requested != "oxford":
        raise SimsegError(f"--label-values {requested}: choose one of {', '.join(LABEL_VALUES)}")
    if (classes.names, classes.values) != (PETS.names, PETS.values):
        raise SimsegError(f"--label-values oxford writes Oxford-IIIT Pet trimap values, but this model's classes are "
                          f"{', '.join(classes.names)}: give --label-values source for the values its data's masks "
                          f"store ({', '.join(map(str, classes.values))})")
    return "source"


def predict_sources(model: str | Path, sources: list[str], out: str | Path, options: PredictOptions,
                    device: str = "auto", precision: str = "fp32", tta: bool = False, threads: int | None = None,
                    label_values: str = "classes") -> PredictSummary:
    """``simseg predict``: the label maps of every image ``sources`` name (files, folders, globs, lists) from
    ``model`` (a run folder or an .onnx file) into ``out``; ``label_values`` as asked (``oxford``: the old name of
    ``source``), resolved against the model's classes."""
    if options.batch_size < 1:
        raise SimsegError(f"--batch-size {options.batch_size}: give a positive number of images")
    if options.workers is not None and options.workers < 0:
        raise SimsegError(f"--workers {options.workers}: give 0 (decode and write in turn with the model) or more")
    inputs = expand_inputs(sources)
    segmenter = Segmenter.load(model, device=device, precision=precision, tta=tta, threads=threads)
    options = dataclasses.replace(options, label_values=resolve_label_values(label_values, segmenter.label_set))
    if label_values == "oxford":
        print("simseg: --label-values oxford is now called --label-values source", file=sys.stderr)
    return predict_files(segmenter, inputs, Path(out), options, run_header(segmenter, options, tta))
