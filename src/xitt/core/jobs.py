"""What kind of job this process runs: one answer each, read by every layer above."""

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


def set_math_threads(processes_per_node: int = 1, dataloader_workers: int = 0) -> int:
    """Give each process of the job its share of the job's CPUs as math threads (less one
    per DataLoader worker), unless the user set OMP_NUM_THREADS; and make idle OpenMP
    threads sleep instead of spinning. Without this every process starts one thread per
    core of the machine, and processes sharing a node slow each other down many times over.
    Called before torch is imported where possible (the variables are read at its start)."""
    share = max(1, (cpu_allocation() - max(0, dataloader_workers)) // max(1, processes_per_node))
    threads = int(os.environ.get("OMP_NUM_THREADS") or share)
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if "torch" in sys.modules:  # already started: tell it directly
        sys.modules["torch"].set_num_threads(threads)
    return threads


# CPU flags (/proc/cpuinfo) of native bfloat16 arithmetic: x86's AVX512-BF16 and AMX, Arm's BF16.
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")


def cpu_precision() -> str:
    """`bf16-mixed` where the CPU computes in bfloat16 natively, else `32-true` (read from
    the CPU's flags, without starting torch: configs compose before any model loads)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            flags = {flag for line in cpuinfo if line.lower().startswith(("flags", "features"))
                     for flag in line.split(":", 1)[1].split()}
    except OSError:
        return "32-true"
    return "bf16-mixed" if flags & set(BF16_CPU_FLAGS) else "32-true"
