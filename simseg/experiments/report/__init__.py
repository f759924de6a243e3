"""``simseg report``: a sweep's results read back as tables, figures and ``report.md``."""
