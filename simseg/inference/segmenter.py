"""The Python entry point to a trained segmentation model: ``from simseg import Segmenter``.

    segmenter = Segmenter.from_run("outputs/segment-1k")       # or Segmenter.load("model.onnx")
    prediction = segmenter.predict("photo.jpg")                # or a PIL image, an array, or a list of them
    prediction.labels         # uint8 (H, W) class ids at the photo's own size: indices into segmenter.classes
    prediction.probabilities  # float32 (C, H, W), summing to one over the classes
    segmenter.overlay("photo.jpg", prediction).save("overlay.jpg")

The classes (names, colours, the dataset's own mask values: :attr:`Segmenter.label_set`) are the run's
``classes.json``, or those an ONNX file's metadata carries.

Preprocessing is the run's evaluation transform (the whole photo resized to img_size x img_size, normalised with
the run's mean/std). The probabilities are resized back to the photo's size (bilinear) and the labels are their
argmax there, so label edges follow the probabilities rather than blocks of resized labels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from simseg.data.label_set import LabelSet
from simseg.data.sources import read_rgb, to_rgb
from simseg.data.transforms import eval_transform
from simseg.errors import SimsegError
from simseg.inference.backends import OnnxBackend, TorchBackend, pick_device
from simseg.inference.label_maps import blend
from simseg.inference.trained_run import TrainedRun, load_trained_run

RESOLUTIONS = ("original", "input")
PhotoLike = str | Path | Image.Image | np.ndarray


@dataclass
class Prediction:
    labels: np.ndarray
    """uint8 (H, W) class ids (indices into :attr:`Segmenter.classes`)."""
    probabilities: np.ndarray | None
    """float32 (C, H, W) softmax probabilities, or None when not asked for."""
    mean_confidence: float
    """The mean over pixels of the winning class's probability."""
    classes: tuple[str, ...]
    """The names of the class ids, from the segmenter that made the prediction."""

    def class_fractions(self) -> dict[str, float]:
        """Each class's share of the pixels, by name (every class, 0.0 for those not predicted)."""
        counts = np.bincount(self.labels.ravel(), minlength=len(self.classes))
        return {name: float(n) / self.labels.size for name, n in zip(self.classes, counts)}


class Segmenter:
    """A trained model with the preprocessing, resizing back and colouring that go with it. ``label_set``: the
    model's classes; :attr:`classes` are their names and :attr:`palette` their colours (RGB 0-255), by class id."""

    def __init__(self, backend, img_size: int, mean: Sequence[float], std: Sequence[float], source: str,
                 sha256: str, label_set: LabelSet, run: TrainedRun | None = None):
        self.backend, self.img_size, self.source, self.sha256 = backend, img_size, source, sha256
        self.mean, self.std = tuple(mean), tuple(std)
        self.label_set, self.run = label_set, run
        self.classes, self.palette = label_set.names, label_set.colours
        self.transform = eval_transform(img_size, self.mean, self.std, op="resize")

    @classmethod
    def from_run(cls, path: str | Path, device: str = "auto", precision: str = "fp32",
                 tta: bool = False) -> Segmenter:
        """The reported model of a finished ``simseg segment`` run folder. ``tta``: average the probabilities over
        the run's test-time views (``eval.tta_scales`` x flips)."""
        run = load_trained_run(path)
        backend = TorchBackend(run.model, pick_device(device), precision, run.tta_views() if tta else None)
        return cls(backend, run.cfg.model.img_size, run.cfg.aug.mean, run.cfg.aug.std, str(run.run_dir),
                   run.weights_sha256, run.classes, run=run)

    @classmethod
    def from_onnx(cls, path: str | Path, threads: int | None = None) -> Segmenter:
        """A file written by ``simseg export --format onnx``; it runs on ONNX Runtime's CPU provider."""
        from simseg.files import sha256

        backend = OnnxBackend(path, threads)
        info = backend.info
        return cls(backend, info["img_size"], info["mean"], info["std"], str(backend.path), sha256(backend.path),
                   backend.label_set)

    @classmethod
    def load(cls, path: str | Path, **options) -> Segmenter:
        """:meth:`from_onnx` for an ``.onnx`` file, else :meth:`from_run`."""
        if Path(path).suffix.lower() == ".onnx":
            if options.get("tta"):
                raise SimsegError(f"--tta needs the run folder: {path} takes only its fixed input size, so the "
                                  f"scales of test-time augmentation cannot be fed to it")
            return cls.from_onnx(path, options.get("threads"))
        options.pop("threads", None)
        return cls.from_run(path, **options)

    def preprocess(self, photo: Image.Image) -> torch.Tensor:
        """An RGB photo -> float32 (3, img_size, img_size), exactly the run's evaluation transform."""
        return self.transform(photo)

    def predict(self, images: PhotoLike | Sequence[PhotoLike], batch_size: int = 8, probabilities: bool = True,
                resolution: str = "original") -> Prediction | list[Prediction]:
        """Label maps (and probabilities) of one photo or a list of them (paths, PIL images or uint8 arrays)."""
        single = not isinstance(images, (list, tuple))
        photos = [as_photo(x) for x in ([images] if single else images)]
        found = []
        for start in range(0, len(photos), batch_size):
            chunk = photos[start:start + batch_size]
            batch = torch.stack([self.preprocess(p) for p in chunk])
            found += self.predict_batch(batch, [p.size for p in chunk], probabilities, resolution)
        return found[0] if single else found

    def predict_batch(self, batch: torch.Tensor, sizes: Sequence[tuple[int, int]], probabilities: bool = True,
                      resolution: str = "original") -> list[Prediction]:
        """Predictions for a preprocessed batch (B, 3, S, S) of photos whose (width, height) are ``sizes``."""
        if resolution not in RESOLUTIONS:
            raise SimsegError(f"resolution {resolution!r}: choose one of {', '.join(RESOLUTIONS)}")
        probs = self.backend.probabilities(batch)  # (B, C, S, S)
        found = []
        for i, (width, height) in enumerate(sizes):
            p = probs[i:i + 1]
            if resolution == "original" and p.shape[-2:] != (height, width):
                p = F.interpolate(p, size=(height, width), mode="bilinear", align_corners=False)
            confidence, labels = p[0].max(0)  # (H, W) each
            found.append(Prediction(labels.to(torch.uint8).cpu().numpy(), p[0].cpu().numpy() if probabilities else None,
                                    float(confidence.mean()), self.classes))
        return found

    def overlay(self, image: PhotoLike, prediction: Prediction | None = None, alpha: float = 0.5) -> Image.Image:
        """The photo with its predicted classes blended over it in their colours (class 0 left as it is)."""
        photo = as_photo(image)
        prediction = prediction if prediction is not None else self.predict(photo, probabilities=False)
        return blend(photo, prediction.labels, self.palette, alpha)

    def __repr__(self) -> str:
        return (f"Segmenter({self.source!r}, img_size={self.img_size}, device={self.backend.device}, "
                f"precision={self.backend.precision})")


def as_photo(image: PhotoLike) -> Image.Image:
    """A path (EXIF orientation applied), PIL image or uint8 array (H, W) / (H, W, 3|4) as an RGB PIL image."""
    if isinstance(image, (str, Path)):
        return read_rgb(Path(image).expanduser(), upright=True)
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim not in (2, 3):
            raise SimsegError(f"an image array must be uint8 (H, W) or (H, W, 3), not {image.dtype} {image.shape}")
        return to_rgb(Image.fromarray(image))
    if isinstance(image, Image.Image):
        return to_rgb(image)
    raise SimsegError(f"cannot predict on a {type(image).__name__}: give a path, a PIL image or a uint8 array")
