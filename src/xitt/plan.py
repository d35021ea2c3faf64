"""Plan a grid before spending on it: its cells, the artifacts they need and share, what the
store already holds, the jobs that will run, and the GPU-hours they will take.

    python -m xitt.plan model=xlmr size=base,large,xl itt=none,mnli target=xnli seed=1,2,3
    python -m xitt.plan --json ...          # the same, machine-readable
    python -m xitt.plan --gpu h100 ...      # GPU-hours on another GPU (see xitt.memory)
    python -m xitt.plan --power-from docs/results/selection_sentiment ...   # and its power

The arguments are the multirun's overrides, expanded exactly as `python train.py -m` expands
them (`xitt.grid_expand`). Nothing is trained. GPU-hours come from the number of training
examples (counted from the data when the cache or files hold them), the epochs, and the
planner's throughput model (`xitt.memory`: FLOPs per token at a stated utilisation, or
measured examples/s where known); they are per GPU, so DDP over N GPUs takes 1/N the wall
time for the same GPU-hours. Memory per GPU is checked for every stage to train.

With `--power-from <report folder>` (a report of the same setting: what `python evaluate.py
report=...` wrote), the plan also says what the grid could detect: for each ITT cell's
model size, from the variances that report measured for its gain over all languages (its
gains.csv), the minimum detectable effect with the planned number of seeds (80% power, a
two-sided test at 0.05) and the seeds that would detect a gain of 2 F1 points, as the
report's own answer says them (`xitt.analysis.stats`). The test sets are taken to be the
report's: more seeds shrink only the seed part of the noise.
"""

import json
import math
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xitt import XittError
from xitt.core.cell import Cell
from xitt.core.records import cell_results_dir, pending_langs
from xitt.core.store import ArtifactStore
from xitt.data.tasks import load_split
from xitt.grid_expand import expand_grid
from xitt.memory import DEFAULT_GPU, GPU_PEAK_TFLOPS, architecture, stage_estimate, training_examples_per_s

EVAL_COST_SHARE = 1 / 3  # a forward pass is about a third of a training step's FLOPs


@dataclass
class Artifact:
    """One ITT or target model the grid needs (possibly shared by several cells)."""

    kind: str
    key: str
    task: dict[str, Any]
    train_langs: list[str]
    epochs: int
    stored: bool
    cells: list[str] = field(default_factory=list)
    examples: int | None = None
    gpu_hours: float | None = None
    memory: dict[str, Any] | None = None


class _ExampleCounter:
    """Training-set sizes, read once per (task, language, split); None when the data is
    not on this machine yet (run `python -m xitt.prepare` first for exact numbers)."""

    def __init__(self) -> None:
        self.sizes: dict[tuple[str, str, str], int | None] = {}
        self.missing: set[str] = set()

    def __call__(self, task: dict[str, Any], langs: list[str]) -> int | None:
        total = 0
        for lang in langs:
            key = (json.dumps(task, sort_keys=True, default=str), lang, task["train_split"])
            if key not in self.sizes:
                try:
                    self.sizes[key] = len(load_split(task, lang, task["train_split"]))
                except Exception as error:  # offline and not prepared, or files elsewhere
                    self.sizes[key] = None
                    self.missing.add(f"{task['name']} {lang} {task['train_split']} ({type(error).__name__})")
            if self.sizes[key] is None:
                return None
            total += self.sizes[key]
        return total


def plan_grid(overrides: list[str], gpu: str = DEFAULT_GPU, power_from: str | Path | None = None) -> dict[str, Any]:
    """The plan of the grid `python train.py -m <overrides>` would run, as a dict; with
    `power_from` (a report folder or its gains.csv), also what it could detect (`power`)."""
    if gpu not in GPU_PEAK_TFLOPS:
        raise XittError(f"Unknown GPU '{gpu}' for the estimate; the planner knows {', '.join(GPU_PEAK_TFLOPS)}.")
    count_examples = _ExampleCounter()
    artifacts: dict[tuple[str, str], Artifact] = {}
    cells, naive_hours, eval_hours, warnings = [], 0.0, 0.0, []
    comparisons: dict[tuple, set[int]] = defaultdict(set)  # ITT cell's gain setting -> planned seeds
    seen: set[str] = set()  # cell keys: a cell whose seed does not matter is one cell for every seed
    for cell_overrides, cfg in expand_grid(overrides):
        cell = Cell.from_config(cfg)
        repeat = cell.cell_key in seen
        seen.add(cell.cell_key)
        if cell.itt is not None:
            comparisons[_gain_setting(cell)].add(cell.seed)
        store = ArtifactStore(cfg.paths.store)
        arch = architecture(cell.model)
        pending = pending_langs(cell, cell_results_dir(cfg.paths.results, cell))
        cell_artifacts = []
        for stage in cell.stages():
            if not stage.trains:
                continue
            kind, key, task = stage.store, stage.key, stage.task
            artifact = artifacts.get((kind, key))
            if artifact is None:
                artifact = Artifact(kind, key, task, list(stage.train_langs), int(stage.hparams["epochs"]),
                                    store.has(kind, key))
                artifact.examples = count_examples(task, list(stage.train_langs))
                seq_len = int(stage.hparams["max_length"])
                if artifact.examples is not None:
                    per_s = training_examples_per_s(arch, seq_len, gpu, (cell.model["family"], str(cell.model["size"])))
                    artifact.gpu_hours = artifact.examples * artifact.epochs / per_s / 3600
                estimate = stage_estimate(cfg, cell.model, stage)
                artifact.memory = estimate.as_dict()
                if not estimate.fits:
                    warnings.append(f"{kind} {key} ({cell.name}): needs about {estimate.describe()}; it will not "
                                    f"fit. See docs/scaling.md for settings that do.")
                artifacts[(kind, key)] = artifact
            artifact.cells.append(cell.name)
            naive_hours += artifact.gpu_hours or 0.0
            cell_artifacts.append({"kind": kind, "key": key, "stored": artifact.stored})
        if pending and not repeat:
            test_examples = count_examples({**cell.target, "train_split": cell.target["test_split"]}, pending) or 0
            seq_len = int(cell.target["hparams"]["max_length"])
            per_s = training_examples_per_s(arch, seq_len, gpu, (cell.model["family"], str(cell.model["size"])))
            eval_hours += test_examples / (per_s / EVAL_COST_SHARE) / 3600
        cells.append({"name": cell.name, "overrides": cell_overrides, "cell_key": cell.cell_key,
                      "artifacts": cell_artifacts, "pending_langs": pending, "done_langs":
                      [lang for lang in cell.eval_langs if lang not in pending],
                      "will_run": bool(pending) and not repeat, "repeat": repeat, "params": arch.params})

    to_build = [a for a in artifacts.values() if not a.stored]
    build_hours = sum(a.gpu_hours or 0.0 for a in to_build)
    unknown = [f"{a.kind} {a.key}" for a in to_build if a.gpu_hours is None]
    by_kind = defaultdict(lambda: {"distinct": 0, "stored": 0, "to_build": 0})
    for artifact in artifacts.values():
        counts = by_kind[artifact.kind]
        counts["distinct"] += 1
        counts["stored" if artifact.stored else "to_build"] += 1
    power = {} if power_from is None else {"power_from": str(_gains_csv(power_from)),
                                           "power": plan_power(comparisons, power_from)}
    return {
        "overrides": overrides,
        "gpu": gpu,
        "cells": cells,
        "artifacts": [{"kind": a.kind, "key": a.key, "task": a.task["name"], "train_langs": a.train_langs,
                       "epochs": a.epochs, "stored": a.stored, "cells": a.cells, "examples": a.examples,
                       "gpu_hours": a.gpu_hours, "memory": a.memory} for a in artifacts.values()],
        "summary": {
            "cells": len(cells),
            "distinct_cells": len(seen),
            "jobs_to_run": sum(c["will_run"] for c in cells),
            "itt": dict(by_kind["itt"]),
            "target": dict(by_kind["target"]),
            "gpu_hours_to_build": build_hours,
            "gpu_hours_to_evaluate": eval_hours,
            "gpu_hours_without_reuse": naive_hours,
            "gpu_hours_saved_by_reuse": naive_hours - build_hours,
            "unknown_sizes": sorted(count_examples.missing),
            "unknown_artifacts": unknown,
        },
        "memory_warnings": warnings,
        **power,
    }


# What a gain is a gain of, in the columns of a report's gains.csv: its setting, size and ITT.
_GAIN_SETTING = ("model", "target", "transfer", "freezing", "train_lang", "selection", "size", "itt")
# Those that must agree with the report's row; the others must where both have a value (a
# report of records without model selection, or a plan of a transfer without one training
# language, leaves them empty).
_ALWAYS_MATCHED = ("model", "target", "transfer", "freezing", "size", "itt")


def _gain_setting(cell: Cell) -> tuple[str, ...]:
    """The values of `_GAIN_SETTING` that the records of this ITT cell will carry."""
    target_stage = next((stage for stage in cell.stages() if stage.trains and stage.store == "target"), None)
    zero_shot = cell.transfer["mode"] == "zero_shot"
    selected = target_stage is not None and target_stage.validates  # a retrieval target trains nothing
    return (cell.model["family"], cell.target["name"], cell.transfer["mode"], cell.freezing_name,
            cell.transfer["train_lang"] if zero_shot and target_stage is not None else "",
            target_stage.selection["mode"] if selected else "", str(cell.model["size"]), cell.itt_name)


def _gains_csv(report: str | Path) -> Path:
    path = Path(report)
    return path / "gains.csv" if path.is_dir() else path


def plan_power(comparisons: dict[tuple, set[int]], report: str | Path) -> list[dict[str, Any]]:
    """For each planned ITT gain (its `_GAIN_SETTING` values -> planned seeds): what the
    report's gain of the same setting over all languages says the planned seeds detect."""
    import pandas as pd

    from xitt.analysis.gains import OK, REFERENCE_GAIN
    from xitt.analysis.stats import MIN_SEEDS_FOR_CLAIM, minimum_detectable_effect, seeds_to_detect

    path = _gains_csv(report)
    if not path.is_file():
        raise XittError(f"--power-from {report}: found no gains.csv there. Give the folder of a report that "
                        f"`python evaluate.py report=<results>` wrote (or its gains.csv), of the same setting "
                        f"as the planned grid.")
    gains = pd.read_csv(path, dtype={key: str for key in _GAIN_SETTING})
    for key in set(_GAIN_SETTING) & set(gains.columns):
        gains[key] = gains[key].fillna("")
    if not {"seed_variance", "test_variance"} <= set(gains.columns):
        raise XittError(f"{path} has no `seed_variance` and `test_variance` columns: it was written before "
                        f"reports measured power. Write the report again from its results (`python evaluate.py "
                        f"report=<results> out={path.parent}`) and plan with that.")
    overall = gains[(gains["scope"] == "overall") & (gains["status"] == OK)]
    entries = []
    for setting, seeds in comparisons.items():
        planned = dict(zip(_GAIN_SETTING, setting))
        rows = overall
        for key, value in planned.items():
            if key not in rows:
                continue  # a report from before the column existed
            if key in _ALWAYS_MATCHED:
                rows = rows[rows[key] == value]
            elif value:
                rows = rows[rows[key].isin([value, ""])]
        entry = {**planned, "seeds": len(seeds)}
        if rows.empty:
            entries.append({**entry, "found": False})
            continue
        for row in rows.to_dict("records"):
            one_seed_variance = row["seed_variance"] * row["n_seeds"]  # the seed part scales as 1/seeds
            n_seeds = len(seeds)
            entries.append({
                **entry, "found": True, "selection": row.get("selection", "") or planned["selection"],
                "seed_level_claim": n_seeds >= MIN_SEEDS_FOR_CLAIM,
                "mde": (minimum_detectable_effect(one_seed_variance / n_seeds, n_seeds - 1, row["test_variance"])
                        if n_seeds >= 2 else math.nan),
                "seeds_for_2pt": seeds_to_detect(REFERENCE_GAIN, one_seed_variance, row["test_variance"]),
                "report": {"gain": row["gain"], "n_seeds": int(row["n_seeds"]), "mde": row["mde"],
                           "n_languages": int(row["n_languages"])}})
    return entries


def format_power(plan: dict[str, Any]) -> list[str]:
    """What the planned seeds detect, one line per ITT gain (see `plan_power`)."""
    from xitt.analysis.gains import REFERENCE_GAIN
    from xitt.analysis.report import format_mde
    from xitt.analysis.stats import MAX_SEEDS, MIN_SEEDS_FOR_CLAIM, POWER

    lines = ["", f"Power ({POWER:.0%}, two-sided 0.05), from the gains over all languages in {plan['power_from']}; "
                 "the test sets as in that report:"]
    for entry in plan["power"]:
        setting = (f"{entry['model']}-{entry['size']} itt={entry['itt']} on {entry['target']}, {entry['transfer']}, "
                   f"freezing {entry['freezing']}" + (f", selection {entry['selection']}" if entry["selection"] else ""))
        if not entry["found"]:
            lines.append(f"  {setting}: the report has no gain of this setting, so nothing is known of its noise.")
            continue
        seeds_for_2pt = entry["seeds_for_2pt"]
        needed = f"more than {MAX_SEEDS}" if math.isinf(seeds_for_2pt) else f"{seeds_for_2pt:.0f}"
        planned = entry["seeds"]
        detects = (f"{planned} seeds detect gains of {format_mde(entry['mde'])} F1 or more" if entry["seed_level_claim"] else
                   f"with {planned} seed{'s' if planned != 1 else ''} no seed-level claim can be made "
                   f"({MIN_SEEDS_FOR_CLAIM} or more are needed)")
        report = entry["report"]
        measured = f"{report['gain']:+.1f} with {report['n_seeds']} seeds"
        if report["n_seeds"] >= MIN_SEEDS_FOR_CLAIM and not math.isnan(report["mde"]):
            measured += f", which detect {format_mde(report['mde'])} or more"
        lines.append(f"  {setting}: {detects}; {needed} seeds would detect a gain of {REFERENCE_GAIN:g} "
                     f"(the report: {measured}, over {report['n_languages']} languages).")
    return lines


def format_plan(plan: dict[str, Any]) -> str:
    """The plan as a person reads it: one line per cell, then the totals."""
    summary = plan["summary"]
    stored = {(a["kind"], a["key"]): a for a in plan["artifacts"]}
    lines = [f"{'cell':<58}{'ITT':<20}{'target':<20}records"]
    for cell in plan["cells"]:
        parts = {"itt": "-", "target": []}
        for ref in cell["artifacts"]:
            artifact = stored[(ref["kind"], ref["key"])]
            state = "stored" if artifact["stored"] else f"x{len(artifact['cells'])}" if len(artifact["cells"]) > 1 else "new"
            text = f"{ref['key'][:8]} {state}"
            if ref["kind"] == "itt":
                parts["itt"] = text
            else:
                parts["target"].append(text)
        records = f"{len(cell['done_langs'])}/{len(cell['done_langs']) + len(cell['pending_langs'])} done"
        if cell["repeat"]:
            records = "the cell above (its seed does not matter)"
        lines.append(f"{cell['name']:<58}{parts['itt']:<20}{', '.join(parts['target']):<20}{records}")
    itt, target = summary["itt"], summary["target"]
    hours = lambda value: f"{value:,.2f}" if value >= 0.01 or value == 0 else f"{value:.2g}"  # noqa: E731
    lines += [
        "",
        f"{summary['cells']} cells; {summary['jobs_to_run']} will run, "
        f"{summary['distinct_cells'] - summary['jobs_to_run']} are done (skipped)"
        + (f", {summary['cells'] - summary['distinct_cells']} repeat a cell whose seed does not matter (a target "
           f"that trains nothing scoring a pretrained encoder: scored once, paired with every seed)."
           if summary["cells"] > summary["distinct_cells"] else "."),
        f"ITT artifacts: {itt.get('distinct', 0)} distinct, {itt.get('stored', 0)} in the store, "
        f"{itt.get('to_build', 0)} to train.",
        f"Target artifacts: {target.get('distinct', 0)} distinct, {target.get('stored', 0)} in the store, "
        f"{target.get('to_build', 0)} to train.",
        f"Estimated {plan['gpu'].upper()} GPU-hours{' (at least: some data sizes unknown)' if summary['unknown_sizes'] else ''}: "
        f"{hours(summary['gpu_hours_to_build'])} to train + "
        f"{hours(summary['gpu_hours_to_evaluate'])} to evaluate; without artifact reuse training would take "
        f"{hours(summary['gpu_hours_without_reuse'])} (reuse saves {hours(summary['gpu_hours_saved_by_reuse'])}).",
        "(GPU-hours from xitt.memory's throughput model; docs/scaling.md says how they are derived.)",
    ]
    if summary["unknown_sizes"]:
        lines.append("Not counted (data not on this machine; `python -m xitt.prepare` first): "
                     + "; ".join(summary["unknown_sizes"]))
    lines += [f"WARNING: {warning}" for warning in plan["memory_warnings"]]
    if "power" in plan:
        lines += format_power(plan)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    as_json = "--json" in args
    args = [a for a in args if a != "--json"]
    gpu = DEFAULT_GPU
    if "--gpu" in args:
        at = args.index("--gpu")
        if at + 1 >= len(args):
            raise SystemExit("xitt.plan: --gpu needs a value, e.g. --gpu h100")
        gpu = args[at + 1]
        del args[at:at + 2]
    power_from = None
    if "--power-from" in args:
        at = args.index("--power-from")
        if at + 1 >= len(args):
            raise SystemExit("xitt.plan: --power-from needs a report folder, e.g. --power-from "
                             "docs/results/selection_sentiment")
        power_from = args[at + 1]
        del args[at:at + 2]
    if any(a in ("-h", "--help") for a in args):
        print(__doc__)
        return 0
    if any(a in ("-m", "--multirun") for a in args):
        args = [a for a in args if a not in ("-m", "--multirun")]
    try:
        plan = plan_grid(args, gpu, power_from)
    except XittError as error:
        print(f"xitt.plan: {error}", file=sys.stderr)
        return 1
    print(json.dumps(plan, indent=2, default=str) if as_json else format_plan(plan))
    return 0


if __name__ == "__main__":
    sys.exit(main())
