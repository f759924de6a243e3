"""Data: sources (folders, datasets, pets, scenes, synthetic; each with a fingerprint), splits, the per-image
transforms, the batched augmentation, image caches (their format and how they are made) and the loaders of both
data paths."""
