"""The demo grid with the artifact store vs the naive pipeline.

Measured: `python train.py -m model=tiny size=s,m,l itt=none,demo` from an empty output
root (6 cells, each evaluated on the demo's 4 languages): its wall time, and from the
store's `events.jsonl` and each artifact's `meta.json` what it trained: the optimizer
steps and build seconds of every ITT and target model. Then the same grid again (all
stored: nothing trains).

Derived, not run (running it would take about four times the grid): the naive pipeline,
where every (cell, language) point of the study is a job of its own that trains its own
ITT model and target model, reusing nothing (the README: "a zero-shot target model is
trained once and evaluated on every language" is what the store saves). Which models each
point needs comes from the cells' own stage lists (`Cell.stages([lang])`), their steps
and seconds from the store's records of those same models:
  - naive optimizer steps: the sum over points of the steps of the models each needs (exact);
  - naive wall: the store's wall + the build seconds of every model trained again + the
    tokenizer trained again per point: a lower bound, since each naive job would also
    re-tokenise its data and start its own process.
The naive pipeline per grid cell (each of the 6 cells a job with its own ITT and target
model) is shown too: in this grid no two cells share an ITT or target model, so it trains
what the store trains (only the tokenizer and the tokenised data are shared).

    python benchmarks/grid.py [--quick]
"""

import itertools
import json
import sys
from pathlib import Path

from common import Row, compose, rows_main, timed, train_py

SIZES, ITTS = ("s", "m", "l"), ("none", "demo")
QUICK_SIZES = ("s",)


def store_builds(store: Path) -> dict[tuple[str, str], dict]:
    """Every artifact built, by (kind, key): its build seconds and optimizer steps."""
    builds = {}
    for line in (store / "events.jsonl").read_text().splitlines():
        event = json.loads(line)
        meta = json.loads((store / event["kind"] / event["key"] / "meta.json").read_text())
        builds[event["kind"], event["key"]] = {"build_s": float(event["build_s"]),
                                               "steps": int((meta.get("metrics") or {}).get("steps") or 0)}
    return builds


def needed_models(sizes: tuple[str, ...], root: Path) -> dict[tuple[str, str], list[list[tuple[str, str]]]]:
    """For each cell (size, itt), the trained models (kind, key) of each of its languages'
    stages, from the composed configs as train.py composes them."""
    from xitt.core.cell import Cell

    needs = {}
    for size, itt in itertools.product(sizes, ITTS):
        cell = Cell.from_config(compose("model=tiny", f"size={size}", f"itt={itt}", f"paths.root={root}"))
        needs[size, itt] = [[(stage.store, stage.key) for stage in cell.stages([lang]) if stage.trains]
                            for lang in cell.eval_langs]
    return needs


def rows(root: Path, quick: bool) -> list[Row]:
    sizes = QUICK_SIZES if quick else SIZES
    grid = ["model=tiny", f"size={','.join(sizes)}", f"itt={','.join(ITTS)}"]
    command = train_py("-m", *grid, f"paths.root={root}")
    wall, _ = timed(command)
    again, _ = timed(command)
    builds = store_builds(root / "store")
    trained = {key: build for key, build in builds.items() if key[0] in ("itt", "target")}
    steps = sum(build["steps"] for build in trained.values())
    train_s = sum(build["build_s"] for build in trained.values())
    tokenizer_s = sum(build["build_s"] for key, build in builds.items() if key[0] == "tokenizer")

    needs = needed_models(sizes, root)
    missing = {model for langs in needs.values() for models in langs for model in models} - set(trained)
    if missing:
        raise RuntimeError(f"the grid did not build {missing}: the cells' stage lists and the store disagree")
    points = [models for langs in needs.values() for models in langs]  # one per (cell, language)
    naive_steps = sum(trained[model]["steps"] for models in points for model in models)
    naive_wall = (wall + sum(trained[model]["build_s"] for models in points for model in models) - train_s
                  + (len(points) - 1) * tokenizer_s)
    per_cell = [sorted({model for models in langs for model in models}) for langs in needs.values()]
    per_cell_steps = sum(trained[model]["steps"] for models in per_cell for model in models)
    itt = sum(kind == "itt" for kind, _ in trained)
    name = f"demo grid {' '.join(grid[1:])}"
    return [
        Row(f"{name}: with the store ({len(needs)} cells)",
            f"wall {wall:.1f} s; {itt} ITT + {len(trained) - itt} target models, {steps:,} steps, "
            f"{train_s:.1f} s in training builds"),
        Row(f"  naive per (cell, language), {len(points)} jobs: steps / store's",
            f"{naive_steps:,} steps (derived, exact)", naive_steps / steps, ">= 3"),
        Row("  naive per (cell, language): wall / store's",
            f"{naive_wall:.0f} s (derived, a lower bound)", naive_wall / wall, ">= 3"),
        Row(f"  naive per grid cell, {len(per_cell)} jobs: steps / store's",
            f"{per_cell_steps:,} steps: no two cells share a model here", per_cell_steps / steps),
        Row("  the same grid again (all stored): wall / first run", f"{again:.1f} s vs {wall:.1f} s",
            again / wall),
    ]


def main() -> None:
    rows_main(__doc__, rows)


if __name__ == "__main__":
    sys.exit(main())
