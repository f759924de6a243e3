"""``simseg predict``'s work: predict every input image with a :class:`Segmenter` and write its outputs under
``out``, named after the input (see :mod:`simseg.inference.inputs`):

- ``NAME.png``: the label map at the photo's size, a palette PNG (class ids, or Oxford trimap values);
- ``NAME_overlay.jpg`` (``overlay``): the prediction blended over the photo;
- ``NAME.npy`` (``probs``): float16 (C, H, W) probabilities;
- ``predictions.jsonl``: a first line naming the model and its SHA-256, then one line per image (size, class
  fractions, mean confidence, seconds), or its error.

Each file is written atomically. An image whose outputs are all there already is skipped (``overwrite`` redoes
it) and keeps its line from the last run's predictions.jsonl, as do the earlier runs' other images; an image that
cannot be read is one line on stderr and in predictions.jsonl, and the others go on. Decoding the next batch and
writing the last one's files run in threads beside the forward pass, so the model is rarely kept waiting.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import partial
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from simseg.errors import SimsegError, one_line
from simseg.files import atomic_write, atomic_write_text
from simseg.inference.inputs import InputImage
from simseg.inference.label_maps import blend, label_image
from simseg.inference.segmenter import Prediction, Segmenter, as_photo
from simseg.training.engine import print_above_bar, progress_bar

RECORDS = "predictions.jsonl"


@dataclass
class PredictOptions:
    overlay: bool = False
    probs: bool = False
    label_values: str = "classes"
    batch_size: int = 8
    overwrite: bool = False
    resolution: str = "original"
    progress: bool = True


@dataclass
class PredictSummary:
    out: Path
    predicted: int = 0
    skipped: int = 0
    failed: list[str] = field(default_factory=list)
    seconds: float = 0.0


def output_names(stem, options: PredictOptions) -> list[str]:
    names = [f"{stem}.png"]
    if options.overlay:
        names.append(f"{stem}_overlay.jpg")
    if options.probs:
        names.append(f"{stem}.npy")
    return names


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
    batches = [todo[i:i + options.batch_size] for i in range(0, len(todo), options.batch_size)]
    with ThreadPoolExecutor(1) as reader, ThreadPoolExecutor(1) as writer, \
            progress_bar(len(todo), "predict", options.progress, unit="img") as bar:
        pending: list[Future] = []
        upcoming = reader.submit(load_batch, segmenter, batches[0]) if batches else None
        try:
            for number in range(len(batches)):
                loaded = upcoming.result()
                upcoming = reader.submit(load_batch, segmenter, batches[number + 1]) \
                    if number + 1 < len(batches) else None
                pending.append(writer.submit(write_outputs, out, loaded, forward(segmenter, loaded, options), options,
                                           segmenter.palette))
                for done in [f for f in pending if f.done()]:
                    pending.remove(done)
                    report(done.result(), records, summary, bar)
            for done in pending:
                report(done.result(), records, summary, bar)
        finally:
            summary.seconds = time.perf_counter() - start
            order = {str(item.stem): i for i, item in enumerate(inputs)}
            lines = [header, *sorted(records.values(), key=lambda r: order.get(stem_of(r), len(order)))]
            atomic_write_text(out / RECORDS, "".join(json.dumps(line) + "\n" for line in lines))
    return summary


@dataclass
class LoadedBatch:
    items: list[InputImage]
    photos: list           # PIL images, None where the file could not be read
    errors: list[str | None]
    batch: torch.Tensor | None  # (B_ok, 3, S, S) of the readable ones
    seconds: list[float]


def load_batch(segmenter: Segmenter, items: list[InputImage]) -> LoadedBatch:
    photos, errors, tensors, seconds = [], [], [], []
    for item in items:
        began = time.perf_counter()
        try:
            photo = as_photo(item.path)
            tensors.append(segmenter.preprocess(photo))
            photos.append(photo)
            errors.append(None)
        except SimsegError as err:
            photos.append(None)
            errors.append(one_line(err))
        seconds.append(time.perf_counter() - began)
    return LoadedBatch(items, photos, errors, torch.stack(tensors) if tensors else None, seconds)


def forward(segmenter: Segmenter, loaded: LoadedBatch, options: PredictOptions) -> list[Prediction]:
    if loaded.batch is None:
        return []
    began = time.perf_counter()
    sizes = [p.size for p in loaded.photos if p is not None]
    found = segmenter.predict_batch(loaded.batch, sizes, options.probs, options.resolution)
    share = (time.perf_counter() - began) / len(found)
    for i, photo in enumerate(loaded.photos):
        if photo is not None:
            loaded.seconds[i] += share
    return found


def write_outputs(out: Path, loaded: LoadedBatch, predictions: list[Prediction], options: PredictOptions,
                  palette) -> list[dict]:
    """Write each readable image's files; the records (or errors) of the whole batch."""
    records, found = [], iter(predictions)
    for item, photo, error, seconds in zip(loaded.items, loaded.photos, loaded.errors, loaded.seconds):
        if error is not None:
            records.append({"input": str(item.path), "output": f"{item.stem}.png", "error": error})
            continue
        began = time.perf_counter()
        prediction = next(found)
        base = out / item.stem
        base.parent.mkdir(parents=True, exist_ok=True)
        labels = prediction.labels  # (H, W)
        written = label_image(labels, palette, options.label_values)
        # zlib level 1: a label map has few colours and long runs, so it compresses nearly as well, several times faster
        atomic_write(f"{base}.png", partial(written.save, format="PNG", compress_level=1), durable=False)
        if options.overlay:  # at input resolution the photo is shown resized to the labels
            under = photo if photo.size == labels.shape[::-1] else photo.resize(labels.shape[::-1])
            shown = blend(under, labels, palette)
            atomic_write(f"{base}_overlay.jpg", partial(shown.save, format="JPEG", quality=90), durable=False)
        if options.probs:
            probs = prediction.probabilities.astype(np.float16)  # (C, H, W)
            atomic_write(f"{base}.npy", partial(np.save, arr=probs), durable=False)
        records.append({"input": str(item.path), "output": f"{item.stem}.png", "width": photo.width,
                        "height": photo.height, "fractions": rounded(prediction.class_fractions()),
                        "mean_confidence": round(prediction.mean_confidence, 4),
                        "seconds": round(seconds + time.perf_counter() - began, 4)})
    return records


def report(records: list[dict], kept: dict, summary: PredictSummary, bar: tqdm) -> None:
    for record in records:
        kept[stem_of(record)] = record
        if "error" in record:
            summary.failed.append(record["input"])
            print_above_bar(f"simseg: skipped {record['input']}: {record['error']}")
        else:
            summary.predicted += 1
    bar.update(len(records))


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
    return record["output"].removesuffix(".png")


def rounded(fractions: dict[str, float]) -> dict[str, float]:
    return {name: round(value, 5) for name, value in fractions.items()}


def run_header(segmenter: Segmenter, options: PredictOptions, tta: bool) -> dict:
    """predictions.jsonl's first line."""
    return {"model": segmenter.source, "kind": "onnx" if segmenter.run is None else "run",
            "sha256": segmenter.sha256, "device": str(segmenter.backend.device),
            "precision": segmenter.backend.precision, "tta": tta, "resolution": options.resolution,
            "label_values": options.label_values, "classes": list(segmenter.classes),
            "palette": [list(c) for c in segmenter.palette],
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}
