"""Shared test set-up: offline everywhere, real configs, real subprocess runs.

Every test runs without network: the Hugging Face hub and data sets are offline and W&B
writes offline runs. Tests that need the real assets beside the repository (`../shared`)
skip with the reason when it is absent.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from xitt.core.jobs import OPENMP_SPIN_COUNT
from xitt.core.store import ArtifactStore

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
# One math thread per process: the tests run several training processes at once (DDP
# ranks, concurrent jobs, SLURM array tasks), and on a small machine threads that wait for
# each other across processes make tiny models many times slower than one thread does.
# No test may depend on the numerics of one machine: `XITT_TEST_THREADS=2` and
# `XITT_TEST_PRECISION=bf16-mixed` run the whole suite with other math threads and another
# precision (every training command and composed config), and its outcomes must not change.
# The OpenMP spin count is the one every entry point sets before torch starts
# (`xitt.core.jobs.set_math_threads`): set here, the suite's processes and the warm-start
# process (tests/warm_start.py) start torch with it, as a run started cold does.
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "WANDB_MODE": "offline",
               "WANDB_SILENT": "true", "TOKENIZERS_PARALLELISM": "false",
               "OMP_NUM_THREADS": os.environ.get("XITT_TEST_THREADS", "1"), "GOMP_SPINCOUNT": str(OPENMP_SPIN_COUNT)}
os.environ.update(OFFLINE_ENV)
TEST_PRECISION = os.environ.get("XITT_TEST_PRECISION")


def with_test_precision(args) -> list[str]:
    """The arguments of a training command or compose, with the suite's precision where one
    is set and the test does not choose its own."""
    if TEST_PRECISION and not any("precision=" in str(arg) for arg in args):
        return [*args, f"trainer.precision={TEST_PRECISION}"]
    return list(args)


# The files that take longest (`--durations`), started first: `--dist loadfile
# --no-loadscope-reorder` hands files to the two workers in collection order, and a long file
# handed out last keeps one worker busy while the other has nothing left.
LONGEST_FIRST = ("test_task_types_end_to_end.py", "test_report.py", "test_real_transfer.py", "test_slurm.py",
                 "test_ladder.py", "test_ddp.py", "test_retrieval.py", "test_plan.py", "test_concurrency.py",
                 "test_tasks.py", "test_keys.py", "test_validation.py", "test_cell.py")


def pytest_collection_modifyitems(config, items):
    rank = {name: position for position, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest keep their order


# The demo task's languages, and what a finished run left behind.
DEMO_LANGS = ["en", "near", "mid", "far"]


def records_under(root: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((root / "results").rglob("*.json"))
            if not p.name.endswith(".predictions.json")]


def builds(root: Path, kind: str) -> list[str]:
    return [event["key"] for event in ArtifactStore(root / "store").events() if event["kind"] == kind]


@pytest.fixture
def shared() -> Path:
    if not (SHARED / "data").is_dir():
        pytest.skip(f"the shared test assets are not at {SHARED} (real data and model tests need them)")
    return SHARED


def _entry_point(script: str, args: tuple[str, ...], env: dict | None) -> tuple[list[str], dict[str, str]]:
    """The command line and environment of `python <script> <args>` run offline."""
    full_env = {**os.environ, **OFFLINE_ENV, **(env or {})}
    full_env.pop("XITT_SWEEP_NAME", None)
    if script == "train.py":
        args = with_test_precision(args)
    return [sys.executable, script, *args], full_env


def run_script(script: str, *args: str, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run one of the project's entry points the way a user does, offline: `python <script>
    <args>` (or `python -m <module> <args>` for script "-m") in a process of its own. Where
    the environment is the suite's, the process is forked from one that has done the heavy
    imports already (tests/warm_start.py), which saves seconds a run; otherwise it starts cold."""
    command, full_env = _entry_point(script, args, env)
    warm = _WarmStarts.get(full_env)
    if warm is not None:
        return warm.run(command, full_env, timeout)
    return subprocess.run(command, cwd=REPO, env=full_env, capture_output=True, text=True, timeout=timeout)


def start_script(script: str, *args: str):
    """Start `python <script> <args>` in the background, as `run_script` runs it (warm where
    it can), for a test that signals it, kills it or runs several at once. What it returns
    has the `subprocess.Popen` calls the tests use: pid, poll, wait, communicate (stdout and
    stderr as text), send_signal, kill, returncode."""
    command, full_env = _entry_point(script, args, None)
    warm = _WarmStarts.get(full_env)
    if warm is not None:
        return warm.start(command, full_env)
    return subprocess.Popen(command, cwd=REPO, env=full_env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


class _WarmStarts:
    """The worker's warm-start process (tests/warm_start.py), started on first use with the
    suite's environment; runs whose environment differs start cold, so nothing a library
    reads from the environment as it is imported can differ from a cold start."""

    _instance: "_WarmStarts | None" = None
    _failed = False

    def __init__(self, env: dict[str, str]):
        self.env = env
        self.process = subprocess.Popen([sys.executable, str(REPO / "tests/warm_start.py")], cwd=REPO, env=env,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        hello = json.loads(self.process.stdout.readline() or '{"ready": false}')
        self.ready = bool(hello["ready"])

    # Set as the suite runs, read by no library as it is imported: pytest's name of the running
    # test, and what Lightning leaves behind in a test that trained in its own process (the
    # seed of `seed_everything`, cuBLAS's workspace under `deterministic`). They do not count
    # as a difference (the run gets them as they are).
    _PER_TEST = ("PYTEST_CURRENT_TEST", "PL_GLOBAL_SEED", "PL_SEED_WORKERS", "CUBLAS_WORKSPACE_CONFIG")

    @classmethod
    def _compared(cls, env: dict[str, str]) -> dict[str, str]:
        return {name: value for name, value in env.items() if name not in cls._PER_TEST}

    @classmethod
    def get(cls, env: dict[str, str]) -> "_WarmStarts | None":
        """The warm-start process, if a run in `env` may use it."""
        if cls._failed or os.environ.get("XITT_TEST_COLD_STARTS") or not sys.platform.startswith("linux"):
            return None
        suite_env = {name: value for name, value in {**os.environ, **OFFLINE_ENV}.items() if name != "XITT_SWEEP_NAME"}
        if cls._compared(env) != cls._compared(suite_env):
            return None
        if cls._instance is None:
            cls._instance = cls(suite_env)
            cls._failed = not cls._instance.ready
        ready = cls._instance.ready and cls._compared(cls._instance.env) == cls._compared(env)
        return cls._instance if ready else None

    def ask(self, request: dict) -> dict:
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        return json.loads(self.process.stdout.readline())

    def run(self, command: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
        process = _WarmProcess(self, command, env)
        reply = self.ask({"op": "run", **process.request, "timeout": timeout})
        stdout, stderr = process.outputs()
        if reply["timed_out"]:
            raise subprocess.TimeoutExpired(command, timeout, output=stdout, stderr=stderr)
        return subprocess.CompletedProcess(command, reply["returncode"], stdout, stderr)

    def start(self, command: list[str], env: dict[str, str]) -> "_WarmProcess":
        return _WarmProcess(self, command, env).launch()


class _WarmProcess:
    """A run forked by the warm-start process, seen through the `subprocess.Popen` calls the
    tests use. Its output goes to files, read once it has ended."""

    def __init__(self, warm: _WarmStarts, command: list[str], env: dict[str, str]):
        self.warm, self.args, self.returncode, self.pid = warm, command, None, None
        self._outputs: tuple[str, str] | None = None
        self.folder = Path(tempfile.mkdtemp(prefix="xitt-run-"))
        self.request = {"argv": command[1:], "env": env, "cwd": str(REPO),
                        "stdout": str(self.folder / "stdout"), "stderr": str(self.folder / "stderr")}

    def launch(self) -> "_WarmProcess":
        self.pid = self.warm.ask({"op": "start", **self.request})["pid"]
        return self

    def outputs(self) -> tuple[str, str]:
        """Its stdout and stderr (the files removed once read)."""
        if self._outputs is None:
            self._outputs = tuple((self.folder / name).read_text(errors="replace") if (self.folder / name).exists()
                                  else "" for name in ("stdout", "stderr"))
            shutil.rmtree(self.folder, ignore_errors=True)
        return self._outputs

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = self.warm.ask({"op": "poll", "pid": self.pid})["returncode"]
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(self.args, timeout)
            time.sleep(0.05)
        return self.returncode

    def communicate(self, timeout: float | None = None) -> tuple[str, str]:
        self.wait(timeout)
        return self.outputs()

    def send_signal(self, signal_number: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, signal_number)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def compose(*overrides: str):
    """The real composed config of `python train.py <overrides>` (Hydra's compose API)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    import xitt.core.naming  # noqa: F401  (registers the config resolvers)
    from xitt import CONF_DIR

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return hydra_compose(config_name="train", overrides=with_test_precision(overrides))


# The README's demo grid (`make grid`, two seeds), its target stage cut from 20 epochs to 6
# (that stage is two thirds of the grid's time; nothing here depends on how well it trains):
# one run serves every test that needs a finished grid (records, re-runs, failing cells, the
# report, the notebook, re-evaluation, kills). They all live in tests/test_report.py: `make
# test` runs the suite on two workers with `--dist loadfile`, so one module keeps them on one
# worker and the grid is trained once.
DEMO_TARGET_EPOCHS = "target.hparams.epochs=6"
DEMO_GRID = ["model=tiny", "size=s,m", "itt=none,demo", "seed=1,2", DEMO_TARGET_EPOCHS]


@pytest.fixture(scope="session")
def demo_grid(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("demo_grid")
    result = run_script("train.py", "-m", *DEMO_GRID, "logger=csv", f"paths.root={root}", timeout=1200)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert "8 cells: 8 run, 0 skipped (already done), 0 failed" in result.stdout
    return root

