"""A finished segmentation run as one self-contained ONNX file: normalised images in, class probabilities out.

The graph takes ``images``, float32 (B, 3, S, S) normalised with the run's mean/std at the run's img_size S, and
returns ``probabilities``, float32 (B, C, S, S) softmax over the classes; B is free, S is fixed. The file carries in
its metadata (key :data:`ONNX_METADATA_KEY`) everything :class:`~simseg.inference.backends.OnnxBackend` needs to
preprocess and colour (the run's classes with their palette and mask values, mean/std, img_size) and where the
weights came from.

The graph is captured with ``torch.export`` and translated by ``torch.onnx``. Handing ``torch.onnx.export`` an
ExportedProgram rather than the module matters: given the module, when export refuses the dynamic batch (non-strict
tracing turns ``len(tensor)``, as in the ``vit_linear_upsample`` head, into a constant) it applies export's suggested
fix, batch = the example's, and exports again without a word. ``torch.export`` itself refuses to fix a dimension
marked dynamic, so capture tries the quick non-strict tracing first, then strict tracing (TorchDynamo), which keeps
``len(tensor)`` symbolic; the written graph is checked to keep its batch axis free all the same.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from simseg.errors import SimsegError, one_line
from simseg.files import atomic_write
from simseg.inference.backends import ONNX_FORMAT, ONNX_METADATA_KEY, label_set_metadata
from simseg.inference.trained_run import TrainedRun

try:
    import onnx
    import onnxscript  # noqa: F401  (torch.onnx's exporter translates the graph with it)
except ImportError as missing:
    raise SimsegError(f"ONNX export needs the {missing.name} package: pip install 'simseg[export]'") from None

INPUT_NAME = "images"
OUTPUT_NAME = "probabilities"
BATCH_AXIS = "batch"
EXAMPLE_BATCH = 2  # torch.export specialises a size-1 dimension, so the example batch that traces the graph is 2
PROTOBUF_LIMIT = 2**31  # a protobuf message cannot be larger: beyond it the weights would need an external file


class ProbabilityModel(nn.Module):
    """A segmentation model as the exported graph: images (B, 3, S, S) -> softmax probabilities (B, C, S, S)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images=images)["logits"].float().softmax(1)


def export_onnx(run: TrainedRun, out: Path, opset: int = 18) -> None:
    """Write ``run``'s reported model to ``out`` as one ONNX file (weights inside, batch axis dynamic) with simseg's
    metadata; checked with ``onnx.checker`` before it is written, and written atomically."""
    out = Path(out).expanduser()
    model = onnx_model(run, opset)
    model.metadata_props.add(key=ONNX_METADATA_KEY, value=json.dumps(onnx_metadata(run)))
    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as err:
        raise SimsegError(f"the ONNX graph of {run.run_dir} fails onnx.checker ({one_line(err)}): report it as a bug "
                          f"with this line") from None
    if model.ByteSize() >= PROTOBUF_LIMIT:
        raise SimsegError(f"the {run.cfg.model.arch} model of {run.run_dir} is over 2 GB, too large for a "
                          f"self-contained ONNX file: export a smaller model")
    payload = model.SerializeToString()
    atomic_write(out, lambda file: file.write(payload))


def onnx_model(run: TrainedRun, opset: int = 18) -> onnx.ModelProto:
    """``run``'s model wrapped in :class:`ProbabilityModel` as an ONNX ModelProto (no metadata yet), batch axis
    named :data:`BATCH_AXIS`."""
    wrapper = ProbabilityModel(run.model).eval()
    size = run.cfg.model.img_size
    example = torch.randn(EXAMPLE_BATCH, 3, size, size, generator=torch.Generator().manual_seed(0))
    program = exported_program(wrapper, example, run)
    # verbose=False keeps the exporter from printing its progress lines.
    onnx_program = torch.onnx.export(program, (example,), None, input_names=[INPUT_NAME],
                                     output_names=[OUTPUT_NAME], opset_version=opset, verbose=False, dynamo=True)
    model = onnx_program.model_proto
    name_batch_axis(model)
    return model


def exported_program(wrapper: nn.Module, example: torch.Tensor, run: TrainedRun) -> torch.export.ExportedProgram:
    """The wrapper's graph with a dynamic batch: non-strict tracing, else strict (both refuse to fix the batch)."""
    shapes = {INPUT_NAME: {0: torch.export.Dim(BATCH_AXIS, min=1)}}
    errors = []
    for strict in (False, True):
        try:
            with torch.no_grad():
                return torch.export.export(wrapper, (example,), dynamic_shapes=shapes, strict=strict)
        except Exception as err:  # torch.export raises many types (UserError, Unsupported, ...); the next try decides
            errors.append(f"{'strict' if strict else 'non-strict'}: {type(err).__name__}: {one_line(err)}")
    raise SimsegError(f"torch.export cannot capture the {run.cfg.model.arch} model of {run.run_dir} with a free "
                      f"batch size ({'; '.join(errors)}): report it as a bug with this line")


def name_batch_axis(model: onnx.ModelProto) -> None:
    """Rename the input's symbolic batch dimension (torch.export calls it ``s0``, ``s6``, ...) to
    :data:`BATCH_AXIS` wherever the graph's typed values use it; one line if the input or output has a fixed
    batch."""
    graph = model.graph
    ends = [*graph.input, *graph.output]
    symbol = graph.input[0].type.tensor_type.shape.dim[0].dim_param
    if not symbol or any(v.type.tensor_type.shape.dim[0].dim_param != symbol for v in ends):
        fixed = ", ".join(f"{v.name} {[d.dim_value or d.dim_param for d in v.type.tensor_type.shape.dim]}"
                          for v in ends)
        raise SimsegError(f"the exported ONNX graph has no shared free batch axis ({fixed}): report it as a bug")
    for value in [*ends, *graph.value_info]:
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param == symbol:
                dim.dim_param = BATCH_AXIS


def onnx_metadata(run: TrainedRun) -> dict:
    """The JSON stored under :data:`ONNX_METADATA_KEY`: what a reader needs to feed the graph and name its output,
    and the weights it came from."""
    return {
        "format": ONNX_FORMAT,
        "input": INPUT_NAME,
        "output": OUTPUT_NAME,
        "img_size": run.cfg.model.img_size,
        "mean": [float(m) for m in run.cfg.aug.mean],
        "std": [float(s) for s in run.cfg.aug.std],
        **label_set_metadata(run.classes),  # classes, palette, values (class id -> mask value), title, ignore_index
        "arch": run.cfg.model.arch,
        "weights_sha256": run.weights_sha256,
        "run": str(run.run_dir),
        "torch": torch.__version__,
    }

