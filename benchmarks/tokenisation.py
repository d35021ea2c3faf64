"""Tokenisation, cold vs warm: the time a cell spends getting its tokenised data through
`TaskDataModule` (its target stage's training set and its evaluation's test sets, the two
DataModules the pipeline builds) with an empty cache (read the files, tokenise, save)
and with the cache that run filled (load it).

A first cold pass in another cache folder is not timed: it pays the one-off costs of the
process (pyarrow, the tokenizer's first call, datasets' fingerprinting code), which are
not tokenisation and which a warm run in a fresh process pays too.

    python benchmarks/tokenisation.py --workload e5
"""

import time
from pathlib import Path

from common import compose, measurement_main, workload_overrides


def run(payload: dict) -> dict:
    from xitt.data.tokenizer import load_tokenizer
    from xitt.stages.pipeline import CellRunner, quiet_libraries

    root = Path(payload["root"])
    overrides = workload_overrides(payload["workload"], payload["quick"])
    quiet_libraries()
    first = CellRunner(compose(*overrides, "logger=none", f"paths.root={root}"))
    tokenizer = load_tokenizer(first.cell.model, first.store)  # the tiny models' is trained once, here

    def prepare(name: str) -> tuple[float, int, int]:
        """Both DataModules of the cell, as `CellRunner.datamodule` builds them, with the
        cache of the output root `name`: seconds, rows and splits."""
        runner = CellRunner(compose(*overrides, "logger=none", f"paths.root={root / name}"))
        stages = runner.cell.stages()
        target = next(stage for stage in stages if stage.name == "target")
        evaluate = next(stage for stage in stages if stage.name == "evaluate")
        started = time.perf_counter()
        train = runner.datamodule(target.task, tokenizer, train_langs=target.train_langs)
        train.prepare_data()
        train.setup("fit")
        test = runner.datamodule(evaluate.task, tokenizer, eval_langs=evaluate.eval_langs)
        test.prepare_data()
        test.setup("predict")
        seconds = time.perf_counter() - started
        rows = len(train.train_set) + sum(len(test_set) for test_set in test.test_sets)
        return seconds, rows, len(target.train_langs) + len(evaluate.eval_langs)

    prepare("untimed")
    cold, rows, splits = prepare("cell")
    warm, _, _ = prepare("cell")
    return {"cold_s": cold, "warm_s": warm, "rows": rows, "splits": splits}


def main() -> None:
    measurement_main(__doc__, run)


if __name__ == "__main__":
    main()
