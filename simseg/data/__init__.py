"""Data: image and pair sources (folders, datasets, caches, synthetic), the labelled sets and their splits, per-image
and batched transforms, and the torch Datasets the stages load."""
