"""
The pytest-twisted suite: the cleanconn pytest plugin, as users switch it on.

Run it with ``pytest --reactor=default tests/pytest`` (and
``--reactor=asyncio``); ``nox -s tests`` does both. This directory has no
``__init__.py``, so trial does not collect it.

A run in which no test passed, or any test was skipped, fails: "no tests
ran" must never look like success.
"""

from __future__ import annotations

from collections import Counter

import pytest

pytest_plugins = ["cleanconn.pytest_plugin", "pytester"]

_outcomes: Counter[str] = Counter()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call" or report.skipped:
        _outcomes[report.outcome] += 1


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if exitstatus != 0:
        return
    problem = None
    if not _outcomes["passed"]:
        problem = "no test passed"
    elif _outcomes["skipped"]:
        problem = f"{_outcomes['skipped']} test(s) skipped"
    if problem is not None:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"tests/pytest: {problem}; failing the run.", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
