"""Expand a sweep's overrides into its cells exactly as `python train.py -m ...` would.

Tools that act on a grid without training it (`python -m xitt.plan` costs it,
`python -m xitt.prepare` fills the caches it needs) must see the same cells as the real
multirun, or they plan and prepare for a different grid. So this module does what Hydra's
multirun does, with Hydra's own parts: the sweep syntax (`a=1,2`, `range(...)`, `glob(...)`)
is parsed by Hydra's override parser and multiplied out by the basic sweeper, the sweep
parameters that an experiment config declares under `hydra.sweeper.params` are merged in
first (the command line wins), and each cell is composed from `conf/train.yaml` by Hydra's
config loader, the same composition a multirun job gets.

    from xitt.grid_expand import expand_grid
    for overrides, cfg in expand_grid(["model=tiny", "size=s,m", "itt=none,demo"]):
        ...
"""

from pathlib import Path

from omegaconf import DictConfig, OmegaConf, open_dict

from xitt import CONF_DIR, XittError
from xitt.compat import hydra_config_loader, hydra_sweep_jobs
from xitt.core import naming  # noqa: F401  (registers the config resolvers the configs use)

CONFIG_NAME = "train"


def _compose(loader, overrides: list[str], run_mode) -> DictConfig:
    from hydra.errors import HydraException

    try:
        return loader.load_configuration(config_name=CONFIG_NAME, overrides=list(overrides),
                                         run_mode=run_mode, from_shell=True)
    except HydraException as error:
        raise XittError(f"The overrides {' '.join(overrides) or '(none)'} do not compose into a config: "
                        f"{error}. They are read as on the `python train.py -m` command line; "
                        f"`python train.py --help` lists the config groups and their options.") from None


def expand_grid(overrides: list[str], config_dir: Path = CONF_DIR) -> list[tuple[list[str], DictConfig]]:
    """The grid's cells, in the order a multirun launches them: for each, its own overrides
    (as its Hydra job gets them, `hydra.*` ones excluded) and its composed config (the
    `hydra` node removed, as the task function sees it). `config_dir` is the project's
    `conf/` unless a test points it at a copy."""
    from hydra.types import RunMode

    loader, hydra_overrides, jobs = _sweep(overrides, config_dir)
    cells = []
    for job_overrides in jobs:
        cfg = _compose(loader, hydra_overrides + list(job_overrides), RunMode.RUN)
        with open_dict(cfg):
            del cfg["hydra"]
        OmegaConf.set_readonly(cfg, False)
        cells.append((list(job_overrides), cfg))
    return cells


def sweep_jobs(overrides: list[str], config_dir: Path = CONF_DIR) -> list[list[str]]:
    """The grid's cells as `expand_grid` lists them, their overrides only: one composition in
    all (the multirun's master config, for the experiment's sweep parameters) instead of one
    per cell, for counting a large grid."""
    return [list(job) for job in _sweep(overrides, config_dir)[2]]


def _sweep(overrides: list[str], config_dir: Path) -> tuple:
    """(Hydra's config loader, the `hydra.*` overrides, each cell's own overrides)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.types import RunMode

    loader = hydra_config_loader(Path(config_dir))
    parser = OverridesParser.create(config_loader=loader)
    parsed = parser.parse_overrides(list(overrides))
    hydra_overrides = [o.input_line for o in parsed if o.is_hydra_override()]
    task_overrides = [o.input_line for o in parsed if not o.is_hydra_override()]

    # The multirun's master config: sweep overrides are skipped, which is how Hydra reads
    # the experiment's `hydra.sweeper` settings before it multiplies anything out.
    master = _compose(loader, hydra_overrides + task_overrides, RunMode.MULTIRUN)
    sweeper = master.hydra.sweeper
    if not str(sweeper.get("_target_", "")).endswith("BasicSweeper"):
        raise XittError(f"The sweeper {sweeper._target_} is not Hydra's basic sweeper: its cells are chosen "
                        f"while it runs, so they cannot be listed beforehand. Plan and prepare with the "
                        f"basic sweeper's `a=1,2` syntax instead.")
    declared = [f"{key}={value}" for key, value in (sweeper.get("params") or {}).items()]
    return loader, hydra_overrides, hydra_sweep_jobs(parser.parse_overrides(declared + task_overrides))
