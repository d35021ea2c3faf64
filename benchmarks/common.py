"""What the benchmark modules share: where things are, the offline environment, running a
command or a measurement in its own process, composing the real configs, and the rows of
the table that `bench.py` prints.

Every measurement that trains runs in a fresh Python process: Lightning, accelerate and
torch keep process-wide state (seeds, accelerate's mixed-precision singleton, thread
pools), so that one precision or workload never inherits another's.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BENCH_DIR = REPO / "benchmarks"
SHARED = REPO.parent / "shared"
E5 = SHARED / "models" / "multilingual-e5-small"
SENTIMENT = SHARED / "data" / "multilingual_sentiment"

# Offline, quiet W&B, and no sweep name inherited from a calling grid. Thread settings are
# deliberately left as a user gets them (only OMP_NUM_THREADS / GOMP_SPINCOUNT that the
# project itself sets), since the concurrency row measures exactly that default.
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "WANDB_MODE": "offline",
       "WANDB_SILENT": "true", "PYTHONPATH": str(BENCH_DIR)}
ENV.pop("XITT_SWEEP_NAME", None)


def shared_present() -> bool:
    return (E5 / "config.json").is_file() and (SENTIMENT / "english").is_dir()


@dataclass
class Row:
    """One line of the table: what was measured, the figures behind it, the ratio (or
    seconds) that has a target, the target, and whether it was met."""

    name: str
    measured: str
    value: float | None = None
    target: str = ""  # ">= 1.05", "< 3 s", "" (for information)
    unit: str = "x"  # "x": a ratio, "s": seconds

    @property
    def verdict(self) -> str:
        if self.value is None:
            return "SKIP" if self.target else ""
        if not self.target:
            return "info"
        op, bound = self.target.split()[:2]
        bound = float(bound)
        ok = {">=": self.value >= bound, "<=": self.value <= bound, "<": self.value < bound,
              ">": self.value > bound}[op]
        return "PASS" if ok else "MISS"

    def shown_value(self) -> str:
        if self.value is None:
            return "-"
        return f"{self.value:.2f}" + ("x" if self.unit == "x" else " s")


def format_table(rows: list[Row]) -> str:
    headers = ("measurement", "measured", "ratio/s", "target", "result")
    cells = [(r.name, r.measured, r.shown_value(), r.target, r.verdict) for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)), "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(cell, widths)).rstrip() for cell in cells]
    return "\n".join(lines)


def timed(args: list[str], *, cwd: Path = REPO, check: bool = True, env: dict | None = None,
          timeout: float = 1800) -> tuple[float, subprocess.CompletedProcess]:
    """Wall seconds of a command run as a user runs it (offline), and its result."""
    started = time.perf_counter()
    result = subprocess.run(args, cwd=cwd, env={**ENV, **(env or {})}, capture_output=True, text=True,
                            timeout=timeout)
    seconds = time.perf_counter() - started
    if check and result.returncode != 0:
        raise RuntimeError(f"benchmark command failed ({result.returncode}): {' '.join(args)}\n"
                           f"{result.stderr[-3000:]}")
    return seconds, result


def start(args: list[str], log: Path, *, cwd: Path = REPO) -> subprocess.Popen:
    """Start a command (offline) with its output in the file `log` (a pipe nobody reads
    could fill up and stall it)."""
    with open(log, "w") as out:
        return subprocess.Popen(args, cwd=cwd, env=ENV, stdout=out, stderr=subprocess.STDOUT, text=True)


def train_py(*overrides: str) -> list[str]:
    return [sys.executable, str(REPO / "train.py"), *overrides]


RESULT_PREFIX = "BENCH-RESULT "


def measure_in_child(module: str, payload: dict[str, Any], timeout: float = 1800) -> dict[str, Any]:
    """Run `benchmarks/<module>.py --child '<payload json>'` in a fresh process and return the
    JSON it prints on its BENCH-RESULT line (its other output is library chatter)."""
    args = [sys.executable, str(BENCH_DIR / f"{module}.py"), "--child", json.dumps(payload)]
    _, result = timed(args, timeout=timeout)
    for line in result.stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX):])
    raise RuntimeError(f"{module} printed no result for {payload}:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")


def child_main(run) -> None:
    """The `--child <json>` entry of a measurement module: run it, print its result line."""
    payload = json.loads(sys.argv[sys.argv.index("--child") + 1])
    result = run(payload)
    print(RESULT_PREFIX + json.dumps(result), flush=True)


def rows_main(doc: str, rows) -> None:
    """The command line of a module that prints table rows (`rows(root, quick)`), run on its
    own in a temporary folder."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as root:
        for row in rows(Path(root), options.quick):
            print(row)


def measurement_main(doc: str, run, precision: bool = False) -> None:
    """The command line of a measurement module: `--child <json>` when bench.py runs it in
    a child process, else a run on its own (a workload, a precision where it has one) in a
    temporary folder, its result printed as JSON."""
    if "--child" in sys.argv:
        child_main(run)
        return
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workload", choices=("tiny", "e5"), default="tiny")
    if precision:
        parser.add_argument("--precision", choices=("32-true", "bf16-mixed"), default="bf16-mixed")
    parser.add_argument("--quick", action="store_true")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as root:
        print(json.dumps(run({**vars(options), "root": root}), indent=1))


def compose(*overrides: str):
    """The real composed config of `python train.py <overrides>` (as tests/conftest.py)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    import xitt.core.naming  # noqa: F401  (registers the config resolvers)
    from xitt import CONF_DIR

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return hydra_compose(config_name="train", overrides=list(overrides))


def match_pipeline_threads() -> None:
    """Thread settings as `train.py` sets them for a one-process job (xitt.core.jobs), given
    to every framework alike so that only the training loops differ. Called before torch is
    imported. A no-op where the project has no such function."""
    try:
        from xitt.core.jobs import set_math_threads
    except ImportError:
        return
    set_math_threads(1, 0)


# -- the workloads: the same model, data and settings for every framework ------------------

def workload_overrides(name: str, quick: bool) -> list[str]:
    """The cell whose target stage the training rows run (itt=none: the target stage starts
    from the pretrained encoder, as the no-ITT cells do). Without the validation loop: the
    Trainer and plain-loop rows train only, so the work is matched."""
    return [*_workload(name, quick), "selection.every_n_epochs=0", "selection.target=last", "selection.itt=last"]


def _workload(name: str, quick: bool) -> list[str]:
    if name == "tiny":
        # 150 English demo sentences, batch 16, max length 64: 10 steps an epoch, and the
        # demo's 10 epochs (a tiny-l step is compute-bound on 2 cores: about 0.1 s).
        epochs = 2 if quick else 10
        return ["model=tiny", "size=l", "itt=none", "target=demo", f"target.hparams.epochs={epochs}"]
    if name == "e5":
        # The setting: e5-small, English tweets (the 870 of test.csv are the training
        # set, as in tests/test_real_transfer.py), full fine-tune, batch 16, max length 128,
        # mean pooling as the encoder was trained with; one epoch.
        overrides = ["model=hf", f"model.name_or_path={E5}", "model.pooling=mean", "itt=none",
                     "target=sentiment", "target.source=local", f"target.path={SENTIMENT}",
                     "target.train_split=test", "target.test_split=validation", "target.hparams.epochs=1",
                     "target.hparams.batch_size=16", "target.hparams.max_length=128"]
        if quick:
            overrides.append("target.train_sample={n: 96, seed: 1}")
        return overrides
    raise ValueError(name)


def load_average() -> str:
    one, five, _ = os.getloadavg()
    return f"{one:.2f}/{five:.2f}"
