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
- ``mutate``: mutation testing (mutmut) of the modules in :data:`MUTATED`
  against the trial suite; prints each module's score and fails under
  :data:`MUTATION_GOAL` (about three hours on 2 cores from scratch; not a
  default session). ``-- NAME...`` re-tests the named mutants only.
- ``soak``: 10,000 serve/connect/echo/teardown cycles in one process; fails
  if file descriptors, selectables, DelayedCalls or RSS grow (not a default
  session; ``-- --reactor=asyncio`` and other options pass through).
"""

from __future__ import annotations

import collections
import hashlib
import os
import re
import shutil
import tempfile
import zipfile
from pathlib import Path

import nox

nox.options.sessions = ["lint", "typecheck", "tests", "demo"]
nox.options.default_venv_backend = "venv"

ROOT = Path(__file__).parent
#: The lowest versions we support and test; keep in step with pyproject.toml.
LOWEST = ["twisted==22.8.0", "treq==22.2.0"]
#: Every Python we support; keep in step with pyproject.toml's classifiers.
PYTHONS = ["3.10", "3.11", "3.12", "3.13"]
REACTORS = ["default", "select", "poll", "asyncio"]
#: The reactors pytest-twisted can install (its ``--reactor`` option).
PYTEST_REACTORS = ["default", "asyncio"]
#: The modules ``mutate`` mutates (keep in step with pyproject.toml's
#: ``[tool.mutmut]``) and the score each must reach.
MUTATED = [
    "_teardown", "_tracked", "_connections", "_scope", "_enter_scope", "_janitor",
    "_deadline", "_streams", "_ready", "_faults", "_sweep",
    "_proxy", "_datagrams", "_process",
]  # fmt: skip
MUTATION_GOAL = 0.95
#: The surviving mutants argued equivalent (no test can tell them from the
#: code), one ``NAME @FINGERPRINT: why`` a line; the docs page includes it.
#: A module's score leaves these out, as mutation scores do; the raw score
#: is shown too. The fingerprint is that of the mutant's change (see
#: :data:`_FINGERPRINTS`): a name that a change to its function gave to
#: another mutant excuses nothing.
EQUIVALENT = ROOT / "docs" / "equivalent-mutants.txt"
#: Writes ``NAME FINGERPRINT`` to the file ``sys.argv[1]`` for each mutant
#: named after it: the first 8 hex digits of the SHA-1 of its diff's hunk
#: headers (where in its function the change is) and the lines it removes
#: and adds; ``-`` for a name mutmut does not know. (Run in the session's
#: environment, where mutmut is installed.)
_FINGERPRINTS = """
import hashlib, sys
from mutmut.mutation.diff_apply import get_diff_for_mutant
with open(sys.argv[1], "w") as out:
    for name in sys.argv[2:]:
        try:
            lines = get_diff_for_mutant(name).splitlines()[2:]
        except Exception:
            out.write(name + " -\\n")
            continue
        changed = [line for line in lines if line[:1] in "-+@"]
        digest = hashlib.sha1("\\n".join(changed).encode()).hexdigest()[:8]
        out.write(name + " " + digest + "\\n")
"""
#: Where the sdist and wheel are built, once per state of the sources.
DIST = ROOT / ".nox" / "_dist"
#: Where every test run leaves its coverage data, by state of the sources
#: (``coverage`` combines that of the current state).
COVERAGE = ROOT / ".nox" / "_coverage"


def _install(session: nox.Session, twisted: str = "latest") -> None:
    """Install cleanconn from its checkout (for the tool sessions)."""
    session.install("--upgrade", "pip")
    if twisted == "lowest":
        session.install(*LOWEST)
    session.install(".[tls]")


def _packaged() -> list[Path]:
    """The files the sdist and wheel are built from."""
    files = [ROOT / "pyproject.toml", ROOT / "README.md", ROOT / "LICENSE"]
    return files + sorted((ROOT / "cleanconn").rglob("*.py*"))


def _digest() -> str:
    """A name for the current state of the packaged sources."""
    digest = hashlib.sha256()
    for path in _packaged():
        digest.update(str(path.relative_to(ROOT)).encode() + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def wheel(session: nox.Session) -> Path:
    """
    The wheel of this checkout, built once per state of its sources: the
    sdist first, then the wheel from the sdist (as pip does from PyPI);
    both pass ``twine check --strict``, and the wheel built straight from
    the checkout has the same contents.
    """
    out = DIST / _digest()
    built = sorted(out.glob("*.whl"))
    if built:
        return built[0]
    session.install("build", "twine")
    work = Path(session.create_tmp()).resolve() / "dist"
    shutil.rmtree(work, ignore_errors=True)
    session.run("python", "-m", "build", "--outdir", str(work), str(ROOT))
    session.run(
        "python", "-m", "build", "--wheel", "--outdir", str(work / "direct"), str(ROOT)
    )
    session.run("twine", "check", "--strict", *map(str, work.glob("cleanconn-*")))
    from_sdist = _contents(next(work.glob("*.whl")))
    direct = _contents(next((work / "direct").glob("*.whl")))
    if from_sdist != direct:
        session.error(
            "the wheel built from the sdist differs from the one built from "
            f"the checkout: {sorted(set(from_sdist.items()) ^ set(direct.items()))}"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(work, out, ignore=shutil.ignore_patterns("direct"))
    return next(out.glob("*.whl"))


def _contents(path: Path) -> dict[str, int]:
    """A wheel's files and their CRCs (its RECORD names the same hashes)."""
    with zipfile.ZipFile(path) as archive:
        return {info.filename: info.CRC for info in archive.infolist()}


#: Run by a .pth file in every Python process of the test sessions: start
#: coverage (if COVERAGE_PROCESS_START says so).
#:
#: Coverage's SIGTERM handler (``sigterm = true``, for trial's workers)
#: saves the data; a SIGTERM that lands while its atexit handler saves runs
#: a second save inside the first, which waits for the first's sqlite lock
#: for good. A spawned() child that ends by itself as the exit signals it
#: hung so (in 1 run of about 50 under load), and was killed:
#: CleanupTimeout. So at exit, before coverage's own atexit handler (they
#: run in reverse order of registration), SIGTERM kills again as it would
#: without coverage, if coverage's handler is still the one set.
#: (a1_coverage.pth, which newer coverage installs itself, may have started
#: coverage already.)
_COVERAGE_START = """\
import atexit
import signal

import coverage

coverage.process_startup()
_started = getattr(coverage.process_startup, "coverage", None)


def _sigterm_kills_again():
    if signal.getsignal(signal.SIGTERM) == _started._on_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


if _started is not None:
    atexit.register(_sigterm_kills_again)
"""


def _install_wheel(session: nox.Session, twisted: str) -> None:
    """Install the built wheel (not the checkout), and coverage, which
    then measures every Python process of the session's tests."""
    built = wheel(session)
    session.install("--upgrade", "pip")
    if twisted == "lowest":
        session.install(*LOWEST)
    session.install(f"{built}[tls]", "coverage[toml]>=7.6")
    purelib = session.run(
        "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])",
        silent=True,
    )  # fmt: skip
    assert isinstance(purelib, str)
    site = Path(purelib.strip())
    (site / "_cleanconn_coverage.py").write_text(_COVERAGE_START)
    (site / "cleanconn_coverage.pth").write_text("import _cleanconn_coverage\n")


def _suite(session: nox.Session) -> dict[str, str]:
    """
    Copy the test suite out of the source tree and go there, so that the
    tests import the installed cleanconn, never the checkout's; the
    environment for its runs (coverage on, into :data:`COVERAGE`).
    """
    where = Path(session.create_tmp()).resolve() / "suite"
    shutil.rmtree(where, ignore_errors=True)
    shutil.copytree(
        ROOT / "tests",
        where / "tests",
        ignore=shutil.ignore_patterns("__pycache__", "_trial_temp*", "benchmarks"),
    )
    session.chdir(where)
    data = COVERAGE / _digest()
    data.mkdir(parents=True, exist_ok=True)
    env = {
        # The copy of the tests only: the checkout's cleanconn is not there.
        "PYTHONPATH": str(where),
        # Not nox's deep session directory: a UNIX socket path in it would
        # pass the 108 bytes the system allows.
        "TMPDIR": tempfile.gettempdir(),
        "COVERAGE_PROCESS_START": str(ROOT / "pyproject.toml"),
        "COVERAGE_FILE": str(data / ".coverage"),
    }
    session.run(
        "python", "-c",
        "import cleanconn, sys; f = cleanconn.__file__; "
        "sys.exit(None if 'site-packages' in f else f'not the wheel: {f}')",
        env=env,
    )  # fmt: skip
    return env


def _trial(session: nox.Session, env: dict[str, str], *args: str) -> None:
    session.run(
        "trial",
        "--temp-directory",
        str(Path(env["PYTHONPATH"]).parent / "_trial_temp"),
        *args,
        env=env,
    )


def _pytest(session: nox.Session, env: dict[str, str], *args: str) -> None:
    session.run(
        "pytest", "-p", "no:cacheprovider", "--strict-markers", *args, "tests/pytest",
        env=env,
    )  # fmt: skip


@nox.session
@nox.parametrize("twisted", ["lowest", "latest"])
def tests(session: nox.Session, twisted: str) -> None:
    """
    The installed wheel's test suite, on this Python: trial on each reactor
    (under -j2), then the pytest-twisted suite on each of its reactors and
    under pytest-xdist; with the lowest supported and the latest Twisted.
    """
    _install_wheel(session, twisted)
    session.install("pytest", "pytest-twisted", "pytest-xdist")
    env = _suite(session)
    reactors = session.posargs or REACTORS
    for reactor in reactors:
        options = [] if reactor == "default" else [f"--reactor={reactor}"]
        # trial -j with the asyncio reactor kills its own workers ("flush of
        # closed file" in workertrial.py), even for a suite of hand-written
        # listenTCP/connectTCP tests: a trial bug, so asyncio runs serially.
        jobs = [] if reactor == "asyncio" else ["-j2"]
        _trial(session, env, *jobs, *options, "tests")
    # The pytest-twisted suite (tests/pytest, which trial does not collect):
    # its conftest fails a run in which no test passed or any was skipped.
    for reactor in PYTEST_REACTORS:
        _pytest(session, env, f"--reactor={reactor}")
    _pytest(session, env, "--reactor=default", "-n", "2")


@nox.session
@nox.parametrize(
    "python,twisted",
    [(python, "latest") for python in PYTHONS] + [(PYTHONS[0], "lowest")],
)
def matrix(session: nox.Session, twisted: str) -> None:
    """
    The installed wheel's suite on every supported Python (``.ci/run``
    runs it with pyenv's Pythons): latest Twisted on each, and the lowest
    Twisted on the lowest Python; trial on the default reactor (-j2), then
    the pytest suite. The other reactors are the ``tests`` session's job:
    what differs between Pythons is the language and the standard library,
    which the default reactor reaches as well (and asyncio's serial run
    would double the matrix's time).
    """
    _install_wheel(session, twisted)
    session.install("pytest", "pytest-twisted", "pytest-xdist")
    env = _suite(session)
    _trial(session, env, "-j2", "tests")
    _pytest(session, env, "--reactor=default", "-n", "2")


@nox.session
def coverage(session: nox.Session) -> None:
    """
    Combine the branch coverage of every test run since the last ``tests``
    session (each reactor, Twisted and Python), report it, and fail under
    the threshold in pyproject.toml.
    """
    session.install("coverage[toml]>=7.6")
    data = COVERAGE / _digest()
    if not any(data.glob(".coverage.*")):
        session.error(f"no coverage data in {data}: run the tests session first")
    env = {"COVERAGE_FILE": str(data / ".coverage")}
    session.run("coverage", "combine", "--keep", str(data), env=env)
    session.run("coverage", "report", env=env)


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
def mutate(session: nox.Session) -> None:
    """
    Mutation testing with mutmut: each mutant of the modules in
    :data:`MUTATED` is run against the trial suite's tests that reach it
    (run by pytest, which runs trial's TestCases); prints each module's
    score and the surviving mutants (``mutmut show NAME`` shows one), and
    fails if a module scores under :data:`MUTATION_GOAL`. mutmut keeps its
    results in ``mutants/``: a second run re-tests only what changed.
    """
    _install(session)
    # The tests must import mutmut's copy of cleanconn, not an installed one.
    session.run("python", "-m", "pip", "uninstall", "--yes", "--quiet", "cleanconn")
    session.install("mutmut==3.8.1", "pytest", "pytest-timeout")
    # One mutant at a time: kills recorded two at a time were false for one
    # mutant in five (docs/mutation.md, "Trusting a kill"). A faster run
    # whose kills need checking: CLEANCONN_MUTATE_CHILDREN=2.
    children = os.environ.get("CLEANCONN_MUTATE_CHILDREN", "1")
    # A mutant can break the deadline that ends a stuck test (trial's
    # timeout, cleanconn's TestCase): pytest-timeout ends such a test, which
    # counts as killed. (An environment variable, not mutmut's
    # pytest_add_cli_args: changing those makes mutmut forget every result.)
    env = {"PYTEST_ADDOPTS": "--timeout=25"}
    session.run("mutmut", "run", "--max-children", children, *session.posargs, env=env)
    listing = session.run("mutmut", "results", "--all", "true", silent=True)
    assert isinstance(listing, str)
    by_module: dict[str, collections.Counter[str]] = collections.defaultdict(
        collections.Counter
    )
    # Killed: a test failed, or the mutant hung past its timeout. Left out
    # of the score: skipped mutants, and those not checked (a run limited
    # to some names). Every other status (survived, no tests, suspicious,
    # interrupted, segfault) counts as not killed, and is listed.
    caught = ("killed", "timeout", "caught by type check")
    left_out = ("skipped", "not checked")
    survivors = []
    status_of = {}
    for line in listing.splitlines():
        name, _, status = line.strip().rpartition(": ")
        if not name.startswith("cleanconn."):
            continue
        status_of[name] = status
        by_module[name.split(".")[1]][status] += 1
        if status not in caught and status not in left_out:
            survivors.append(f"{name}: {status}")
    unknown = sorted(set(by_module) - set(MUTATED))
    if unknown:
        session.error(f"mutants of modules not in MUTATED: {unknown}")
    equivalent = _equivalent_mutants()
    survived = {name for name, status in status_of.items() if status == "survived"}
    fingerprint = _fingerprints(session, sorted(survived))
    excused = {
        name
        for name, (argued, _) in equivalent.items()
        if name in survived and fingerprint.get(name) == argued
    }
    # A line whose mutant no longer survives is stale (a test kills it, or
    # a change to its function renumbered it), and so is one whose
    # fingerprint is not its mutant's (the name is another mutant's now):
    # it is not excused, and the run says so, to be re-read. (A warning,
    # not a failure: a test that fails by chance under load kills a mutant
    # too.) A run limited to some mutants leaves the others as they were.
    stale = sorted(
        name
        for name in set(equivalent) - excused
        if _module_of(name) in MUTATED and (not session.posargs or name in survived)
    )
    low = []
    session.log(
        f"{'module':<16}{'checked':>9}{'killed':>8}{'raw':>8}{'equiv.':>8}{'score':>8}"
    )
    for module in MUTATED:
        counts = by_module[module]
        checked = sum(n for status, n in counts.items() if status not in left_out)
        killed = sum(counts[status] for status in caught)
        argued = sum(_module_of(name) == module for name in excused)
        raw = killed / checked if checked else 0.0
        score = killed / (checked - argued) if checked > argued else 0.0
        line = f"{module:<16}{checked:>9}{killed:>8}{raw:>8.1%}{argued:>8}{score:>8.1%}"
        if counts["not checked"]:
            line += f"  ({counts['not checked']} not checked)"
        session.log(line)
        # A module none of whose mutants was checked fails too, unless the
        # run was limited to some mutants by name.
        if score < MUTATION_GOAL and (checked or not session.posargs):
            low.append(module)
    for survivor in survivors:
        name = survivor.partition(": ")[0]
        why = f" (equivalent: {equivalent[name][1]})" if name in excused else ""
        mark = f" @{fingerprint[name]}" if name in fingerprint else ""
        session.log(f"  not killed: {survivor}{mark}{why}")
    for name in stale:
        status = status_of.get(name, "no such mutant")
        if name in survived:
            status = f"its change's fingerprint is @{fingerprint.get(name)}"
        session.warn(f"stale line in {EQUIVALENT.name}: {name} ({status})")
    if low:
        session.error(f"under {MUTATION_GOAL:.0%}: {', '.join(low)}")


def _module_of(mutant: str) -> str:
    """``_streams`` for ``cleanconn._streams.x_name__mutmut_3``."""
    return mutant.split(".")[1]


def _equivalent_mutants() -> dict[str, tuple[str, str]]:
    """
    :data:`EQUIVALENT`'s mutants, each with the fingerprint of the change
    argued (without its ``@``) and why it is equivalent.
    """
    argued = {}
    for number, line in enumerate(EQUIVALENT.read_text("utf-8").splitlines(), 1):
        if line.strip() and not line.startswith("#"):
            head, _, why = line.partition(": ")
            name, _, mark = head.partition(" @")
            where = f"{EQUIVALENT.name}:{number}"
            if (
                len(name.split(".")) != 3
                or not name.startswith("cleanconn.")
                or name != name.strip()
                or not re.fullmatch("[0-9a-f]{8}", mark)
                or not why.strip()
            ):
                raise ValueError(
                    f"{where}: not `cleanconn.NAME @FINGERPRINT: why`: {line!r}"
                )
            if name in argued:
                raise ValueError(f"{where}: {name} is argued twice")
            argued[name] = (mark, why.strip())
    return argued


def _fingerprints(session: nox.Session, names: list[str]) -> dict[str, str]:
    """Each named mutant's fingerprint (see :data:`_FINGERPRINTS`)."""
    if not names:
        return {}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp, "fingerprints")
        session.run("python", "-c", _FINGERPRINTS, str(out), *names, silent=True)
        pairs = (line.split() for line in out.read_text("utf-8").splitlines())
        return {name: mark for name, mark in pairs if mark != "-"}


@nox.session
def soak(session: nox.Session) -> None:
    """10,000 echo cycles, then 1,000 child processes, each shape in one
    process; fail if fds, child processes, selectables or RSS grow."""
    _install(session)
    env = {"PYTHONPATH": "."}
    session.run("python", "tests/benchmarks/soak.py", *session.posargs, env=env)
    session.run(
        "python", "tests/benchmarks/soak.py", "--shape", "process", *session.posargs,
        env=env,
    )  # fmt: skip


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
