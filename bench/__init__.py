"""NTBCare's benchmark: figures (not pass/fail tests) for the platform against this machine's
own limits, measured in the same run. ``python -m bench`` (or ``make bench``) runs every part;
``python -m bench baseline`` (or ingest, e2e, rebuild, scaleout) runs one. Results go to
``bench/results/<part>.json``; docs/performance.md explains them."""
