"""What kind of job this process runs: one answer each, read by every layer above."""

import os
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
