"""What turns a batch of preprocessed images into class probabilities at the model's input size: a trained PyTorch
model on a device and precision, or an ONNX Runtime session of a file ``simseg export`` wrote.

Both take a float32 (B, 3, S, S) batch, normalised as the run's evaluation transform leaves it, and return float32
softmax probabilities (B, C, S, S) on :attr:`device`.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import numpy as np
import torch

from simseg.data.label_set import PETS, LabelSet
from simseg.errors import SimsegError
from simseg.training.tta import tta_probabilities

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
ONNX_FORMAT = "simseg-onnx/1"
ONNX_METADATA_KEY = "simseg"


def pick_device(name: str) -> torch.device:
    """``auto`` (CUDA when there is one), ``cpu`` or ``cuda``; asking for CUDA without one is one line."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SimsegError(f"--device {name}: this machine has no CUDA GPU that torch can use; give --device cpu")
    if name != "cpu" and not name.startswith("cuda"):
        raise SimsegError(f"--device {name}: choose auto, cpu or cuda")
    return torch.device(name)


class TorchBackend:
    """A PyTorch segmentation model (``model(images=...)["logits"]``) on ``device``, run under autocast in
    ``precision``; with ``tta`` = (scales, flip) the probabilities are averaged over those views."""

    def __init__(self, model: torch.nn.Module, device: torch.device, precision: str = "fp32",
                 tta: tuple[list[float], bool] | None = None):
        if precision not in PRECISIONS:
            raise SimsegError(f"--precision {precision}: choose one of {', '.join(PRECISIONS)}")
        self.model = model.to(device).eval()
        self.device, self.precision, self.tta = device, precision, tta

    @torch.inference_mode()
    def probabilities(self, images: torch.Tensor) -> torch.Tensor:
        images = images.to(self.device, non_blocking=True)
        autocast = (torch.autocast(self.device.type, dtype=PRECISIONS[self.precision])
                    if self.precision != "fp32" else contextlib.nullcontext())
        with autocast:
            if self.tta is not None:
                return tta_probabilities(self.model, images, *self.tta).float()
            return self.model(images=images)["logits"].float().softmax(1)


class OnnxBackend:
    """An ONNX file of ``simseg export``: its metadata (classes, palette, mean/std, input size, source weights) in
    :attr:`info`, its classes in :attr:`label_set`; ``threads`` sets ONNX Runtime's intra-op threads (None: its
    default)."""

    device = torch.device("cpu")
    precision = "fp32"

    def __init__(self, path: str | Path, threads: int | None = None):
        import onnxruntime as ort

        self.path = Path(path).expanduser()
        if not self.path.is_file():
            raise SimsegError(f"ONNX file {self.path} does not exist: give a file simseg export wrote")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises its own exception types for a damaged file
            raise SimsegError(f"{self.path} is not a readable ONNX model ({type(err).__name__}): export it again "
                              f"with simseg export") from None
        self.info = read_onnx_info(self.session, self.path)
        self.label_set = onnx_label_set(self.info, self.path)
        self.input_name = self.session.get_inputs()[0].name

    def probabilities(self, images: torch.Tensor) -> torch.Tensor:
        batch = np.ascontiguousarray(images.detach().to("cpu", torch.float32).numpy())
        return torch.from_numpy(self.session.run(None, {self.input_name: batch})[0])


def read_onnx_info(session, path: Path) -> dict:
    """The simseg metadata of an ONNX session's model, or one line saying the file is not a simseg export."""
    raw = session.get_modelmeta().custom_metadata_map.get(ONNX_METADATA_KEY)
    try:
        info = json.loads(raw) if raw else {}
    except json.JSONDecodeError:
        info = {}
    if info.get("format") != ONNX_FORMAT:
        raise SimsegError(f"{path} is an ONNX model without simseg's metadata (classes, mean/std, input size): give "
                          f"a file written by simseg export RUN_DIR --format onnx")
    return info


def label_set_metadata(classes: LabelSet) -> dict:
    """The classes as the ONNX metadata stores them: names, palette (RGB 0-255), values (class id -> the dataset's
    own mask value), title and ignore_index; :func:`onnx_label_set` reads them back."""
    return {"classes": list(classes.names), "palette": [list(c) for c in classes.colours],
            "values": list(classes.values), "title": classes.title, "ignore_index": classes.ignore_index}


def onnx_label_set(info: dict, path: Path | str = "the ONNX file") -> LabelSet:
    """The classes in an export's metadata. Files written before exports carried ``values`` (they had
    ``oxford_values``) came from pet-trimap runs, the only ones simseg trained then: :data:`PETS`."""
    if "values" not in info:
        return PETS
    try:
        return LabelSet(tuple(info["classes"]), tuple(map(tuple, info["palette"])), tuple(info["values"]),
                        str(info.get("title", "")), int(info.get("ignore_index", PETS.ignore_index)))
    except (KeyError, TypeError, ValueError, SimsegError) as err:
        raise SimsegError(f"{path} has damaged class metadata ({type(err).__name__}: {err}): export it again with "
                          f"simseg export") from None
