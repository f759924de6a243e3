"""Experiments, in rooms by job: what every workflow shares (``stage_table``: the stages and how to run one;
``stage_entry``: argv to config and one-line errors; ``run_folders``: reading finished run folders), ``sweep/``
(planning and running ``simseg sweep``'s cells, and the results table they make), ``report/`` (a sweep's results
as tables, figures and ``report.md``), and the workflows on top: ``chain`` and ``demo``."""
