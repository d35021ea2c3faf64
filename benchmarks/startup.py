"""Whole commands, as a user runs them (W&B offline, the machine's default threads):

- the demo cell `python train.py` from an empty output root (the old `make bench`
  promise: under 60 s on 2 cores);
- start-up: the time to a config error (`python train.py model=tiny size=xl`) and to
  "nothing to train" for that finished cell (`python train.py` again); best of two runs
  each, since a single start-up time is at the mercy of a busy machine;
- two concurrent cells: two `python train.py` at once, each with its own output root,
  vs the one alone above: the ratio of wall times (two processes on 2 cores with one
  thread each would take 1x; with oversubscribed threads, many times that).

    python benchmarks/startup.py [--quick]
"""

import sys
import time
from pathlib import Path

from common import Row, rows_main, start, timed, train_py

# --quick: the same default cell without ITT and with 2 target epochs.
QUICK_CELL = ["itt=none", "target.hparams.epochs=2"]


def best_of(runs: int, command: list[str], expect_failure: bool = False, expect: str = "") -> float:
    times = []
    for _ in range(runs):
        seconds, result = timed(command, check=not expect_failure)
        output = result.stdout + result.stderr
        if expect_failure and result.returncode == 0:
            raise RuntimeError(f"expected {' '.join(command)} to fail")
        if expect and expect not in output:
            raise RuntimeError(f"expected {expect!r} from {' '.join(command)}:\n{output[-2000:]}")
        times.append(seconds)
    return min(times)


def rows(root: Path, quick: bool, startup: bool = True, concurrency: bool = True) -> list[Row]:
    cell = QUICK_CELL if quick else []
    alone, _ = timed(train_py(*cell, f"paths.root={root}/alone"))
    result = [Row(f"demo cell `python train.py{' ' + ' '.join(cell) if cell else ''}`, empty root",
                  "W&B offline", alone, "< 60 s", "s")]
    if startup:
        error = best_of(2, train_py("model=tiny", "size=xl", f"paths.root={root}/error"), expect_failure=True,
                        expect="has no size")
        result.append(Row("config error: `python train.py model=tiny size=xl`", "best of 2", error, "< 3 s", "s"))
        skip = best_of(2, train_py(*cell, f"paths.root={root}/alone"), expect="nothing to train")
        result.append(Row("finished cell: `python train.py` again", "'nothing to train'; best of 2", skip,
                          "< 4 s", "s"))
    if concurrency:
        started = time.perf_counter()
        logs = [root / f"concurrent-{index}.log" for index in (1, 2)]
        jobs = [start(train_py(*cell, f"paths.root={root}/concurrent-{index}"), log)
                for index, log in zip((1, 2), logs)]
        ended: dict[int, float] = {}
        while len(ended) < len(jobs):  # poll both: each one's own end time
            for index, job in enumerate(jobs):
                if index not in ended and job.poll() is not None:
                    ended[index] = time.perf_counter() - started
                    if job.returncode != 0:
                        raise RuntimeError(f"a concurrent cell failed:\n{logs[index].read_text()[-3000:]}")
            time.sleep(0.05)
        pair = max(ended.values())
        result.append(Row("two concurrent demo cells / one alone: wall",
                          f"{pair:.1f} s (each {ended[0]:.1f}, {ended[1]:.1f}) vs {alone:.1f} s alone",
                          pair / alone, "<= 2.2"))
    return result


def main() -> None:
    rows_main(__doc__, rows)


if __name__ == "__main__":
    sys.exit(main())
