"""Experiments: the stage table, the chain, the sweep (its axes, plan, cells, inits, launchers and results), the report
and the demo."""
