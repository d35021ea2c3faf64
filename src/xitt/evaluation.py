"""What `evaluate.py` does: build the report of one or more grids, evaluate a stored target
model on more languages (its records join the results of the cell it belongs to), or score
the encoder of a stored ITT or target model with a retrieval task (`target=<retrieval task>`)."""

import json
from pathlib import Path

from omegaconf import DictConfig, OmegaConf, open_dict

from xitt import CONF_DIR, XittError
from xitt.core.store import META_FILE

RETRIEVAL_TARGETS = "`target=xnli_nearest`, `xnli_mining`, `tatoeba`, `bucc18` or `demo_retrieval`"


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
    """Score a stored model on the languages of `target_lang` (all by default): without
    `target=`, a target model on its own target task (its records join its cell's results);
    with `target=<retrieval task>`, the encoder of an ITT or target model on that task."""
    if cfg.get("target") is not None:
        return score_encoder(cfg)
    target_dir = Path(cfg.ckpt)
    meta = _artifact_meta(target_dir, "a stored target model", "<paths.root>/store/target/")
    if meta.get("kind") != "target" or "cell_config" not in meta["config"]:
        raise XittError(f"{target_dir} is a '{meta.get('kind')}' artifact, not a target model; pass a folder "
                        f"under <paths.root>/store/target/. To score the encoder of an ITT or target model "
                        f"with a retrieval task (one that trains nothing), add `target=<retrieval task>` "
                        f"({RETRIEVAL_TARGETS}).")
    from transformers import AutoTokenizer  # torch: only once the folder is a target model

    from xitt.core.cell import Stage
    from xitt.core.records import format_scores, read_records
    from xitt.stages.pipeline import CellRunner

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


def score_encoder(cfg: DictConfig) -> list[dict]:
    """`evaluate.py ckpt=<store>/{itt,target}/<key> target=<retrieval task>`: score the stored
    model's encoder with a task that trains nothing, in the cell rebuilt from the artifact's
    meta.json with the retrieval task as its target (and its seed, model, ITT, trainer kept).

    An ITT model gives exactly the cell `python train.py` with its settings and this target
    gives (the same key, results folder and records). A target model's encoder is scored in a
    cell of its own: its config's `scored_model` names the model (stage, key, the task it was
    fine-tuned on, transfer, training languages), which goes into the cell key, the cell name
    (`..._demo_retrieval-of-target-demo_...`), each record (`scored_model`, `target_key`,
    `train_lang`) and the store keys of its embeddings; a report keeps it a setting apart."""
    from xitt.core.cell import Cell
    from xitt.core.records import format_scores, read_records
    from xitt.tasktypes import task_type

    task = OmegaConf.to_container(cfg.target, resolve=True)
    unit = task_type(task)
    if unit.trains:
        raise XittError(
            f"`target={task['name']}` is a {unit.name} task: it trains a target model of its own, and "
            f"`evaluate.py ckpt=... target=...` only takes a retrieval task (a task that trains nothing and "
            f"scores the encoder it is given: {RETRIEVAL_TARGETS}). To score a stored target model on "
            f"the task it was trained on, drop `target=`: `python evaluate.py ckpt=<store>/target/<key> "
            f"[target_lang.langs=[...]]`; to fine-tune a model on {task['name']}, run `python train.py "
            f"itt=<ITT task> target={task['name']}`. Nothing was evaluated or written.")
    model_dir = Path(cfg.ckpt)
    where = "<paths.root>/store/itt/ or <paths.root>/store/target/"
    meta = _artifact_meta(model_dir, "a stored model", where)
    kind, built = meta.get("kind"), meta.get("config") or {}
    if kind not in ("itt", "target") or "cell_config" not in built:
        raise XittError(f"{model_dir} is a '{kind}' artifact, not a stored ITT or target model, so it has no "
                        f"encoder to score; pass a folder under {where} written by `python train.py`.")
    key = meta.get("key") or model_dir.name
    cell_cfg = OmegaConf.create(built["cell_config"])
    with open_dict(cell_cfg):
        cell_cfg.target = cfg.target
        cell_cfg.target_lang = cfg.target_lang
        cell_cfg.paths = cfg.paths
        cell_cfg.logger = cfg.logger
        cell_cfg.pop("scored_model", None)
        if unit.transfer_modes is not None and cell_cfg.transfer.mode not in unit.transfer_modes:
            # the transfer of the artifact's cell (few-shot, ...) is no setting of this task:
            # the task's own, as `transfer=<mode>` composes it, from the same training language
            transfer = OmegaConf.load(CONF_DIR / "transfer" / f"{unit.transfer_modes[0]}.yaml")
            transfer.train_lang = cell_cfg.transfer.train_lang
            cell_cfg.transfer = transfer
        if kind == "target":
            cell_cfg.scored_model = {"stage": built["stage"], "key": key, "task": built["task"]["name"],
                                     "transfer": built["transfer"], "train_langs": list(built["train_langs"])}
    cell = Cell.from_config(cell_cfg)  # every setting checked before torch loads
    if kind == "itt" and cell.itt_key != key:
        raise XittError(
            f"{model_dir} is the ITT model {key}, but the settings in its meta.json now give the key "
            f"{cell.itt_key}: its model or training data changed since it was trained (a local file edited, "
            f"moved or copied elsewhere), or another xitt version wrote it. Its scores would be recorded for a "
            f"model they do not belong to, so nothing was evaluated. `python train.py` with its settings and "
            f"`target={task['name']}` trains and scores the ITT model those settings give now.")
    from transformers import AutoTokenizer

    from xitt.stages.pipeline import CellRunner

    runner = CellRunner(cell_cfg)
    (stage,) = [stage for stage in runner.cell.stages() if not stage.trains]
    runner.check_data([stage])
    runner.evaluate(stage, AutoTokenizer.from_pretrained(model_dir), model_dir=model_dir)
    records = read_records(runner.results_dir, runner.cell.eval_langs)
    print(format_scores(records))
    print(f"Records of {runner.cell.name} written to {runner.results_dir}")
    return records


def _artifact_meta(folder: Path, what: str, where: str) -> dict:
    meta_path = folder / META_FILE
    if not meta_path.is_file():
        raise XittError(f"{folder} is not {what} (no meta.json). Pass a folder under {where} written by "
                        f"`python train.py`.")
    return json.loads(meta_path.read_text())
