"""Training: the epoch loop and evaluation, a stage's data path, the steps every stage script shares, optimiser and
schedules, metrics, weights and the export handoff, the run folder and its resume state, plots, SAM and TTA."""
