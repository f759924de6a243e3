"""Weight files: safetensors of tensors plus string metadata, written atomically (see :mod:`simseg.files`) and read
back with one line saying why a file cannot be.

What the stages put in them: ``model.safetensors`` / ``best.safetensors`` (a whole model) and the encoder handoff
``encoder.safetensors`` (:mod:`simseg.training.handoff`).
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as safetensors_bytes

from simseg.errors import SimsegError
from simseg.files import atomic_write


def save_weights(path: str | Path, state_dict: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    """Atomically save tensors (contiguous CPU copies) as safetensors with string metadata."""
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state_dict.items()}
    payload = safetensors_bytes(tensors, metadata=metadata)
    atomic_write(path, lambda f: f.write(payload))


def read_weights(path: str | Path, tensors: bool = True) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata of a safetensors file (``tensors=False``: the metadata alone, the tensors left unread),
    or one line saying why it cannot be read."""
    path = Path(path)
    if not path.is_file():
        raise SimsegError(f"checkpoint {path} does not exist: give a run folder or its .safetensors file")
    try:
        with safe_open(str(path), framework="pt") as file:
            return ({k: file.get_tensor(k) for k in file.keys()} if tensors else {}), dict(file.metadata() or {})
    except (SafetensorError, OSError, ValueError) as err:
        raise SimsegError(f"checkpoint {path} is not a readable safetensors file ({err}): "
                          f"re-export it from its run") from None
