"""The private parts of Lightning and Hydra that xitt relies on, in one place.

Each function says what it needs that no public API gives. Checked against
pytorch-lightning 2.6 and hydra-core 1.3 (the ranges in pyproject.toml); when one of them
changes, this module is the one to update.
"""

import logging
from pathlib import Path
from typing import Any

from xitt import XittError

log = logging.getLogger(__name__)


# -- Lightning ---------------------------------------------------------------------------


def start_ranks(trainer: Any, multirun: bool) -> Any:
    """Join (or, for a local run, create) the job's processes and their process group with
    the strategy of `trainer`, before `fit`: a cell's store decisions are collective, and
    Lightning starts processes only inside `fit`/`predict`. Returns the started strategy,
    or None for a one-process job. Private: `_SubprocessScriptLauncher` is the launcher
    class that re-runs the script (the only one under which every rank runs the whole cell)."""
    from pytorch_lightning.strategies.launchers.subprocess_script import _SubprocessScriptLauncher

    strategy = trainer.strategy
    processes = getattr(strategy, "num_processes", 1) * getattr(strategy, "num_nodes", 1)
    if processes <= 1:
        return None
    if not isinstance(strategy.launcher, _SubprocessScriptLauncher):
        raise XittError(
            f"The trainer's strategy {type(strategy).__name__} starts its processes with "
            f"{type(strategy.launcher).__name__}, which runs only the training function in each process; "
            f"xitt's cells need every rank to run the whole cell. Use `strategy: ddp` (the "
            f"default of `trainer=ddp`), not ddp_spawn or ddp_fork."
        )
    if not strategy.cluster_environment.creates_processes_externally and multirun:
        raise XittError(
            f"A local multirun (`-m`) cannot use {processes} processes per cell: Lightning would "
            f"start the extra ranks by running the whole multirun command again. Run the grid "
            f"with `launcher=slurm` (SLURM starts one task per rank), or run each cell as a "
            f"single run (`python train.py trainer=ddp <the cell's overrides>`), or use one "
            f"process per cell (`trainer=cpu` / `trainer=gpu`)."
        )
    strategy.launcher.launch(strategy.setup_environment)
    log.info("Rank %d of %d joined the job's process group (%s).", strategy.global_rank, strategy.world_size,
             type(strategy.cluster_environment).__name__)
    return strategy


def fsdp_full_state_dict(strategy: Any) -> dict[str, Any]:
    """The whole (unsharded) weights of an FSDP module on rank 0, whatever state-dict type
    the strategy checkpoints with. Private: `_state_dict_type` is the strategy's switch
    between sharded and full state dicts (its constructor argument `state_dict_type`)."""
    sharded, strategy._state_dict_type = strategy._state_dict_type, "full"
    try:
        return strategy.lightning_module_state_dict()
    finally:
        strategy._state_dict_type = sharded


# -- Hydra -------------------------------------------------------------------------------


def hydra_config_loader(config_dir: Path) -> Any:
    """Hydra's config loader over a config folder, without touching Hydra's global state
    (so that it also works inside a running Hydra app). Private: the public `compose`
    needs `initialize`, which is global and refused inside a running app."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra._internal.utils import create_config_search_path

    return ConfigLoaderImpl(config_search_path=create_config_search_path(str(config_dir)))


def hydra_sweep_jobs(parsed_overrides: list[Any]) -> list[list[str]]:
    """The jobs of a sweep, multiplied out by Hydra's basic sweeper, in launch order.
    Private: the basic sweeper's `split_arguments` is how a multirun expands `a=1,2`."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

    return [list(job) for job in BasicSweeper.split_arguments(parsed_overrides, max_batch_size=None)[0]]
