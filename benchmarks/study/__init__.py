"""The Fashion-MNIST study of ``benchmarks/bench_study.py``: its plans (``plan``), the records of
finished runs and their checks (``records``), the tables (``report``) and the cycle-length figure
(``plot``)."""
