"""``simseg sweep``: its command line, axes, plan, cells, inits, launchers and the results table it writes."""
