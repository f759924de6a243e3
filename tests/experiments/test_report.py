"""simseg report: results parsing, summaries checked by hand, figures written, pictures copied, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from simseg.errors import SimsegError
from simseg.experiments.report.build import build_report
from simseg.experiments.report.figures import DPI, FIGSIZE
from simseg.experiments.report.gains import Gauge, intermediate_gains
from simseg.experiments.report.summary import init_order, summarise
from simseg.experiments.sweep.results import read_results, result_columns, write_results


def write_csv(path: Path, header: str, *lines: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([header, *lines]) + "\n")


def write_png(path: Path, value: int) -> bytes:
    """A tiny solid PNG (value picks the colour, so two files differ); returns its bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((6, 8, 3), value, dtype=np.uint8)).save(path)
    return path.read_bytes()


def full_row(init: str, subset: int, seed: int, miou: float, init_path: str = "scratch", **extra) -> dict:
    """A row as simseg sweep writes it (every column of result_columns())."""
    row = dict.fromkeys(result_columns())
    row.update(cell=f"{init}/subset-{subset}/seed-{seed}", init=init, init_path=init_path, intermediate=False,
               subset=subset, seed=seed, miou_plain=miou, scored_at="native", train_seconds=60.0 * subset / 250,
               images_per_s=100.0,
               run_dir=f"cells/{init}/subset-{subset}/seed-{seed}")
    return {**row, **extra}


def assert_png(path: Path) -> None:
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.size == (round(FIGSIZE[0] * DPI), round(FIGSIZE[1] * DPI))
    assert path.stat().st_size < 150_000


def test_hand_written_csv_with_missing_cells_and_columns(tmp_path):
    write_csv(tmp_path / "results.csv", "init,subset,seed,miou_plain",
              "scratch,250,0,0.40", "scratch,250,1,0.50", "scratch,500,0,0.55", "p45k,250,0,0.47")
    report = build_report(tmp_path)
    text = report.read_text()
    assert report == tmp_path / "report.md"
    assert "| scratch | 0.450 ± 0.071 (n=2) | 0.550 |" in text  # sample std of 0.40, 0.50 = 0.0707
    assert "| p45k | **0.470** | — |" in text  # best at 250 in bold; its 500 cell is missing
    assert "| init | 250 | 500 |" in text  # no pretraining axis column: no row says how an init was pretrained
    # gain over scratch on the seeds both ran (seed 0): 0.47 - 0.40; no per-image scores, so no interval
    assert "| p45k | +0.070 | no interval (cells from before per-image scores) | — | 250 | 1 |" in text
    assert "## Test mIoU, plain" in text and "| init | ΔmIoU, plain | 95% interval | verdict |" in text
    assert "Scored at the model input" not in text  # a hand-written table in today's columns does not say: native
    assert "No validation set: no arm was chosen (the test set never chooses); rerun the sweep with --val-size." \
        in text
    assert "Labels used: each cell's labelled training subset only (250, 500 images); no validation set." in text
    assert "picked by no score: the first pretrained init in the tables at its largest labelled subset" in text
    assert "gains.png" not in text and not (tmp_path / "gains.png").exists()  # no interval, no forest plot
    assert "ddof=1" in text
    assert "4 of 8 cells of the grid the rows span (no sweep.json) missing" in text
    assert "`p45k/subset-500/seed-0`" in text
    assert "hand-written results: no sweep.json" in text
    assert "mIoU vs training time: not available" in text and "Intermediate classification: not applicable" in text
    assert "![mIoU vs subset](miou_vs_subset.png)" in text
    assert_png(tmp_path / "miou_vs_subset.png")
    assert not (tmp_path / "intermediate_delta.png").exists() and not (tmp_path / "miou_vs_time.png").exists()
    assert "Example predictions: not available" in text
    assert "\n\n\n" not in text  # sections left out leave no gaps


def test_types_are_parsed_robustly(tmp_path):
    (tmp_path / "results.csv").write_text("\ufeffinit, subset,seed,miou_plain,intermediate,pretrain_images,"
                                          "train_seconds\na,1k,0,0.5,TRUE,45k,\nb,250,1,0.25,,,12.5\n")
    first, second = read_results(tmp_path)
    assert list(first) == list(result_columns())  # every column, typed, in the sweep's order
    assert (first["subset"], first["intermediate"], first["pretrain_images"], first["train_seconds"]) == \
        (1000, True, 45000, None)
    assert (second["intermediate"], second["pretrain_images"], second["train_seconds"], second["fwiou_plain"]) == \
        (False, None, 12.5, None)
    assert first["cell"] == "a/subset-1k/seed-0"


def test_intermediate_deltas_and_figure_from_jsonl(tmp_path):
    rows = [full_row("scratch", 250, 0, 0.125),
            full_row("base", 250, 0, 0.25, "/runs/base", pretrain_images=45000),
            full_row("base", 250, 1, 0.5, "/runs/base", pretrain_images=45000),
            full_row("base", 500, 0, 0.5, "/runs/base", pretrain_images=45000),
            full_row("base+cls", 250, 0, 0.5, "/runs/cls", pretrain_images=45000, intermediate=True, base_init="base"),
            full_row("base+cls", 250, 1, 0.75, "/runs/cls", pretrain_images=45000, intermediate=True, base_init="base"),
            full_row("base+cls", 500, 0, 0.375, "/runs/cls", pretrain_images=45000, intermediate=True,
                     base_init="base"),
            full_row("base+cls", 1000, 0, 0.875, "/runs/cls", pretrain_images=45000, intermediate=True,
                     base_init="base"),  # no base at 1000: no delta there
            full_row("orphan+cls", 250, 0, 0.5, "/runs/o", intermediate=True, base_init="gone"),
            full_row("small", 250, 0, 0.3, "/runs/small", pretrain_images=5000)]
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    parsed = read_results(tmp_path)
    assert parsed[0]["pretrain_images"] is None and parsed[4]["intermediate"] is True
    assert init_order(parsed) == ["scratch", "small", "base", "base+cls", "orphan+cls"]
    # dyadic values: the means and differences are exact in floating point
    assert [(g.arm, g.reference, g.subset, g.measured.gain) for g in intermediate_gains(parsed, Gauge(None))] == \
        [("base+cls", "base", 250, 0.625 - 0.375), ("base+cls", "base", 500, 0.375 - 0.5)]
    assert summarise(parsed)["base", 250] == (0.375, pytest.approx(0.25 / 2**0.5), 2)
    text = build_report(tmp_path).read_text()
    assert_png(tmp_path / "intermediate_delta.png")
    assert_png(tmp_path / "miou_vs_time.png")
    assert "![ΔmIoU of intermediate classification](intermediate_delta.png)" in text
    assert "| base+cls | 45k | **0.625 ± 0.177 (n=2)** |" in text


def test_sweep_json_missing_cells_and_copied_pictures(tmp_path):
    sweep_dir, init_dir = tmp_path / "sweep", tmp_path / "pretrain-45k"
    write_png(init_dir / "grids" / "epoch_002.png", 10)
    latest = write_png(init_dir / "grids" / "epoch_010.png", 200)
    command = "simseg sweep --subsets 250,500 --init scratch,p45k=pretrain-45k --seeds 0,1"
    (sweep_dir).mkdir()
    (sweep_dir / "sweep.json").write_text(json.dumps({
        "command": command, "commands": [command],
        "grid": {"subsets": [250, 500], "seeds": [0, 1], "inits": {"scratch": "scratch", "p45k": str(init_dir)},
                 "intermediate": {}},
        "segment_config": {"seed": 0, "data": {"source": "oxford-pets", "image_size": 96}}}))
    write_results(sweep_dir, [full_row("scratch", 250, 0, 0.4), full_row("scratch", 250, 1, 0.5),
                              full_row("scratch", 500, 0, 0.55), full_row("p45k", 250, 0, 0.6, str(init_dir)),
                              full_row("p45k", 250, 1, 0.7, str(init_dir))])
    first_seed = write_png(sweep_dir / "cells/p45k/subset-250/seed-0/examples.png", 50)
    write_png(sweep_dir / "cells/p45k/subset-250/seed-1/examples.png", 90)  # the better test mIoU: not a reason
    write_png(sweep_dir / "cells/scratch/subset-500/seed-0/examples.png", 130)
    text = build_report(sweep_dir).read_text()
    assert ("Grid incomplete: 3 of 8 cells of sweep.json's grid missing: `scratch/subset-500/seed-1`, "
            "`p45k/subset-500/seed-0`, `p45k/subset-500/seed-1`.") in text
    assert f"```bash\n{command}\n```" in text
    assert "```yaml\nseed: 0\ndata:\n  source: oxford-pets\n  image_size: 96\n```" in text
    assert (sweep_dir / "figures" / "recon_p45k.png").read_bytes() == latest
    assert "![reconstruction grid of p45k](figures/recon_p45k.png)" in text and "epoch 10" in text
    # no validation set: the first pretrained init at its largest subset, its first seed; no score picks it
    assert (sweep_dir / "figures" / "examples.png").read_bytes() == first_seed
    assert "Test images of seed 0 (the first seed with pictures; its test mIoU (plain view): 0.600)" in text
    assert "| scratch | 1.0 min, 100 img/s | 2.0 min, 100 img/s |" in text

    (sweep_dir / "cells/p45k/subset-250/seed-0/examples.png").unlink()  # falls back to the cell's other seed
    build_report(sweep_dir)
    assert (sweep_dir / "figures" / "examples.png").read_bytes() == write_png(tmp_path / "same.png", 90)


@pytest.mark.parametrize("name,header,line,column", [
    ("results.csv", "init,subset,seed", "scratch,250,0", "miou"),
    ("results.csv", "subset,seed,miou", "250,0,0.5", "init"),
    ("results.csv", "init,subset,seed,miou", "scratch,250,,0.5", "seed"),
    ("results.csv", "init,subset,seed,miou", "scratch,250,0,high", "miou"),
    ("results.jsonl", '{"init": "scratch", "seed": 0, "miou": 0.5}', "", "subset"),
])
def test_bad_results_name_the_column(tmp_path, name, header, line, column):
    write_csv(tmp_path / name, header, *([line] if line else []))
    with pytest.raises(SimsegError, match=f"'?{column}'?") as err:
        build_report(tmp_path)
    assert "\n" not in str(err.value)


def test_missing_sweep_or_results_says_what_to_run(tmp_path):
    with pytest.raises(SimsegError, match="does not exist"):
        build_report(tmp_path / "nowhere")
    with pytest.raises(SimsegError, match=r"no results\.csv or results\.jsonl.*simseg sweep .*--output-dir"):
        build_report(tmp_path)
    write_csv(tmp_path / "results.csv", "init,subset,seed,miou")
    with pytest.raises(SimsegError, match="no rows"):
        build_report(tmp_path)


def test_models_and_presets_get_cost_tables_axis_averages_per_class_figures_and_the_cost_plot(tmp_path):
    from simseg.experiments.report.gains import effect_gains

    sweep_dir = tmp_path / "sweep"
    cost = {"vit_linear": dict(parameters=2_585_472, encoder_parameters=2_486_400, gflops=0.358),
            "unet_resnet18": dict(parameters=14_328_499, encoder_parameters=11_176_512, gflops=2.708)}
    rows = []
    # mIoU = 0.30 + 0.10 (unet) + 0.05 (pretrained/imagenet) + 0.02 (heavy) + 0.01 * seed
    for arch, pretrained in (("vit_linear", "pretrain-all"), ("unet_resnet18", "imagenet")):
        for aug in ("light", "heavy"):
            for init in ("scratch", pretrained):
                for seed in (0, 1):
                    miou = 0.30 + 0.10 * (arch == "unet_resnet18") + 0.05 * (init != "scratch") \
                        + 0.02 * (aug == "heavy") + 0.01 * seed
                    path = "scratch" if init == "scratch" else "imagenet" if init == "imagenet" else "/runs/p"
                    rows.append(full_row(init, 250, seed, miou, path, arch=arch, aug=aug, iou_boundary_plain=0.2,
                                         boundary_iou_plain=0.25, precision_pet_plain=0.9, recall_pet_plain=0.8,
                                         iou_pet_plain=0.7, dice_pet_plain=0.82, inference_images_per_s=50.0,
                                         **cost[arch],
                                         cell=f"{arch}/{aug}/{init}/subset-250/seed-{seed}"))
    write_results(sweep_dir, rows)
    (sweep_dir / "sweep.json").write_text(json.dumps({"grid": {
        "subsets": [250], "seeds": [0, 1], "models": ["vit_linear", "unet_resnet18"], "aug": ["light", "heavy"],
        "inits": {"scratch": "scratch", "pretrain-all": "/runs/p", "imagenet": "imagenet"}, "intermediate": {}}}))
    typed = read_results(sweep_dir)
    effects = {(g.group, g.arm): g.measured for g in effect_gains(typed, Gauge(None))}
    heavy, unet = effects["augmentation preset (vs light)", "heavy"], effects["model (vs vit_linear)", "unet_resnet18"]
    assert (heavy.gain, heavy.settings, heavy.seeds) == (pytest.approx(0.02), 4, 2)  # 2 models x 2 inits
    assert (unet.gain, unet.settings) == (pytest.approx(0.10), 2)  # only scratch runs with both models
    assert heavy.interval is None and heavy.note == "no interval (cells from before per-image scores)"
    text = build_report(sweep_dir).read_text()
    assert "Grid complete: all 16 cells" in text  # vit x imagenet and unet x pretrain-all never expected
    assert "2 models, 2 augmentation presets, 3 inits" in text
    # Boundary IoU (the contour measure) beside mIoU; the IoU of the class named boundary in the per-class table
    assert "| model / init | labelled | test mIoU, plain | Boundary IoU, plain | parameters (encoder) |" in text
    assert "| unet_resnet18/heavy/imagenet | 250 | 0.475 ± 0.007 (n=2) | 0.250 | 14.33M (11.18M) | 2.708 | 50 |" \
        in text
    assert "| unet_resnet18/light/scratch | 250 | boundary | 0.200 | — | — | — |" in text
    assert "not the IoU of the class named boundary" in text
    assert "| pretraining (init vs scratch) | imagenet | +0.050 | 2 |" in text
    assert "| augmentation preset (vs light) | heavy | +0.020 | 4 |" in text
    assert "| unet_resnet18/light/scratch | 250 | pet | 0.700 | 0.820 | 0.900 | 0.800 |" in text
    # gains are over the scratch init of the same model and preset, not one scratch for all
    assert "| vit_linear/heavy/pretrain-all | +0.050 |" in text
    with Image.open(sweep_dir / "miou_vs_cost.png") as image:
        assert image.format == "PNG"
    assert "![mIoU vs cost](miou_vs_cost.png)" in text
