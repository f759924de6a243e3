"""One training epoch and one evaluation pass, shared by every stage.

Task models take keyword inputs and return a dict with ``"loss"`` (and, for evaluation, ``"loss_per_image"``), so
these loops never branch on the task; ``make_inputs(batch)`` turns a loader batch into the model's keywords.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from accelerate import Accelerator, DataLoaderConfiguration
from accelerate.utils import ProjectConfiguration, TorchDynamoPlugin
from tqdm.auto import tqdm

from simseg.errors import SimsegError
from simseg.training.optim import set_lr
from simseg.training.sam import perturb, restore

LOG_EVERY = 10  # steps between loss read-outs: each one is a device sync
COMPILE_BACKEND = "inductor"  # what train.compile=true compiles the training step with


def make_accelerator(cfg, **kwargs) -> Accelerator:
    """The Accelerator of a stage run: mixed precision and trackers from the config, tracker logs in
    ``output_dir/logs``, and a sampler whose shuffle is seeded by (seed, epoch), so a resumed epoch sees the batches
    an uninterrupted one would. ``kwargs`` go to ``Accelerator`` (e.g. ``kwargs_handlers``).

    With ``train.compile`` the prepared model is compiled with static shapes (every training batch is full, every
    mask hides the same number of patches) and inductor keeps its kernels in :func:`compile_cache_dir`, so a later
    run of the same model and batch size starts from them."""
    check_trackers_installed(cfg.log.trackers)
    if cfg.train.compile:  # read by inductor at its first compile, not at import
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(compile_cache_dir(cfg))
    return Accelerator(
        mixed_precision=cfg.train.mixed_precision,
        dynamo_plugin=TorchDynamoPlugin(backend=COMPILE_BACKEND if cfg.train.compile else "no", dynamic=False),
        log_with=cfg.log.trackers or None,
        project_config=ProjectConfiguration(project_dir=cfg.output_dir, logging_dir=str(Path(cfg.output_dir) / "logs")),
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=cfg.seed),
        **kwargs,
    )


def compile_cache_dir(cfg) -> Path:
    """Where inductor keeps the compiled kernels of a ``train.compile`` run: ``train.compile_cache_dir``, else
    ``$TORCHINDUCTOR_CACHE_DIR`` when set, else ``simseg/inductor`` in the user's cache folder
    (``$XDG_CACHE_HOME``, by default ``~/.cache``), which outlives the temporary folder torch would choose."""
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    if cfg.train.compile_cache_dir:
        return Path(cfg.train.compile_cache_dir).expanduser().absolute()
    # Importing torch._dynamo sets the variable to torch's temporary default: only another value is the user's.
    given = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    if given and Path(given).absolute() != Path(default_cache_dir()).absolute():
        return Path(given).absolute()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "simseg" / "inductor"


def train_one_epoch(model, loader, optimizer, accelerator, *, epoch: int, step: int, lr_at: Callable[[int], float],
                    make_inputs: Callable, grad_clip: float, progress: bool = True, ema=None,
                    ema_every: int = 1, sam: tuple[float, int, bool] | None = None) -> tuple[dict, int]:
    """Train for one pass over ``loader``; returns ({loss, lr, images, seconds, images_per_s, loader_wait}, next
    step). ``loader_wait``: the share of the epoch spent waiting for the loader's next batch (near 0 when loading
    keeps up; on a GPU, time the device still had queued work hides part of a wait).

    ``ema``: a ``timm.utils.ModelEmaV3`` of the unwrapped model, updated after every ``ema_every``-th optimiser
    step (counted over the whole run, so resuming keeps the rhythm). ``sam``: (rho, interval, adaptive) to take
    every ``interval``-th step at the SAM-perturbed weights (:mod:`simseg.training.sam`); other steps are plain.

    A non-finite loss stops the run naming its step: every step's loss is checked on the device, without a sync,
    and the finding is read with the running loss every :data:`LOG_EVERY` steps and at the end, so the run stops
    within that many steps. No state is saved mid-epoch, so what a resume finds never saw the non-finite step."""
    model.train()
    device = accelerator.device
    loss_sum, batches, images = torch.zeros((), device=device), 0, 0
    first_bad = torch.full((), -1, dtype=torch.long, device=device)  # first step whose loss was not finite
    bad_loss = torch.zeros((), device=device)
    start = time.perf_counter()
    waited, asked = 0.0, start
    with progress_bar(len(loader), f"epoch {epoch}", progress and accelerator.is_main_process) as bar:
        for batch in loader:
            waited += time.perf_counter() - asked  # since the previous step ended: time blocked on the loader
            lr = lr_at(step)
            set_lr(optimizer, lr)
            inputs = make_inputs(batch)
            with out_of_memory_is_one_line(f"in epoch {epoch} at step {step}", len(next(iter(inputs.values())))):
                loss = model(**inputs)["loss"]
                accelerator.backward(loss)
                if sam is not None and step % sam[1] == 0:
                    params = [p for p in model.parameters() if p.requires_grad]
                    moves = perturb(params, sam[0], sam[2])
                    optimizer.zero_grad(set_to_none=True)
                    accelerator.backward(model(**inputs)["loss"])  # the gradient at w + e
                    restore(params, moves)
                if grad_clip > 0:
                    accelerator.clip_grad_norm_(model.parameters(), grad_clip)
                optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if ema is not None and (step + 1) % ema_every == 0:
                ema.update(accelerator.unwrap_model(model, keep_torch_compile=False), step=step + 1)
            loss = loss.detach().float()
            newly_bad = (first_bad < 0) & ~torch.isfinite(loss)
            first_bad, bad_loss = torch.where(newly_bad, step, first_bad), torch.where(newly_bad, loss, bad_loss)
            loss_sum += loss
            batches += 1
            step += 1
            images += len(next(iter(inputs.values()))) * accelerator.num_processes
            if batches % LOG_EVERY == 0 or batches == len(loader):
                mean_loss = loss_sum.item() / batches  # a device sync, with the non-finite check's result
                if int(first_bad) >= 0:
                    raise SimsegError(f"training loss became {bad_loss.item()} in epoch {epoch} at step "
                                      f"{int(first_bad)}: lower train.lr or use train.mixed_precision=no; "
                                      f"resume=true restarts from the last epoch")
                speed = images / (time.perf_counter() - start)
                bar.set_postfix(loss=f"{mean_loss:.4f}", img_s=f"{speed:.0f}", refresh=False)  # mininterval decides
            bar.update(1)
            asked = time.perf_counter()
    seconds = time.perf_counter() - start
    mean_loss = accelerator.reduce(loss_sum, reduction="mean").item() / max(batches, 1)
    return {"loss": mean_loss, "lr": lr_at(step - 1), "images": images, "seconds": seconds,
            "images_per_s": images / seconds, "loader_wait": waited / seconds}, step


@contextlib.contextmanager
def progress_bar(total: int, desc: str, enabled: bool, unit: str = "it"):
    """A tqdm bar on stderr during which every message starts on a line of its own and stays. On a terminal the bar
    is redrawn in place and cleared when it closes; warnings are written above it. In a log file it is redrawn every
    30 s and its last state is kept, ended by a newline; warnings get lines of their own. An error or Ctrl-C raised
    inside closes the bar first, so the one-line message printed after it stands alone."""
    terminal = sys.stderr.isatty()
    bar = tqdm(total=total, desc=desc, unit=unit, leave=not terminal, dynamic_ncols=True, disable=not enabled,
               mininterval=0.5 if terminal else 30.0)
    shown = warnings.showwarning

    def write_above(message, category, filename, lineno, file=None, line=None):
        print_above_bar(warnings.formatwarning(message, category, filename, lineno, line).rstrip("\n"))

    warnings.showwarning = write_above
    try:
        yield bar
    finally:
        warnings.showwarning = shown
        bar.close()


def print_above_bar(text: str) -> None:
    """A message on stderr on a line of its own while a :func:`progress_bar` is shown."""
    if sys.stderr.isatty():
        tqdm.write(text, file=sys.stderr)  # clears the bar, writes, draws the bar again below
    else:  # a log file keeps the bar's line: end it first
        sys.stderr.write(f"\n{text}\n")


@contextlib.contextmanager
def out_of_memory_is_one_line(where: str, batch_size: int):
    """A CUDA out-of-memory error inside becomes one line naming the batch size to lower. The stage's last complete
    state is untouched (it is saved only between epochs), so ``resume=true`` with a smaller batch continues."""
    try:
        yield
    except torch.cuda.OutOfMemoryError:
        raise SimsegError(f"the GPU ran out of memory {where} with {batch_size} images per process: lower "
                          f"train.batch_size (e.g. train.batch_size={max(batch_size // 2, 1)}) and rerun with "
                          f"resume=true to continue from the last complete epoch") from None


def epoch_record(epoch: int, step: int, stats: dict, **scores: float) -> dict:
    """An epoch's metrics.jsonl line from :func:`train_one_epoch`'s stats, plus the stage's own ``scores``."""
    return {"epoch": epoch, "step": step, "train_loss": stats["loss"], **scores, "lr": stats["lr"],
            **{key: stats[key] for key in ("images_per_s", "seconds", "loader_wait")}}


def speed_summary(stats: dict) -> str:
    """An epoch's speed for its log line: images/s and the share of the epoch spent waiting for data."""
    return f"{stats['images_per_s']:.0f} images/s, waited for data {stats['loader_wait']:.0%} of the time"


@torch.no_grad()
@torch.compiler.set_stance("force_eager")
def evaluate(model, loader, accelerator, make_inputs: Callable) -> float:
    """Mean of the per-image losses over the whole loader (every process's share, padding removed).

    Evaluation runs eagerly, a compiled ``model`` too: under ``train.compile`` the one compiled graph is the
    training step's, which no_grad, a short last batch or another layout would otherwise each compile again."""
    model.eval()
    losses = []
    for batch in loader:
        inputs = make_inputs(batch)
        with out_of_memory_is_one_line("while evaluating", len(next(iter(inputs.values())))):
            out = model(**inputs)
        losses.append(accelerator.gather_for_metrics(out["loss_per_image"].float()))
    return torch.cat(losses).mean().item()


@torch.no_grad()
@torch.compiler.set_stance("force_eager")  # as in evaluate: the compiled graph stays the training step's alone
def evaluate_confusion(model, loader, accelerator, num_classes: int, tta=None, *,
                       boundary: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Confusion matrix (C_target, C_pred) over every pixel of ``loader``'s (images, masks) batches.

    ``model`` returns ``{"logits": (B, C, H, W)}``; it may be an unprepared module (an EMA copy), hence the explicit
    autocast. Gathered over processes with the sampler's repeated padding dropped, so each image counts once.
    ``tta``: (scales, flip) to predict from the mean probabilities of those views
    (:func:`simseg.training.tta.tta_probabilities`); None = one plain view. ``boundary``: also count the Boundary
    IoU's band intersections and unions (:func:`simseg.training.boundary.boundary_counts`, (2, C)) of the same
    predictions, and return ``(confusion, boundary_counts)``.
    """
    from simseg.data.label_set import IGNORE_INDEX
    from simseg.training.boundary import boundary_counts
    from simseg.training.metrics import confusion_matrix
    from simseg.training.tta import tta_probabilities

    model.eval()
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.long, device=accelerator.device)
    bands = torch.zeros(2, num_classes, dtype=torch.long, device=accelerator.device)
    for images, masks in loader:
        with accelerator.autocast(), out_of_memory_is_one_line("while evaluating", len(images)):
            scores = model(images=images)["logits"] if tta is None else tta_probabilities(model, images, *tta)
            pred = scores.argmax(1)  # (B, H, W)
        pred, masks = accelerator.gather_for_metrics((pred, masks))
        confusion += confusion_matrix(pred, masks, num_classes, IGNORE_INDEX)  # unlabelled pixels count nowhere
        if boundary:
            bands += boundary_counts(pred, masks, num_classes, IGNORE_INDEX)
    return (confusion, bands) if boundary else confusion


def reset_accelerate_state() -> None:
    """Each stage builds its own Accelerator (mixed precision may differ per stage) but Accelerate keeps one state
    per process: clear it between stages, keeping the process group (the partial state) for multi-GPU chains."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state()


def peak_memory_mib(device: torch.device) -> float | None:
    """This process's peak memory so far, MiB: CUDA memory allocated on a GPU, resident set size on the CPU (over
    the process's life, so runs sharing a process report the largest). None where the OS does not say."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB on Linux


def epoch_seed(seed: int, epoch: int, process_index: int = 0) -> int:
    """The seed of one epoch on one process: a run resumed at ``epoch`` draws what an uninterrupted run draws."""
    return (seed * 1_000_003 + epoch * 7_919 + process_index * 104_729) % (2**63)


def check_trackers_installed(trackers: list[str]) -> None:
    """Accelerate only warns about a tracker whose package is missing; a user who asked for one wants to know."""
    import importlib.util

    packages = {"tensorboard": "tensorboard", "wandb": "wandb", "comet_ml": "comet_ml", "mlflow": "mlflow",
                "aim": "aim", "clearml": "clearml", "dvclive": "dvclive"}
    for tracker in trackers:
        package = packages.get(tracker, tracker)
        if importlib.util.find_spec(package) is None:
            raise SimsegError(f"log.trackers=[{tracker}] needs the '{package}' package: pip install {package}")
