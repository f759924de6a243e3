"""How a stage reads its items, in one place for every stage: the data path ``data.pipeline`` chooses, the image
cache it needs, and the prepared loaders of training and evaluation batches.

    per_image  each item decoded and transformed in the loader (:mod:`simseg.data.loaders`, any source)
    batched    the items decoded once into an image cache (:mod:`simseg.data.cache_build`; a cache given as the
               source is used as it is), training batches gathered by index and augmented as one batch on the
               device (:mod:`simseg.data.cached_batches`), evaluation batches read from the cache's evaluation
               pixels (or, for a cache without them, per image)
"""

from __future__ import annotations

from typing import Literal

import torch
from torch.utils.data import DataLoader

from simseg.data.batch_augment import BatchAugment
from simseg.data.cache_build import ensure_cache
from simseg.data.cached_batches import CachedBatches, CachedEvalSet, IndexDataset, choose_pipeline, keep_batch
from simseg.data.image_cache import CacheSpec, ImageCache
from simseg.data.loaders import TransformedItems
from simseg.data.transforms import eval_transform, train_transform
from simseg.errors import SimsegError
from simseg.training.rundir import recorded_choices

Targets = Literal["masks", "labels"] | None


class TrainingBatches:
    """The prepared training loader, and ``batches(batch)``: one of its batches as (images (B, 3, img, img)
    normalised, targets (masks (B, img, img) or labels (B,), or None)) on the device."""

    def __init__(self, loader: DataLoader, cached: CachedBatches | None):
        self.loader, self.cached = loader, cached

    def __call__(self, batch) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.cached is not None:  # batch: source indices (B,) on the CPU
            return self.cached(batch)
        return (batch, None) if isinstance(batch, torch.Tensor) else tuple(batch)

    def manual_seed(self, seed: int) -> None:
        """Seed the batched augmentation (the per-image path's workers are seeded by torch's own seed)."""
        if self.cached is not None:
            self.cached.manual_seed(seed)

    def describe(self) -> str:
        return self.cached.describe() if self.cached is not None else "per-image augmentation in the loader"


class DataPath:
    """The data path of one stage run: ``batched`` or ``per_image``, chosen once from ``data.pipeline`` (a resumed
    run keeps what it chose), with ``spec`` the cache's contents, for ``item_count`` items in all.
    ``source_is_cache``: the stage's source is an image cache already (auto then takes the batched path)."""

    def __init__(self, cfg, run_dir, accelerator, spec: CacheSpec, item_count: int, source_is_cache: bool = False):
        self.cfg, self.run_dir, self.accelerator, self.spec = cfg, run_dir, accelerator, spec
        recorded = (recorded_choices(cfg).get("data") or {}).get("pipeline")
        self.pipeline = choose_pipeline(cfg.data.pipeline, recorded, item_count * spec.row_bytes(), source_is_cache)
        self.batched = self.pipeline == "batched"
        self.workers = cfg.data.workers()

    def resolved(self) -> dict:
        """What the run chose where its config left the choice to it, for config.yaml's ``resolved`` tree."""
        return {"data": {"pipeline": self.pipeline, "num_workers": self.workers}}

    def cache(self, source, items) -> ImageCache | None:
        """The image cache holding ``items`` of ``source`` on the batched path (the source itself when it is a
        cache; else an automatic one in ``data.cache_dir``, by default the run's ``data_cache/``); None per image."""
        if not self.batched:
            return None
        if isinstance(source, ImageCache):
            return source
        root = self.cfg.data.cache_dir or self.run_dir / "data_cache"
        return ensure_cache(source, items, self.spec, root, self.workers, self.cfg.log.progress,
                            self.accelerator.print)

    def training(self, source, items, cache: ImageCache | None, targets: Targets = None,
                 drop_last: bool = False) -> TrainingBatches:
        """Shuffled training batches of ``items``: index batches kept on the CPU (the batched augmentation draws
        its parameters from each item's original size there), or transformed items moved to the device.

        ``drop_last``, and always under ``train.compile``: every batch is full. A compiled step is one graph of
        static shapes, which a short last batch would compile a second time; the shuffle changes every epoch, so
        the items left out do too. Eager runs keep the short batch, as their results always have."""
        cfg, img = self.cfg, self.cfg.model.img_size
        drop_last = drop_last or cfg.train.compile
        per_step = cfg.train.batch_size * self.accelerator.num_processes
        if drop_last and len(items) < per_step:
            raise SimsegError(f"{len(items):,} training items do not fill one batch of train.batch_size="
                              f"{cfg.train.batch_size} on {self.accelerator.num_processes} process(es), and "
                              f"{'train.compile=true' if cfg.train.compile else 'this stage'} trains on full batches "
                              f"only: lower train.batch_size or train on more items")
        if cache is not None:
            cached = CachedBatches(cache, BatchAugment.from_aug_config(cfg.aug, img, cfg.train.compile),
                                   self.accelerator.device)
            loader = self._loader(IndexDataset(items), decodes=False, shuffle=True, drop_last=drop_last)
            return TrainingBatches(self.accelerator.prepare_data_loader(loader, device_placement=False), cached)
        dataset = TransformedItems(source, items, train_transform(cfg.aug, img), targets)
        loader = self._loader(dataset, decodes=True, shuffle=True, drop_last=drop_last)
        return TrainingBatches(self.accelerator.prepare_data_loader(loader), None)

    def evaluation(self, source, items, cache: ImageCache | None, targets: Targets, eval_op: str) -> DataLoader:
        """Prepared (images, targets) batches of ``items`` in order, through the stage's evaluation transform
        (``eval_op``: :func:`simseg.data.transforms.eval_geometry`)."""
        aug, img = self.cfg.aug, self.cfg.model.img_size
        if cache is not None and cache.spec.eval_size:
            loader = self._loader(CachedEvalSet(cache, items, aug.mean, aug.std), decodes=False, shuffle=False,
                                  collate_fn=keep_batch)
            return self.accelerator.prepare_data_loader(loader)
        return self.loader(TransformedItems(source, items, eval_transform(img, aug.mean, aug.std, eval_op), targets))

    def loader(self, dataset) -> DataLoader:
        """A prepared loader of ``dataset``'s items in order, decoded in ``data.num_workers`` workers."""
        return self.accelerator.prepare_data_loader(self._loader(dataset, decodes=True, shuffle=False))

    def _loader(self, dataset, decodes: bool, **kwargs) -> DataLoader:
        # Datasets that only index arrays in memory need no workers: they would add start-up and nothing else.
        return DataLoader(dataset, batch_size=self.cfg.train.batch_size, num_workers=self.workers if decodes else 0,
                          pin_memory=self.accelerator.device.type == "cuda", **kwargs)
