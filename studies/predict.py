"""A trained run's predictions on its own real test pets, through ``simseg predict``, scored two ways, plus six
overlays and its ONNX export's report:

    python studies/predict.py RUN_DIR [--out ../simseg-predict-pets] [--figure docs/results/predict]

Wall time: about 2 minutes on the 2-core CPU (docs/results/predict.md; the run it reads is trained by the commands
on that page).

1. at the model's input size (``--resolution input``), against the masks as the run's evaluation resized them:
   this must give back the run's metrics.json (``plain_miou``, and ``miou`` with ``--tta`` when the run used TTA);
2. at each photo's original resolution against the original trimaps: the figure a user of ``simseg predict`` sees;
3. six test photos with the prediction and the ground truth over them (FIGURE/overlays.jpg);
4. ``simseg export`` of the run: the ONNX file, export_report.json and MODEL_CARD.md in OUT/export.
Figures go to OUT/figures.json and are printed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

HERE = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(HERE))

from simseg.cli import main as simseg  # noqa: E402
from simseg.data.label_set import PETS  # noqa: E402
from simseg.data.pets import CLASS_NAMES  # noqa: E402
from simseg.inference import own_test_set  # noqa: E402
from simseg.inference.label_maps import blend  # noqa: E402
from simseg.inference.trained_run import load_trained_run  # noqa: E402
from simseg.training.metrics import confusion_matrix, segmentation_metrics  # noqa: E402


def score(predictions: Path, names: list[str], truths: list[torch.Tensor]) -> dict:
    confusion = torch.zeros(3, 3, dtype=torch.long)
    for name, truth in zip(names, truths):
        labels = torch.from_numpy(np.array(Image.open(predictions / f"{name}.png"))).long()
        assert labels.shape == truth.shape, (name, labels.shape, truth.shape)
        confusion += confusion_matrix(labels, truth, 3)
    metrics = segmentation_metrics(confusion, CLASS_NAMES)
    return {"miou": metrics["miou"], "iou": metrics["iou"], "pixel_accuracy": metrics["pixel_accuracy"]}


def predict(run: Path, folder: Path, out: Path, *options: str) -> float:
    began = time.perf_counter()
    try:
        simseg(["predict", str(run), str(folder), "--out", str(out), "--quiet", *options])
    except SystemExit as exit_:
        if exit_.code:
            raise
    return time.perf_counter() - began


def overlay_figure(path: Path, photos: list[Image.Image], predicted: list[np.ndarray], truths: list[np.ndarray],
                   titles: list[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(photos), figsize=(2.2 * len(photos), 4.6))
    for column, (photo, labels, truth, title) in enumerate(zip(photos, predicted, truths, titles)):
        for row, (shown, label) in enumerate(((labels, "prediction"), (truth, "ground truth"))):
            axes[row, column].imshow(blend(photo, shown, PETS.colours))
            axes[row, column].set_axis_off()
            axes[row, column].set_title(f"{title}\n{label}" if row == 0 else label, fontsize=8)
    fig.suptitle("simseg predict on test pets at their original size (orange pet, white boundary)", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90, pil_kwargs={"quality": 85})  # photos: a JPEG is a fifth of a PNG
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run")
    parser.add_argument("--out", default=str(HERE.parent / "simseg-predict-pets"))
    parser.add_argument("--figure", default=None, help="folder for overlays.jpg (default OUT)")
    args = parser.parse_args()
    run, out = Path(args.run), Path(args.out)
    trained = load_trained_run(run)
    tta = trained.cfg.eval.tta
    source, indices = own_test_set.own_test_pairs(trained)
    names = trained.test_names()
    folder = out / "test_images"  # the run's test photos as files, as a user would have them
    folder.mkdir(parents=True, exist_ok=True)
    for index in indices:
        original = Path(source.image_files[index])
        if not (folder / original.name).exists():
            (folder / original.name).symlink_to(original.resolve())
    stems = [Path(source.image_files[i]).stem for i in indices]
    small_truth = [mask[0] for _, mask in own_test_set.own_test_loader(trained, batch_size=1)]  # as the run scored them
    full_truth = [torch.from_numpy(source.pair(i)[1]).long() for i in indices]
    figures = {"run": str(run), "test_images": len(names), "reported": {
        k: trained.metrics.get(k) for k in ("miou", "plain_miou", "iou", "tta")}}
    views = [("plain", [])] + ([("tta", ["--tta"])] if tta else [])
    for view, flags in views:
        seconds = predict(run, folder, out / f"input_{view}", "--resolution", "input", "--overwrite", *flags)
        figures[f"input_size_{view}"] = score(out / f"input_{view}", stems, small_truth)
        predict(run, folder, out / f"original_{view}", "--overwrite", *flags)
        figures[f"original_size_{view}"] = score(out / f"original_{view}", stems, full_truth)
        figures[f"seconds_{view}"] = seconds
        print(f"{view}: test mIoU at {trained.cfg.model.img_size} px {figures[f'input_size_{view}']['miou']:.4f} "
              f"(metrics.json: {trained.metrics['plain_miou' if view == 'plain' and tta else 'miou']:.4f}); "
              f"at the original resolution against the original trimaps "
              f"{figures[f'original_size_{view}']['miou']:.4f}")
    chosen = list(range(0, len(names), max(1, len(names) // 6)))[:6]
    overlay_figure(Path(args.figure or out) / "overlays.jpg", [source.pair(indices[i])[0] for i in chosen],
                   [np.array(Image.open(out / "original_plain" / f"{stems[i]}.png")) for i in chosen],
                   [full_truth[i].numpy().astype(np.uint8) for i in chosen], [stems[i] for i in chosen])
    try:
        simseg(["export", str(run), "--format", "onnx", "--out", str(out / "export" / "pets.onnx")])
    except SystemExit as exit_:
        figures["export_error"] = f"exit {exit_.code}"
    report = out / "export" / "export_report.json"
    if report.is_file():
        figures["export"] = json.loads(report.read_text())
    (out / "figures.json").write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps({k: v for k, v in figures.items() if k != "export"}, indent=2))


if __name__ == "__main__":
    main()
