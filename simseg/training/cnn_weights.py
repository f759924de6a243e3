"""Where a CNN model's encoder weights come from: ``init=scratch``, ``imagenet`` or a local weights file.

``imagenet`` asks segmentation_models_pytorch for its encoder's ImageNet weights (from the Hugging Face hub, cached
after the first download); a machine without a network gets one line saying how to use a local file instead. A
local file is a ResNet state dict in torchvision's or timm's key names (``conv1.weight``, ``layer1.0.bn1.bias``,
...; the classifier ``fc.*`` is dropped), as ``.pth``/``.pt`` or ``.safetensors``. A simseg ViT export is refused:
its weights have nothing to put into a ResNet.

The weights are copied into the encoder of a model built without weights, so the decoder's initialisation does not
depend on the init (as for the ViT: :func:`simseg.training.handoff.load_init`).
"""

from __future__ import annotations

from pathlib import Path

import torch

from simseg.errors import SimsegError
from simseg.files import sha256
from simseg.training.handoff import EXPORT_FORMAT

CLASSIFIER_PREFIXES = ("fc.",)  # ImageNet classifier layers of a ResNet file: no place in a segmentation encoder


def load_cnn_init(model: torch.nn.Module, init: str, arch: str) -> dict:
    """Put ``init``'s weights into ``model.encoder`` and return the lineage record (what came from where)."""
    if init == "scratch":
        return {"init": "scratch"}
    if init == "imagenet":
        state = imagenet_encoder_state(model.encoder_name, arch)
        load_encoder_state(model, state, f"the {model.encoder_name} ImageNet weights")
        return {"init": "imagenet", "weights": f"segmentation_models_pytorch {model.encoder_name} imagenet"}
    path = Path(init).expanduser()
    state = read_state_dict(path, arch)
    load_encoder_state(model, state, str(path))
    return {"init": init, "weights": str(path.resolve()), "weights_sha256": sha256(path)}


def imagenet_encoder_state(encoder_name: str, arch: str) -> dict[str, torch.Tensor]:
    """The ImageNet weights smp has for ``encoder_name``, downloaded (or read from its cache)."""
    from segmentation_models_pytorch.encoders import get_encoder

    try:
        return get_encoder(encoder_name, weights="imagenet").state_dict()
    except (OSError, ValueError, RuntimeError) as err:  # the hub's offline errors are OSErrors
        text = str(err).strip()
        reason = text.splitlines()[0].split(". ")[0] if text else type(err).__name__
        raise SimsegError(f"init=imagenet: the {encoder_name} ImageNet weights for {arch} could not be fetched "
                          f"({reason}); without a network, download them elsewhere (e.g. torchvision's "
                          f"resnet18-f37072fd.pth) and pass init=/path/to/that/file") from None


def read_state_dict(path: Path, arch: str) -> dict[str, torch.Tensor]:
    """A ResNet state dict from a ``.safetensors`` or torch file, or one line saying why it is not one."""
    if not path.is_file():
        raise SimsegError(f"init={path} does not exist: give init=scratch, init=imagenet or the path of a "
                          f"{arch} encoder weights file (.pth or .safetensors)")
    if path.suffix == ".safetensors":
        from simseg.training.weight_files import read_weights

        tensors, metadata = read_weights(path)
        if metadata.get("format") == EXPORT_FORMAT:
            raise SimsegError(f"init={path} is a simseg ViT encoder export; {arch} has a CNN encoder: give it "
                              f"init=scratch, init=imagenet or a ResNet weights file, or use a ViT model.arch")
        return tensors
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle, zip and format errors have no common base class
        raise SimsegError(f"init={path} is not a readable torch weights file ({type(err).__name__}): give a "
                          f".pth/.safetensors state dict of the encoder") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]  # a training checkpoint that wraps the weights
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise SimsegError(f"init={path} holds no state dict of tensors: save the encoder's state_dict()")
    return state


def load_encoder_state(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load ``state`` (encoder keys, maybe prefixed ``encoder.``) into ``model.encoder``, all of its keys or none."""
    state = {k.removeprefix("encoder."): v for k, v in state.items() if not k.startswith(CLASSIFIER_PREFIXES)}
    own = model.encoder.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    misshapen = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or misshapen:
        raise SimsegError(f"{source} does not fit the {model.encoder_name} encoder (missing {missing[:3]}, "
                          f"unexpected {unexpected[:3]}, other shapes {misshapen[:3]}): give weights of that "
                          f"encoder in torchvision's or timm's key names")
    model.encoder.load_state_dict(state)
