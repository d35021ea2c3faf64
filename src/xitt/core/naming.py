"""Folder names made from config values: safe on every file system, deterministic (the
same command finds the same folders), and never able to leave the folder they are made in.
Also the config resolvers that name a sweep and its job folders."""

import hashlib
import os
import re
from typing import Any

from omegaconf import DictConfig, OmegaConf

from xitt.core.jobs import uses_gpu
from xitt.core.keys import training_label

# Overrides that choose how a grid runs, not which cells it has: kept out of sweep names.
MACHINERY = ("launcher", "logger", "hydra", "paths")
SWEEP_ENV = "XITT_SWEEP_NAME"


def safe_name(text: str, limit: int = 120) -> str:
    """A file-system-safe, deterministic folder name: runs of other characters become `-`,
    and no name is `.` or `..` or starts with a dot; long ones end in a hash."""
    name = re.sub(r"[^A-Za-z0-9=,._+-]+", "-", text).strip("-").lstrip(".") or "default"
    if len(name) > limit:
        name = name[: limit - 13] + "-" + hashlib.sha256(text.encode()).hexdigest()[:12]
    return name


def sweep_name(overrides: list[str]) -> str:
    """The sweep's folder: its command-line overrides, so the same command finds it again."""
    kept = sorted(o for o in overrides if o.split("=")[0].lstrip("+~").split(".")[0].split("/")[0] not in MACHINERY)
    return safe_name("_".join(kept))


def job_dirname(override_dirname: str, trainer: Any) -> str:
    """A job's folder: its overrides, plus the weight-shaping trainer settings that differ
    from `trainer=cpu`'s (`xitt.core.keys.training_label`) and are not among the overrides
    already. They are part of every artifact key, but the `trainer` group stays out of the
    overrides' part of the name as machinery, so a `trainer=cpu,gpu` sweep, or an experiment
    that sets a precision, would otherwise put two different cells in one folder."""
    name = str(override_dirname)
    trainer = OmegaConf.to_container(trainer, resolve=True) if OmegaConf.is_config(trainer) else trainer
    for setting in filter(None, training_label(trainer).split(",")):
        if f"{setting.split('=')[0]}=" not in name:
            name = f"{name},{setting}" if name else setting
    return safe_name(name)


def _current_sweep_name(*, _root_: DictConfig) -> str:
    """Named once, in the process that launches the grid, from the grid's own overrides,
    and kept in the environment: each job re-composes its config from its own overrides
    (in this process, or on a SLURM node, which inherits the environment), and must still
    land in the same sweep folder."""
    if SWEEP_ENV not in os.environ:
        os.environ[SWEEP_ENV] = sweep_name(list(_root_.hydra.overrides.task))
    return os.environ[SWEEP_ENV]


OmegaConf.register_new_resolver("xitt_sweep_name", _current_sweep_name, replace=True)
OmegaConf.register_new_resolver("xitt_job_dirname", job_dirname, replace=True)
# SLURM asks for GPUs only for GPU trainers (`launcher=slurm trainer=cpu` must not request one).
OmegaConf.register_new_resolver(
    "xitt_gpus_per_node", lambda accelerator, devices: devices if uses_gpu({"accelerator": accelerator}) else None,
    replace=True)
