"""Experiment loggers: one run per stage job, grouped by sweep, tagged with the cell's axes."""

from pathlib import Path
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig
from pytorch_lightning.loggers import Logger, WandbLogger


def stage_logger(logger_cfg: DictConfig, *, cell_name: str, stage: str, group: str,
                 tags: list[str], config: dict[str, Any]) -> Logger | bool:
    """The configured logger for one stage, or False for `logger=none`."""
    if not logger_cfg or "_target_" not in logger_cfg:
        return False
    factory = instantiate(logger_cfg)
    if factory.func is WandbLogger:
        Path(factory.keywords["save_dir"]).mkdir(parents=True, exist_ok=True)
        return factory(name=f"{cell_name}/{stage}", group=group, job_type=stage, tags=tags, config=config)
    return factory(name=cell_name, version=stage)


def finish_logger() -> None:
    """Close the stage's W&B run (if one was started), so the next stage gets its own."""
    import wandb

    if wandb.run is not None:
        wandb.finish()
