"""Wall-clock figures the project promises, measured in one run (machines are noisy:
compare the ratios of one run, not numbers across runs).

    make bench          # or: python scripts/bench.py [--skip-grid]

- the demo cell (`python train.py`) from an empty output root: must stay under 60 s on 2 cores;
- the same cell again: the store makes it a skip (the figure is start-up + the check);
- the demo grid `-m model=tiny size=s,m itt=none,demo` cold, then again: the second run trains nothing.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "WANDB_MODE": "offline", "WANDB_SILENT": "true"}


def timed(*args: str) -> float:
    env = {key: value for key, value in ENV.items() if key != "XITT_SWEEP_NAME"}
    started = time.perf_counter()
    result = subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"benchmark command failed: {' '.join(args)}\n{result.stderr[-3000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--skip-grid", action="store_true", help="only the demo cell")
    options = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as root:
        rows.append(("python -c 'import xitt.stages.pipeline' (start-up)",
                     timed("-c", "import xitt.stages.pipeline")))
        cold = timed("train.py", f"paths.root={root}/cell")
        rows.append(("python train.py (demo cell, empty store, W&B offline)", cold))
        rows.append(("python train.py again (everything stored)", timed("train.py", f"paths.root={root}/cell")))
        if not options.skip_grid:
            grid = ["train.py", "-m", "model=tiny", "size=s,m", "itt=none,demo", f"paths.root={root}/grid"]
            grid_cold = timed(*grid)
            rows.append(("grid size=s,m itt=none,demo (4 cells, empty store)", grid_cold))
            rows.append(("the same grid again (4 cells skipped)", timed(*grid)))
    width = max(len(name) for name, _ in rows)
    print(f"{'benchmark':<{width}}  seconds")
    for name, seconds in rows:
        print(f"{name:<{width}}  {seconds:7.1f}")
    verdict = "OK" if cold < 60 else "TOO SLOW"
    print(f"\ndemo cell: {cold:.1f} s (target < 60 s on 2 cores): {verdict}")
    if not options.skip_grid:
        print(f"grid re-run / cold run: {rows[-1][1] / rows[-2][1]:.2f}")


if __name__ == "__main__":
    main()
