"""Experiment loggers: one run per stage job, grouped by sweep, tagged with the cell's axes."""

from pathlib import Path
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig
from pytorch_lightning.loggers import Logger, WandbLogger


def stage_logger(logger_cfg: DictConfig, *, cell_name: str, stage: str, group: str,
                 tags: list[str], config: dict[str, Any], folder: str, version: str) -> Logger | bool:
    """The configured logger for one stage, or False for `logger=none`. A W&B run is new each
    time; a file logger (CSV, TensorBoard) writes to `<save_dir>/<folder>/<version>`, which
    the caller makes unique to what the stage builds (a file logger empties its folder)."""
    if not logger_cfg or "_target_" not in logger_cfg:
        return False
    factory = instantiate(logger_cfg)
    if factory.func is WandbLogger:
        save_dir = sweep_wandb_dir() or factory.keywords["save_dir"]
        Path(save_dir).mkdir(parents=True, exist_ok=True)
        return factory(name=f"{cell_name}/{stage}", group=group, job_type=stage, tags=tags, config=config,
                       save_dir=str(save_dir))
    return factory(name=folder, version=version)


def sweep_wandb_dir() -> Path | None:
    """`<sweep dir>/wandb` for a job of a multirun, so that a sweep's offline runs stay
    with its results (and `wandb sync <sweep dir>/wandb/offline-run-*` uploads one sweep);
    None for a single run, which logs under `paths.wandb`."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        return Path(HydraConfig.get().sweep.dir) / "wandb"
    return None


def finish_logger() -> None:
    """Close the stage's W&B run (if one was started), so the next stage gets its own."""
    import wandb

    if wandb.run is not None:
        wandb.finish()
