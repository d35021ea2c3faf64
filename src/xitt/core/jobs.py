"""What kind of job this process runs: one answer each, read by every layer above."""

import functools
import json
import os
import sys
from collections.abc import Mapping
from typing import Any

GPU_ACCELERATORS = ("gpu", "cuda")
# The variables Lightning reads a process's global rank from, in its order
# (lightning_fabric.utilities.rank_zero._get_rank), read here without importing torch.
RANK_VARIABLES = ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK")


def in_multirun() -> bool:
    """Whether this process runs a job of a Hydra multirun (`-m`)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def is_global_zero() -> bool:
    """Rank 0 of the job, also in a process that has not joined a process group yet."""
    for name in RANK_VARIABLES:
        if os.environ.get(name) is not None:
            return int(os.environ[name]) == 0
    return True


def uses_gpu(trainer: Mapping[str, Any]) -> bool:
    """Whether a `trainer` config trains on GPUs (what SLURM requests and the memory check use)."""
    return str(trainer.get("accelerator")) in GPU_ACCELERATORS


def cpu_allocation() -> int:
    """The CPUs this job may use: SLURM's allocation per task when there is one, else the
    process's affinity mask (what `taskset`, cgroups or a container allow), else all."""
    slurm = os.environ.get("SLURM_CPUS_PER_TASK")
    if slurm and slurm.isdigit():
        return int(slurm)
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


# Spins of an idle GNU OpenMP thread before it sleeps (libgomp's default: 300,000).
OPENMP_SPIN_COUNT = 10_000


def set_math_threads(processes_per_node: int = 1, dataloader_workers: int = 0) -> int:
    """Give each process of the job its share of the job's CPUs as math threads (less one
    per DataLoader worker), unless the user set OMP_NUM_THREADS. Without this every process
    starts one thread per core of the machine, and processes sharing a node slow each other
    down many times over. Idle OpenMP threads spin briefly before they sleep
    (`GOMP_SPINCOUNT`, GNU OpenMP's, which torch's Linux builds use; unless the user set it):
    a passive wait policy (no spinning) cost a third of the training speed on an Intel Xeon,
    and the default spinning made two jobs sharing its cores 6.8x slower than one alone; a
    short spin costs nothing measurable alone and keeps two such jobs at 2.0x
    (docs/performance.md). Called before torch is imported where possible (the variables
    are read at its start)."""
    share = max(1, (cpu_allocation() - max(0, dataloader_workers)) // max(1, processes_per_node))
    threads = int(os.environ.get("OMP_NUM_THREADS") or share)
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    if "OMP_WAIT_POLICY" not in os.environ:  # a policy the user chose wins over the spin count
        os.environ.setdefault("GOMP_SPINCOUNT", str(OPENMP_SPIN_COUNT))
    if "torch" in sys.modules:  # already started: tell it directly
        sys.modules["torch"].set_num_threads(threads)
    return threads


# The CPU trainer's precision is the same on every machine, so that one command computes the
# same artifact keys everywhere and a study run on two machines can be pooled: whether
# bfloat16 autocast is faster depends on the CPU, not on its flags (1.8x faster on an AMD
# EPYC, 0.7x on an Intel Xeon, both with AVX512-BF16). `make bench` measures it and keeps the
# figures per CPU model; `precision_hint` tells a user who would be faster with the other one.
CPU_PRECISION = "32-true"
OTHER_CPU_PRECISION = "bf16-mixed"
# CPU flags (/proc/cpuinfo) of native bfloat16 arithmetic: x86's AVX512-BF16 and AMX, Arm's BF16.
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")
# Where `make bench` keeps what it measured of each precision, per CPU model.
PRECISION_MEASUREMENTS = "precision-speed.json"
# A precision is suggested when it trained at least this much faster: smaller differences
# are within a shared machine's round-to-round noise.
HINT_MIN_SPEEDUP = 1.1


@functools.cache
def _cpuinfo() -> tuple[str, frozenset[str]]:
    """The CPU's model name and flags, read once, without starting torch."""
    model, flags = "unknown CPU", set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                name, _, value = line.partition(":")
                name = name.strip().lower()
                if name in ("flags", "features"):
                    flags.update(value.split())
                elif name == "model name" and model == "unknown CPU":
                    model = value.strip()
    except OSError:
        pass
    return model, frozenset(flags)


def cpu_model() -> str:
    return _cpuinfo()[0]


def has_native_bf16() -> bool:
    return bool(_cpuinfo()[1] & set(BF16_CPU_FLAGS))


def cache_dir() -> str:
    """xitt's per-user cache: `XITT_CACHE`, else `<XDG_CACHE_HOME or ~/.cache>/xitt`."""
    return os.environ.get("XITT_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "xitt")


def measurements_path() -> str:
    return os.path.join(cache_dir(), PRECISION_MEASUREMENTS)


def measured_precision_speeds() -> dict[str, Any] | None:
    """What `make bench` measured on this CPU model: examples/s per precision, the workload
    and the date; None when it has not run here."""
    try:
        with open(measurements_path(), encoding="utf-8") as file:
            return json.load(file).get(cpu_model())
    except (OSError, ValueError, AttributeError):
        return None


def precision_hint(trainer: Mapping[str, Any]) -> str | None:
    """One line for a CPU run whose precision is slower here than the other one, with the
    numbers `make bench` measured on this CPU model; or, where nothing was measured and the
    CPU has native bfloat16, how to find out. None when there is nothing to say."""
    if uses_gpu(trainer) or str(trainer.get("accelerator")) != "cpu":
        return None
    chosen = str(trainer.get("precision"))
    if chosen not in (CPU_PRECISION, OTHER_CPU_PRECISION):
        return None
    other = OTHER_CPU_PRECISION if chosen == CPU_PRECISION else CPU_PRECISION
    speeds = measured_precision_speeds()
    if speeds is None or chosen not in speeds.get("examples_per_s", {}) or other not in speeds["examples_per_s"]:
        if chosen == CPU_PRECISION and has_native_bf16():
            return (f"hint: this CPU ({cpu_model()}) computes bfloat16 natively; `make bench` measures whether "
                    f"`trainer.precision={other}` trains faster here (it did on some CPUs, not on others).")
        return None
    rates = speeds["examples_per_s"]
    speedup = rates[other] / rates[chosen]
    if speedup < HINT_MIN_SPEEDUP:
        return None
    return (f"hint: on this CPU ({cpu_model()}) `make bench` measured {other} training at {rates[other]:.1f} "
            f"examples/s vs {rates[chosen]:.1f} for {chosen} ({speedup:.2f}x; {speeds.get('workload', '')}, "
            f"{speeds.get('measured', '')}): add `trainer.precision={other}` to train faster (its artifacts "
            f"get other keys than {chosen}'s).")
