"""What ``simseg export`` and ``simseg card`` make of a finished segmentation run: the ONNX file verified against
PyTorch on the run's own test images (``export_report.json``), and the model card beside it."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from simseg.errors import SimsegError
from simseg.inference.export_check import check_figures, verify_export, write_figures
from simseg.inference.model_card import evaluate_for_card, model_card, write_model_card
from simseg.inference.onnx_export import export_onnx
from simseg.inference.trained_run import load_trained_run

REPORT_NAME = "export_report.json"
CARD_NAME = "MODEL_CARD.md"


class Release(NamedTuple):
    onnx: Path
    report: Path
    card: Path


def export_release(run_dir: str | Path, out: str | Path, threads: int | None = None) -> Release:
    """Export ``run_dir`` to ``out`` (.onnx), verify it (the figures in ``export_report.json`` beside it; a failed
    check is an error after both files are written, so the evidence stays) and write ``MODEL_CARD.md`` beside it,
    its test figures scored afresh with and without test-time augmentation."""
    out = Path(out).expanduser()
    if out.is_dir():
        raise SimsegError(f"--out {out} is a folder: give the .onnx file to write, e.g. {out / 'model.onnx'}")
    run = load_trained_run(run_dir)
    export_onnx(run, out)
    try:
        figures = verify_export(run, out, **({"threads": threads} if threads else {}))
    except SimsegError as err:  # e.g. the run's data moved: the file is there, but nothing vouches for it yet
        raise SimsegError(f"wrote {out} but could not verify it against the run's test images: {err}") from None
    release = Release(out, out.parent / REPORT_NAME, out.parent / CARD_NAME)
    write_figures(release.report, figures)
    write_model_card(release.card, model_card(run, evaluate_for_card(run), figures))
    check_figures(figures)
    return release


def write_run_card(run_dir: str | Path, out: str | Path | None = None, evaluate: bool = False) -> Path:
    """``MODEL_CARD.md`` of a finished run (default ``RUN_DIR/MODEL_CARD.md``); ``evaluate`` scores the test set
    again, with and without test-time augmentation, for the per-class table (it needs the run's data)."""
    run = load_trained_run(run_dir)
    path = Path(out) if out else run.run_dir / CARD_NAME
    write_model_card(path, model_card(run, evaluation=evaluate_for_card(run) if evaluate else None))
    return path
