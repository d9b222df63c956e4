"""
The project's whole tool belt: ``nox -l`` lists the sessions.

- ``tests``: trial over tests/ on every supported reactor, under ``-j2``, for
  the lowest supported and the latest Twisted; then the pytest-twisted suite.
- ``demo``: the examples, end to end (what the README calls the main job).
- ``lint``, ``typecheck``: ruff, and mypy --strict with mypy-zope.
- ``bench``: the benchmark suite; writes docs/benchmarks.md (``-- --quick``
  for a short run that only prints the tables, ``-- --instructions`` for
  the instruction counts per unit alone). Needs valgrind (callgrind):
  ``sudo apt-get install valgrind``.
- ``docs``: the Sphinx site, warnings as errors, and the doctests in its pages.
- ``soak``: 10,000 serve/connect/echo/teardown cycles in one process; fails
  if file descriptors, selectables, DelayedCalls or RSS grow (not a default
  session; ``-- --reactor=asyncio`` and other options pass through).
"""

from __future__ import annotations

import nox

nox.options.sessions = ["lint", "typecheck", "tests", "demo"]
nox.options.default_venv_backend = "venv"

#: The lowest versions we support and test; keep in step with pyproject.toml.
LOWEST = ["twisted==22.8.0", "treq==22.2.0"]
REACTORS = ["default", "select", "poll", "asyncio"]
#: The reactors pytest-twisted can install (its ``--reactor`` option).
PYTEST_REACTORS = ["default", "asyncio"]


def _install(session: nox.Session, twisted: str = "latest") -> None:
    session.install("--upgrade", "pip")
    if twisted == "lowest":
        session.install(*LOWEST)
    session.install(".[tls]")


def _trial(session: nox.Session, *args: str) -> None:
    session.run(
        "trial",
        "--temp-directory",
        f"{session.create_tmp()}/_trial_temp",
        *args,
        env={"PYTHONPATH": "."},
    )


@nox.session
@nox.parametrize("twisted", ["lowest", "latest"])
def tests(session: nox.Session, twisted: str) -> None:
    """Run the trial suite on each reactor (and -j2), then the pytest suite."""
    _install(session, twisted)
    reactors = session.posargs or REACTORS
    for reactor in reactors:
        options = [] if reactor == "default" else [f"--reactor={reactor}"]
        # trial -j with the asyncio reactor kills its own workers ("flush of
        # closed file" in workertrial.py), even for a suite of hand-written
        # listenTCP/connectTCP tests: a trial bug, so asyncio runs serially.
        jobs = [] if reactor == "asyncio" else ["-j2"]
        _trial(session, *jobs, *options, "tests")
    # The pytest-twisted suite (tests/pytest, which trial does not collect):
    # its conftest fails a run in which no test passed or any was skipped.
    session.install("pytest", "pytest-twisted")
    for reactor in PYTEST_REACTORS:
        session.run(
            "pytest",
            "-p",
            "no:cacheprovider",
            "--strict-markers",
            f"--reactor={reactor}",
            "tests/pytest",
            env={"PYTHONPATH": "."},
        )


@nox.session
def demo(session: nox.Session) -> None:
    """Run every example end to end, printing what each one checked."""
    _install(session)
    session.run("python", "examples/run_all.py", env={"PYTHONPATH": "."})


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check."""
    session.install("ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict with the mypy-zope plugin."""
    _install(session)
    session.install("mypy", "mypy-zope", "pytest", "pytest-twisted")
    session.run("mypy")


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks against the hand-written code (instructions per unit, time,
    memory); ``-- --quick`` for a short run, ``-- --instructions`` for the
    instruction counts alone."""
    _install(session)
    session.run("python", "-m", "tests.benchmarks.run", *session.posargs)


@nox.session
def soak(session: nox.Session) -> None:
    """10,000 cycles in one process; fail if fds, selectables or RSS grow."""
    _install(session)
    session.run(
        "python", "tests/benchmarks/soak.py", *session.posargs, env={"PYTHONPATH": "."}
    )


@nox.session
def docs(session: nox.Session) -> None:
    """Build the documentation (warnings are errors) and run its doctests."""
    _install(session)
    session.install("-r", "docs/requirements.txt")
    build = "docs/_build"
    for builder in ("html", "doctest"):
        session.run(
            "sphinx-build", "-W", "--keep-going", "-E", "-b", builder,
            "-d", f"{build}/doctrees-{builder}", "docs", f"{build}/{builder}",
        )  # fmt: skip
    session.log(f"open {build}/html/index.html")
