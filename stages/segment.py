"""Stage 3: fine-tune a segmentation model (``model.arch``: the study's ViT + linear head by default, a ViT with a
conv decoder, or a CNN baseline) on labelled Oxford-IIIT Pet trimaps; test on a fixed test set.

    accelerate launch stages/segment.py -c configs/segment.yaml data.source=data/oxford-iiit-pet data.subset=1k \\
        init=outputs/pretrain-45k output_dir=outputs/segment-1k-pretrained
    python stages/segment.py data.subset=250 train.epochs=5     # from scratch on synthetic data, one process
    simseg segment ...                                           # the same, from the installed CLI

Classes: those of the data (``source.label_set``; on Oxford-IIIT Pet 0 background, 1 pet, 2 boundary), written to
the run folder as classes.json, from which every later reader takes them.

Writes into ``output_dir``: config.yaml, classes.json (names, colours, mask values, each class's share of every
split's pixels), lineage.json (where the encoder's weights came from), test_images.txt /
train_images.txt / val_images.txt (the split, one item name per line), metrics.jsonl (per epoch: train loss, and
every ``eval.every`` epochs the validation mIoU, with ``eval.test_curve`` the test mIoU too), metrics.json (final
test figures from one confusion matrix over every test pixel, plus the model's cost: parameters, GFLOPs, inference
and training images/s, seconds), confusion.json (that matrix), test_scores.npz (each test image's intersection and
union per class: :mod:`simseg.training.image_scores`), examples.png (rows image | ground truth | prediction for
the first ``log.examples`` test images, in the classes' colours), encoder.safetensors (the export; ViT models only),
model.safetensors (encoder + head), best.safetensors (with a validation split) and state/ (for ``resume=true``).

Where the test figures are scored: metrics.json's top-level figures and confusion.json score each test image at
its mask's own size (``scored_at: native``: the probabilities resized to the mask's size, then argmax, as
``simseg predict`` and :class:`~simseg.inference.segmenter.Segmenter` label a photo); metrics.json's ``scores``
holds every view at both sizes (native, and input: the mask resized with nearest to the model's input) and
test_scores.npz the per-image counts of both (:mod:`simseg.training.final_scoring`). The per-epoch validation (and
``eval.test_curve``'s test) mIoU of metrics.jsonl are scored at the model's input size, cheap enough for every
evaluated epoch; the validation mIoU among them chooses the reported epoch.

The test set is scored once, after training, and nothing is chosen on it: with ``data.val_size`` > 0 the reported
weights are those of the epoch with the best validation mIoU (among evaluated epochs), otherwise those of the last
epoch. With ``train.ema`` (or ``train.ema_half_life``) the EMA weights are evaluated, reported and exported instead
of the raw ones.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch
from accelerate import DistributedDataParallelKwargs
from timm.utils import ModelEmaV3

from simseg.config.segment import SegmentConfig
from simseg.data.image_cache import CacheSpec, cache_side
from simseg.data.label_set import LabelSet, write_run_label_set
from simseg.data.mask_survey import survey_masks
from simseg.data.pair_sources import open_segmentation_pairs
from simseg.data.splits import segmentation_splits
from simseg.data.synthetic_pairs import SYNTHETIC_MODES
from simseg.data.transforms import denormalize
from simseg.errors import SimsegError
from simseg.experiments.stage_entry import run_main, stage_config
from simseg.files import atomic_write_json
from simseg.models.registry import model_for_config
from simseg.models.segmentation_mixing import mix_segmentation_batch
from simseg.training.cnn_weights import load_cnn_init
from simseg.training.data_path import DataPath
from simseg.training.engine import epoch_record, evaluate_confusion, speed_summary, train_one_epoch
from simseg.training.final_scoring import FinalScores, ScoringItems, evaluate_test_set
from simseg.training.handoff import load_init
from simseg.training.image_scores import SCORES_FILE, write_test_scores
from simseg.training.metrics import segmentation_metrics, time_to_target
from simseg.training.optim import build_adamw, schedule_for
from simseg.training.plots import colour_masks, save_image_grid
from simseg.training.rundir import check_or_save_splits, read_metrics
from simseg.training.stage_steps import (
    begin_or_resume,
    end_epoch,
    epochs,
    evaluation_due,
    init_name,
    labelled_metrics,
    start_run,
    write_labelled_exports,
)
from simseg.training.tracker_images import log_tracker_image
from simseg.training.weight_files import read_weights, save_weights


def main(cfg: SegmentConfig) -> Path:
    # A frozen encoder gets no gradients, which DDP must be told to expect.
    accelerator, run_dir = start_run(cfg, kwargs_handlers=[
        DistributedDataParallelKwargs(find_unused_parameters=cfg.train.freeze_encoder_epochs > 0)])

    # --- data: a test set fixed by data.test_seed (or given), nested stratified training subsets, validation ------
    test_size, subset, val_size = cfg.data.sizes()
    if cfg.data.source in SYNTHETIC_MODES and subset is None:
        raise SimsegError(f"data.source={cfg.data.source} needs data.subset: the number of training images to draw")
    source = open_segmentation_pairs(cfg.data)
    classes = source.label_set
    for note in source.notes:
        accelerator.print(note)
    # Every mask is read and counted once before training (a bad file is named now, not in epoch 7); data without
    # breeds is stratified by each image's main class, which needs every mask counted before the split.
    cache_root = cfg.data.cache_dir or run_dir / "data_cache"
    with accelerator.main_process_first():
        survey = (survey_masks(source, range(len(source)), cache_root, cfg.log.progress, accelerator.print)
                  if source.groups is None else None)
        groups = source.groups or survey.dominant_groups(range(len(source)))
        splits = segmentation_splits(len(source), test_size, subset, cfg.seed, groups, val_size, source.name,
                                     test_seed=cfg.data.test_seed, given=source.given_split)
        used = np.concatenate([splits["train"], splits["test"], splits["val"]])
        survey = survey or survey_masks(source, used, cache_root, cfg.log.progress, accelerator.print)
    check_or_save_splits(run_dir, {k: [source.names[i] for i in v] for k, v in splits.items()},
                         write=accelerator.is_main_process)
    shown = {k: splits[k] for k in ("train", "test", "val") if len(splits[k])}  # the training subset first
    table, warnings = survey.class_table(classes, shown)
    accelerator.print("\n".join([f"classes of {source.name}:", *table, *(f"warning: {w}" for w in warnings)]))
    if accelerator.is_main_process:
        write_run_label_set(run_dir, classes, {k: survey.shares(v) for k, v in shown.items()})
    img = cfg.model.img_size
    data = DataPath(cfg, run_dir, accelerator, CacheSpec(cache_side(img), img, "resize", masks=True), len(used))
    cache = data.cache(source, used)
    train = data.training(source, splits["train"], cache, targets="masks")
    test_loader = data.evaluation(source, splits["test"], cache, "masks", "resize")
    test_items = ScoringItems(test_loader.dataset, source, splits["test"])  # with each mask at its own size
    val_loader = data.evaluation(source, splits["val"], cache, "masks", "resize") if val_size else None
    test_size, skipped = len(splits["test"]), source.skipped
    given = " (the split the data gives)" if source.given_split else ""
    accelerator.print(f"segmenting {len(splits['train']):,} training images of {source.name}, testing on "
                      f"{test_size:,}{given}" + (f", validating on {val_size:,}" if val_size else "")
                      + (f" ({skipped:,} unpaired files skipped)" if skipped else "") + f"; {train.describe()}")

    # --- model and optimiser ------------------------------------------------------------------------------------
    model, lineage = build_model(cfg, classes.num_classes)
    optimizer = build_adamw(model, cfg.train.lr, cfg.train.weight_decay, cfg.train.layer_decay)
    model, optimizer = accelerator.prepare(model, optimizer)
    unwrapped = accelerator.unwrap_model(model, keep_torch_compile=False)  # no DDP, no torch.compile wrapper
    decay = cfg.train.ema_decay()
    ema = ModelEmaV3(unwrapped, decay=decay) if decay else None
    if ema is not None:
        accelerator.register_for_checkpointing(ema)  # the average is training state: resume continues it
    evaluated = ema.module if ema is not None else model  # what is scored, reported and exported
    lr_at = schedule_for(cfg.train, len(train.loader))
    start_epoch, step = begin_or_resume(accelerator, run_dir, cfg, "segment", lineage, data.resolved())

    def make_inputs(batch) -> dict:  # MixUp/CutMix turn the masks into per-pixel soft targets
        images, masks = train(batch)  # (B, 3, img, img), (B, img, img)
        if cfg.mixup.enabled:
            mix = cfg.mixup
            images, masks = mix_segmentation_batch(images, masks, classes.num_classes, mix.alpha, mix.cutmix_alpha,
                                                   mix.prob, mix.switch_prob)
        return {"images": images, "mask": masks}

    # --- training loop ------------------------------------------------------------------------------------------
    start = time.perf_counter()
    for epoch in epochs(accelerator, cfg, start_epoch, train):
        unwrapped.freeze_encoder = epoch < cfg.train.freeze_encoder_epochs
        stats, step = train_one_epoch(model, train.loader, optimizer, accelerator, epoch=epoch, step=step,
                                      lr_at=lr_at, make_inputs=make_inputs, grad_clip=cfg.train.grad_clip,
                                      progress=cfg.log.progress, ema=ema, ema_every=cfg.train.ema_interval,
                                      sam=cfg.train.sam())
        record = epoch_record(epoch, step, stats)
        if evaluation_due(cfg, epoch):
            if cfg.eval.test_curve:
                score(evaluated, test_loader, accelerator, record, "test_miou", classes)
            if val_size:
                keep_if_best(evaluated, val_loader, accelerator, record, run_dir, epoch, classes)
        scores = "".join(f", {k[:-5]} mIoU {record[k]:.4f}" for k in ("test_miou", "val_miou") if k in record)
        end_epoch(accelerator, run_dir, record,
                  f"epoch {epoch}: train loss {stats['loss']:.4f}{scores}, {speed_summary(stats)}")

    # --- final test evaluation of the reported weights, pictures and exports ---------------------------------------
    final_evaluation(accelerator.unwrap_model(evaluated, keep_torch_compile=False), cfg, classes, run_dir, accelerator,
                     test_items, [source.names[i] for i in splits["test"]], data,
                     dict(train=len(splits["train"]), test=test_size, val=val_size, skipped=skipped))
    accelerator.print(f"done in {time.perf_counter() - start:.0f}s: {run_dir}")
    accelerator.end_training()
    return run_dir


def build_model(cfg: SegmentConfig, num_classes: int) -> tuple[torch.nn.Module, dict]:
    """The ``model.arch`` model, its encoder from scratch or from ``init``, and the lineage record saying which."""
    model = model_for_config(cfg.model, num_classes, cfg.loss)
    if cfg.model.family == "cnn":
        return model, load_cnn_init(model, cfg.init, cfg.model.arch)
    return model, load_init(model, cfg.init, cfg.model)


def score(model, loader, accelerator, record: dict, key: str, classes: LabelSet) -> None:
    """``record[key]``: the mIoU of ``model`` on ``loader``, at the model's input size (an epoch's score)."""
    confusion = evaluate_confusion(model, loader, accelerator, classes.num_classes)
    record[key] = segmentation_metrics(confusion, classes.names)["miou"]


def keep_if_best(model, val_loader, accelerator, record: dict, run_dir: Path, epoch: int, classes: LabelSet) -> None:
    """Score the validation split; weights that beat every earlier epoch's go to best.safetensors."""
    score(model, val_loader, accelerator, record, "val_miou", classes)
    earlier = [r["val_miou"] for r in read_metrics(run_dir) if r.get("val_miou") is not None]
    if accelerator.is_main_process and record["val_miou"] > max(earlier, default=-1.0):
        save_weights(run_dir / "best.safetensors",
                     accelerator.unwrap_model(model, keep_torch_compile=False).state_dict(),
                     {"stage": "segment", "epoch": str(epoch)})


def final_evaluation(model, cfg: SegmentConfig, classes: LabelSet, run_dir: Path, accelerator, test_items: ScoringItems,
                     test_names: list[str], data: DataPath, counts: dict) -> None:
    """Score the reported weights (the best validation epoch's, else the last) on the test set in one pass
    (:func:`~simseg.training.final_scoring.evaluate_test_set`: the plain view, and the TTA view when asked, each at
    the masks' own size and at the model's input size), and write test_scores.npz, confusion.json, metrics.json,
    examples.png and the exports. ``test_names``: the test items' names in ``test_images.txt`` order.

    metrics.json's top-level figures are those of the reported view (TTA when ``eval.tta``, else plain) at the masks'
    own size (``scored_at: native``): every figure of :func:`segmentation_metrics` plus ``boundary_iou`` and
    ``boundary_iou_per_class`` (:mod:`simseg.training.boundary`); with TTA the plain view's ``plain_miou`` and
    ``plain_boundary_iou`` (native too) stand beside them. ``scores[at][view]`` holds the figures of every view at
    both sizes (``native``, ``input``; ``tta`` with TTA only), each without the confusion matrix, and
    ``test_scores`` names the per-image counts' file."""
    history = read_metrics(run_dir)
    reported_epoch, best_val = history[-1]["epoch"], None
    if counts["val"]:
        accelerator.wait_for_everyone()
        weights, meta = read_weights(run_dir / "best.safetensors")
        model.load_state_dict(weights)
        reported_epoch = int(meta["epoch"])
        best_val = max(r["val_miou"] for r in history if r.get("val_miou") is not None)
    tta = cfg.eval.tta_views()
    scored = evaluate_test_set(model, test_items, accelerator, classes.num_classes, tta, cfg.train.batch_size,
                               data.workers)
    view = "tta" if tta is not None else "plain"  # the reported view
    metrics = scored.figures(view, "native", classes.names)
    if tta is not None:  # the reported figures are the TTA ones; the plain view's stay beside them
        plain = scored.figures("plain", "native", classes.names)
        metrics.update(plain_miou=plain["miou"], plain_boundary_iou=plain["boundary_iou"])
    if not accelerator.is_main_process:
        return
    write_test_scores(run_dir, test_names, list(classes.names), scored.counts)
    atomic_write_json(run_dir / "confusion.json", {"classes": list(classes.names), "rows": "target",
                                                   "columns": "prediction", "scored_at": "native", "view": view,
                                                   "matrix": metrics.pop("confusion")})
    atomic_write_json(run_dir / "metrics.json", {
        **metrics, "scored_at": "native", "scores": all_scores(scored, classes), "test_scores": SCORES_FILE,
        "reported_epoch": reported_epoch,
        "selected_on": "val_miou" if counts["val"] else "last epoch", "best_val_miou": best_val, "loss": cfg.loss,
        "val_images": counts["val"], "skipped_unpaired": counts["skipped"], "arch": cfg.model.arch,
        "aug": cfg.aug.preset, "recipe": cfg.recipe, "pipeline": data.pipeline,
        "tta": None if tta is None else {"scales": tta[0], "flip": tta[1]}, "time_to_target": time_to_target(history),
        **labelled_metrics(cfg, model, history, counts["train"], counts["test"], accelerator.device),
    })
    examples = write_examples(model, test_items.inputs, cfg, classes, run_dir / "examples.png",
                              f"{init_name(cfg.init)}: test mIoU {metrics['miou']:.3f} "
                              f"({counts['train']:,} training images)")
    log_tracker_image(accelerator, "examples", examples, step=reported_epoch)  # the epoch whose weights it shows
    write_labelled_exports(run_dir, model, cfg, "segment", arch=cfg.model.arch, num_classes=str(classes.num_classes))
    boundary = "" if metrics["boundary_iou"] is None else f", Boundary IoU {metrics['boundary_iou']:.4f}"
    accelerator.print(f"test mIoU {metrics['miou']:.4f} at the masks' own size (epoch {reported_epoch}; "
                      f"{scored.figures(view, 'input', classes.names)['miou']:.4f} at the model's input size), pixel "
                      f"accuracy {metrics['pixel_accuracy']:.4f}{boundary}")


def all_scores(scored: FinalScores, classes: LabelSet) -> dict:
    """metrics.json's ``scores``: ``{at: {view: figures}}`` for at in (native, input) and each view scored, the
    figures of :meth:`FinalScores.figures` without the confusion matrix (confusion.json holds the reported one)."""
    return {at: {view: {k: v for k, v in scored.figures(view, at, classes.names).items() if k != "confusion"}
                 for view in scored.views} for at in ("native", "input")}


@torch.no_grad()
def write_examples(model: torch.nn.Module, test_set, cfg: SegmentConfig, classes: LabelSet, path: Path,
                   title: str) -> bytes:
    """examples.png: image | ground truth | prediction for the first ``log.examples`` test images, each class in
    its colour (ignored pixels grey); returns the PNG's bytes."""
    pairs = [test_set[i] for i in range(min(cfg.log.examples, len(test_set)))]
    device = next(model.parameters()).device
    images = torch.stack([p[0] for p in pairs]).to(device)  # (N, 3, H, W)
    truth = torch.stack([p[1] for p in pairs])  # (N, H, W)
    model.eval()
    pred = model(images=images)["logits"].argmax(1).cpu()  # (N, H, W)
    columns = [denormalize(images.cpu(), cfg.aug.mean, cfg.aug.std), colour_masks(truth, classes.colours),
               colour_masks(pred, classes.colours)]
    return save_image_grid(path, columns, ("image", "ground truth", "prediction"), title)


if __name__ == "__main__":
    run_main(lambda argv: main(stage_config(SegmentConfig, argv, "segment")), sys.argv[1:])
