"""Who this process is in a multi-process job (DDP, FSDP, DeepSpeed), and the few collective
steps a cell needs outside Lightning's own `fit` and `predict`.

A cell is more than one `trainer.fit`: it looks in the artifact store, maybe trains an ITT
encoder, maybe a target model, then evaluates. Every rank must make the same calls in the
same order, or the ranks meet in different collectives and hang. So the ranks agree on
rank 0's view of the store (`broadcast`), and only rank 0 writes files while the others
wait for them (`barrier`). The process group is started before the first stage through
the trainer's own strategy (`xitt.compat.start_ranks`), so `fit` finds it already there.

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
from typing import Any

log = logging.getLogger(__name__)
CHILD_EXIT_WAIT_S = 300


class Ranks:
    """The ranks of one job, over a started Lightning strategy. With one process (no
    strategy) every method is a no-op."""

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
