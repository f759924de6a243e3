"""Training: the epoch loop and evaluation, optimiser and schedules, metrics, weights and the export handoff, the run
folder, plots, and the steps every stage script shares."""
