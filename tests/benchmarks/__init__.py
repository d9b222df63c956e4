"""
The benchmark suite: ``nox -s bench`` (or ``python -m tests.benchmarks.run``).

Nothing here is a unit test: no module is named ``test_*``, so trial and
pytest do not collect it.
"""
