"""
Run every example end to end: each ``*_react.py`` script, then trial over
the ``test_*.py`` example modules. Prints what each one checked; exits
non-zero if any fails.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def main() -> int:
    failed: list[str] = []
    for script in sorted(HERE.glob("*_react.py")):
        print(f"== {script.relative_to(ROOT)}", flush=True)
        if subprocess.run([sys.executable, str(script)], cwd=ROOT).returncode:
            failed.append(script.name)
    modules = sorted(f"examples.{p.stem}" for p in HERE.glob("test_*.py"))
    print(f"== trial {' '.join(modules)}", flush=True)
    trial = [sys.executable, "-c", "from twisted.scripts.trial import run; run()"]
    if subprocess.run([*trial, *modules], cwd=ROOT).returncode:
        failed.append("trial examples")
    if failed:
        print(f"demo FAILED: {', '.join(failed)}")
        return 1
    print("demo passed: every example ran and checked what it says")
    return 0


if __name__ == "__main__":
    sys.exit(main())
