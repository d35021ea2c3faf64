"""What `evaluate.py` does: build the report of one or more grids, or evaluate a stored
target model on more languages (its records join the results of the cell it belongs to)."""

import json
from pathlib import Path

from omegaconf import DictConfig, OmegaConf, open_dict

from xitt import XittError


def path_arguments(argv: list[str], keys: tuple[str, ...] = ("report", "out", "ckpt")) -> list[str]:
    """Quote folder arguments for Hydra, whose override grammar would read the `=` and `,`
    of a sweep folder's name (`multirun/itt=none,demo_size=s,m`) as syntax; and merge
    `report=a report=b` (the natural way to name two sweeps) into one list."""
    passed = {key: [arg.split("=", 1)[1] for arg in argv[1:] if arg.startswith(f"{key}=")] for key in keys}
    others = [arg for arg in argv[1:] if not arg.startswith(tuple(f"{key}=" for key in keys))]
    quoted = []
    for key, values in passed.items():
        values = ["'" + value.replace("'", "\\'") + "'" for value in values]
        if len(values) == 1:
            quoted.append(f"{key}={values[0]}")
        elif values:
            quoted.append(f"{key}=[{','.join(values)}]")
    return [argv[0], *others, *quoted]


def report(cfg: DictConfig) -> dict:
    """The ITT-gain report of the given results or sweep folders."""
    from xitt.analysis import build_report
    from xitt.stages.loggers import finish_logger

    sources = [cfg.report] if isinstance(cfg.report, str) else list(cfg.report)
    out_dir = Path(cfg.out) if cfg.out else Path(sources[0]) / "report"
    run = None
    if cfg.logger and "_target_" in cfg.logger:
        import wandb

        settings = OmegaConf.to_container(cfg.logger, resolve=True)
        Path(settings["save_dir"]).mkdir(parents=True, exist_ok=True)
        run = wandb.init(project=settings.get("project", "xitt"), entity=settings.get("entity"),
                         mode=settings.get("mode", "offline"), dir=settings["save_dir"], job_type="report",
                         name=f"report-{Path(sources[0]).name}", config={"sources": sources})
    try:
        outputs = build_report(sources, out_dir, wandb_run=run, n_bootstrap=int(cfg.n_bootstrap),
                               include_flagged=bool(cfg.include_flagged))
    finally:
        finish_logger()
    print(f"Report of {', '.join(sources)} written to {out_dir}:")
    print((out_dir / "report.md").read_text().split("\n## ")[0])
    return outputs


def evaluate_checkpoint(cfg: DictConfig) -> list[dict]:
    """Score a stored target model on the languages of `target_lang` (all by default)."""
    from transformers import AutoTokenizer

    from xitt.core.cell import Stage
    from xitt.core.records import format_scores, read_records
    from xitt.stages.pipeline import CellRunner

    target_dir = Path(cfg.ckpt)
    meta_path = target_dir / "meta.json"
    if not meta_path.is_file():
        raise XittError(f"{target_dir} is not a stored target model (no meta.json). Pass a folder under "
                        f"<paths.root>/store/target/ written by `python train.py`.")
    meta = json.loads(meta_path.read_text())
    if meta.get("kind") != "target" or "cell_config" not in meta["config"]:
        raise XittError(f"{target_dir} is a '{meta.get('kind')}' artifact, not a target model; pass a folder "
                        f"under <paths.root>/store/target/.")
    cell_cfg = OmegaConf.create(meta["config"]["cell_config"])
    with open_dict(cell_cfg):
        cell_cfg.target_lang = cfg.target_lang
        cell_cfg.paths = cfg.paths
        cell_cfg.logger = cfg.logger
    runner = CellRunner(cell_cfg)
    cell = runner.cell
    stage = Stage("evaluate", "target", target_dir.name, ("target", target_dir.name), cell.target,
                  tuple(meta["config"]["train_langs"]), cell.freezing_for("target"), cell.transfer,
                  tuple(cell.eval_langs))
    runner.evaluate(stage, AutoTokenizer.from_pretrained(target_dir), model_dir=target_dir)
    records = read_records(runner.results_dir, cell.eval_langs)
    print(format_scores(records))
    return records
