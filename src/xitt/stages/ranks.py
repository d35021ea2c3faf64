"""Who this process is in a multi-process job (DDP, FSDP, DeepSpeed), and the few collective
steps a cell needs outside Lightning's own `fit` and `test`.

A cell is more than one `trainer.fit`: it looks in the artifact store, maybe trains an ITT
encoder, maybe a target model, then evaluates. Every rank must make the same calls in the
same order, or the ranks meet in different collectives and hang. So the ranks agree on
rank 0's view of the store (`broadcast`), and only rank 0 writes files while the others
wait for them (`barrier`). That needs the process group before the first stage, so the
cell starts it itself, through the trainer's own strategy: the same launcher, cluster
environment and backend that `fit` would use, which then finds the group already there.

Where the ranks come from:

- SLURM (`launcher=slurm`, `tasks_per_node = trainer.devices`): `srun` starts one process
  per rank; Lightning's SLURMEnvironment reads SLURM_PROCID.
- A single local run (`python train.py trainer=ddp`): Lightning's subprocess launcher
  starts ranks 1..N-1 by running the same command again; its Hydra support passes them
  the run directory (`hydra.run.dir`) and `hydra.output_subdir=null`.
- A local multirun (`-m`) cannot do that: the children would re-run the whole sweep. It
  is refused with the way out (SLURM, or one single run per cell).
"""

import logging
import subprocess
from typing import TYPE_CHECKING, Any

from xitt import XittError

if TYPE_CHECKING:  # kept light: the artifact store imports this module
    import pytorch_lightning as pl

log = logging.getLogger(__name__)
CHILD_EXIT_WAIT_S = 300


def is_global_zero() -> bool:
    """Rank 0 of the job (also in a process that has not joined a process group yet:
    Lightning reads RANK / LOCAL_RANK / SLURM_PROCID from the environment at import)."""
    from lightning_fabric.utilities.rank_zero import rank_zero_only

    return getattr(rank_zero_only, "rank", 0) == 0


def _in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


class Ranks:
    """The ranks of one job. With one process every method is a no-op."""

    def __init__(self, strategy: Any = None):
        self.strategy = strategy

    @property
    def world_size(self) -> int:
        return self.strategy.world_size if self.strategy is not None else 1

    @property
    def global_rank(self) -> int:
        return self.strategy.global_rank if self.strategy is not None else 0

    @property
    def is_zero(self) -> bool:
        return self.global_rank == 0

    @classmethod
    def start(cls, trainer: "pl.Trainer") -> "Ranks":
        """Join (or, for a local run, create) the job's processes and their process group,
        using the strategy of `trainer` (a trainer built from the cell's `trainer` config)."""
        from pytorch_lightning.strategies.launchers.subprocess_script import _SubprocessScriptLauncher

        strategy = trainer.strategy
        processes = getattr(strategy, "num_processes", 1) * getattr(strategy, "num_nodes", 1)
        if processes <= 1:
            return cls()
        launcher = strategy.launcher
        environment = strategy.cluster_environment
        if not isinstance(launcher, _SubprocessScriptLauncher):
            raise XittError(
                f"The trainer's strategy {type(strategy).__name__} starts its processes with "
                f"{type(launcher).__name__}, which runs only the training function in each process; "
                f"xitt's cells need every rank to run the whole cell. Use `strategy: ddp` (the "
                f"default of `trainer=ddp`), not ddp_spawn or ddp_fork."
            )
        if not environment.creates_processes_externally and _in_multirun():
            raise XittError(
                f"A local multirun (`-m`) cannot use {processes} processes per cell: Lightning would "
                f"start the extra ranks by running the whole multirun command again. Run the grid "
                f"with `launcher=slurm` (SLURM starts one task per rank), or run each cell as a "
                f"single run (`python train.py trainer=ddp <the cell's overrides>`), or use one "
                f"process per cell (`trainer=cpu` / `trainer=gpu`)."
            )
        launcher.launch(strategy.setup_environment)
        ranks = cls(strategy)
        log.info("Rank %d of %d joined the job's process group (%s).", ranks.global_rank, ranks.world_size,
                 type(environment).__name__)
        return ranks

    def broadcast(self, value: Any) -> Any:
        """Rank 0's `value`, on every rank."""
        return self.strategy.broadcast(value, src=0) if self.strategy is not None else value

    def barrier(self, name: str | None = None) -> None:
        if self.strategy is not None:
            self.strategy.barrier(name)

    def finish(self) -> None:
        """End of the cell: wait for all ranks, and in a local run let rank 0 wait for the
        processes it started, so the command returns when the whole job is done."""
        if self.strategy is None:
            return
        self.barrier("cell end")
        for child in getattr(self.strategy.launcher, "procs", []):
            try:
                child.wait(timeout=CHILD_EXIT_WAIT_S)
            except subprocess.TimeoutExpired:
                log.warning("Rank process %d did not exit %d s after the cell ended; stopping it.",
                            child.pid, CHILD_EXIT_WAIT_S)
                child.kill()
