"""Sum trial's and pytest's result lines into one 'N passed, M failed' line."""

from __future__ import annotations

import re
import sys

TRIAL = re.compile(r"^(PASSED|FAILED) \((?P<counts>[^)]*)\)\s*$")
PYTEST = re.compile(r"^=+ (?P<counts>.*\d+ (passed|failed|error).*) in [\d.]+s")


def main(path: str) -> int:
    passed = failed = runs = 0
    with open(path, encoding="utf-8", errors="replace") as log:
        for line in log:
            line = line.strip()
            if match := TRIAL.match(line):
                runs += 1
                for name, number in re.findall(r"(\w+)=(\d+)", match["counts"]):
                    if name == "successes":
                        passed += int(number)
                    elif name in ("failures", "errors", "unexpectedSuccesses"):
                        failed += int(number)
            elif match := PYTEST.match(line):
                runs += 1
                for number, name in re.findall(r"(\d+) (\w+)", match["counts"]):
                    if name == "passed":
                        passed += int(number)
                    elif name in ("failed", "error", "errors"):
                        failed += int(number)
    print(f"{passed} passed, {failed} failed")
    return 0 if runs and not failed else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
