"""The handoff between stages: the encoder a stage exports and the next one starts from.

The export is ``encoder.safetensors``: encoder weights plus, in the file's metadata, the architecture that rebuilds
them, so :func:`load_encoder` needs nothing but the file. It lies in the run folder, or, for the encoder a pretraining
kept after an earlier epoch, in ``RUN/exports/epoch_NNN/`` (no config.yaml there). The starting stage records which
file it took, and its hash, in ``lineage.json`` (:func:`load_pretrained_encoder`).
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import torch

from simseg.errors import SimsegError
from simseg.files import sha256
from simseg.training.weight_files import read_weights, save_weights

EXPORT_FORMAT = "simseg-encoder/1"


def export_encoder(path: str | Path, encoder: torch.nn.Module, model_cfg, extra: dict[str, str] | None = None) -> None:
    """Write the encoder's weights with the architecture that rebuilds them (the :class:`ModelConfig` fields of
    ``model_cfg``: a stage's own model keys, such as segmentation's ``arch``, are not the encoder's)."""
    metadata = {"format": EXPORT_FORMAT, "model": json.dumps(encoder_fields(model_cfg)), **(extra or {})}
    save_weights(path, encoder.state_dict(), metadata)


def encoder_fields(model_cfg) -> dict:
    """The encoder's fields of a model config (or of its dict): those of :class:`ModelConfig`."""
    import dataclasses

    from simseg.config.loader import to_dict
    from simseg.config.sections import ModelConfig

    values = model_cfg if isinstance(model_cfg, dict) else to_dict(model_cfg)
    return {f.name: values[f.name] for f in dataclasses.fields(ModelConfig) if f.name in values}


def export_path(path: str | Path, filename: str = "encoder.safetensors") -> Path:
    """A run folder's ``filename``, or ``path`` itself when it is a file."""
    path = Path(path).expanduser()
    return path / filename if path.is_dir() else path


def exporting_run(folder: str | Path) -> tuple[Path, int | None]:
    """The run folder that wrote the export in ``folder``, and the epoch of an intermediate export:
    ``RUN/exports/epoch_NNN`` (no config.yaml of its own) -> ``(RUN, NNN)``; any other folder -> ``(folder, None)``."""
    folder = Path(folder)
    epoch = re.fullmatch(r"epoch_(\d+)", folder.name)
    if epoch and folder.parent.name == "exports" and not (folder / "config.yaml").is_file():
        return folder.parent.parent, int(epoch.group(1))
    return folder, None


def load_encoder(path: str | Path, expected=None, **model_overrides):
    """Build the encoder saved at ``path`` (a run folder or its ``encoder.safetensors``) and load its weights.

    ``expected`` is the :class:`ModelConfig` the caller will use; an export of another architecture is refused with
    the differing fields named, except ``img_size`` alone: the position embedding is then resampled (bicubic, the cls
    row kept) to ``expected``'s patch grid, and the encoder built at that size. ``model_overrides`` change
    non-architecture fields (e.g. ``drop_path_rate=0.1``). Returns ``(encoder, model_cfg)``.
    """
    from simseg.config.loader import build
    from simseg.config.sections import ModelConfig
    from simseg.models.vit import build_encoder

    file = export_path(path)
    tensors, metadata = read_weights(file)
    if metadata.get("format") != EXPORT_FORMAT or "model" not in metadata:
        raise SimsegError(f"{file} is not a simseg encoder export (no '{EXPORT_FORMAT}' metadata): "
                          f"use the encoder.safetensors a simseg stage wrote")
    saved = encoder_fields(json.loads(metadata["model"]))
    model_cfg = build(ModelConfig, {**saved, **model_overrides}, "model.")
    if expected is not None:
        mine, theirs = expected.architecture(), model_cfg.architecture()
        # img_size only sets the position embedding's grid, which is resampled below
        differing = [f"{k}: export {theirs[k]}, config {mine[k]}" for k in mine if mine[k] != theirs[k]
                     and k != "img_size"]
        if differing:
            raise SimsegError(f"{file} was trained with another architecture ({'; '.join(differing)}): "
                              f"set those model.* keys to the export's values or export a matching encoder")
    encoder = build_encoder(model_cfg)
    missing, unexpected = encoder.load_state_dict(tensors, strict=False)
    if missing or unexpected:
        raise SimsegError(f"{file} does not match its recorded architecture (missing {sorted(missing)[:3]}, "
                          f"unexpected {sorted(unexpected)[:3]}): the file is damaged; re-export it")
    if expected is not None and expected.img_size != model_cfg.img_size:
        model_cfg = dataclasses.replace(model_cfg, img_size=expected.img_size)
        encoder = resample_encoder(encoder, build_encoder(model_cfg))
    return encoder, model_cfg


@torch.no_grad()
def resample_encoder(encoder: torch.nn.Module, target: torch.nn.Module) -> torch.nn.Module:
    """``target`` (the same ViT built at another image size) holding ``encoder``'s weights, its position embedding
    (1, prefix + h*w, D) resampled bicubically (timm's) to ``target``'s patch grid; the prefix (cls) rows are kept."""
    from timm.layers import resample_abs_pos_embed

    state = encoder.state_dict()
    prefix = 0 if encoder.no_embed_class else encoder.num_prefix_tokens
    state["pos_embed"] = resample_abs_pos_embed(state["pos_embed"], new_size=list(target.patch_embed.grid_size),
                                                old_size=list(encoder.patch_embed.grid_size),
                                                num_prefix_tokens=prefix)
    target.load_state_dict(state)  # strict: only the position embedding's length changed
    return target


def load_encoder_weights(model: torch.nn.Module, encoder_state: dict[str, torch.Tensor], source: str) -> None:
    """Load an encoder's state dict into ``model.encoder`` and check, as MAE does, that exactly the model's
    ``head_keys()`` were left missing and nothing was unexpected: a silent partial load is impossible."""
    tensors = {f"encoder.{k}": v for k, v in encoder_state.items()}
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    if set(missing) != model.head_keys() or unexpected:
        wrong = sorted(set(missing) - model.head_keys())
        raise SimsegError(f"{source} does not fit the model's encoder (missing {wrong[:3]}, "
                          f"unexpected {sorted(unexpected)[:3]}): give an encoder.safetensors a simseg stage wrote")


def load_init(model: torch.nn.Module, init: str, model_cfg) -> dict:
    """Start ``model``'s encoder from ``init`` (``scratch``: leave it as built) and return the lineage record.

    Build the model, head included, before calling this: a pretrained model's head then equals a scratch model's of
    the same seed, and only the encoder differs."""
    return {"init": "scratch"} if init == "scratch" else load_pretrained_encoder(model, init, model_cfg)


def load_pretrained_encoder(model: torch.nn.Module, init: str | Path, model_cfg) -> dict:
    """Put the encoder exported at ``init`` (a run folder, its ``exports/epoch_NNN`` folder or an
    ``encoder.safetensors``) into ``model.encoder``, keeping ``model_cfg``'s dropout, and return the lineage record:
    which file, its hash, the stage and run config (and epoch) that produced it, and the position embedding's
    resampling when the export's ``img_size`` differs. The model's head is left as it was initialised."""
    file = export_path(init)
    dropout = {k: getattr(model_cfg, k) for k in ("drop_rate", "attn_drop_rate", "drop_path_rate")}
    encoder, _ = load_encoder(file, expected=model_cfg, **dropout)
    load_encoder_weights(model, encoder.state_dict(), str(file))
    _, metadata = read_weights(file, tensors=False)
    saved = json.loads(metadata["model"])
    lineage = {"init": str(init), "export": str(file.resolve()), "export_sha256": sha256(file),
               "export_stage": metadata.get("stage", "unknown"), "export_model": saved}
    if saved["img_size"] != model_cfg.img_size:
        lineage["pos_embed_resampled"] = {"from_grid": [saved["img_size"] // saved["patch_size"]] * 2,
                                          "to_grid": [model_cfg.img_size // model_cfg.patch_size] * 2}
    run_dir, epoch = exporting_run(file.resolve().parent)
    run_config = run_dir / "config.yaml"
    if run_config.is_file():  # the exporting run's resolved config: what produced these weights
        lineage.update(export_config=str(run_config.resolve()), export_config_sha256=sha256(run_config))
    if epoch is not None:
        lineage["export_epoch"] = epoch
    return lineage
