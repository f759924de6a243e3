"""Experiments: the stage table, the chain, the sweep (its grid, cells, inits, launchers and results) and the report."""
