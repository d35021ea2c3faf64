"""A whole target stage, as `train.py` runs it, against the same work done by a plain
script and by transformers' Trainer: the loop's time per epoch and the stage's fixed
overhead, separated by running each at two epoch counts (1 and 2).

    per epoch = (T(2 epochs) - T(1 epoch)) / 1        the loop alone, epoch boundaries included
    overhead  = T(1 epoch) - per epoch                what a stage costs besides its loop

- xitt: `CellRunner.train` on the cell's target stage in a fresh store: load the tokenizer
  and the pretrained encoder, tokenise (cold cache), set up Lightning, train, save the
  artifact (safetensors + meta.json). Its overhead is split at the first training step and
  at the end of training: before (load, tokenise, Lightning set-up), after (save).
- plain: a script a user would write: load the model, tokenise the training rows with the
  tokenizer, the plain loop of training.py, save the weights with safetensors.
- Trainer: the Trainer of training.py on the rows tokenised as plain's, then `save_model`.

Every framework trains the same model from the same weights on the same rows (no validation,
no development hold-out) at the same precision. The loop-only examples/s of xitt at each
precision is what `make bench` keeps for the precision hint (`xitt.core.jobs`).

    python benchmarks/stage.py --workload e5 --precision 32-true
"""

import time
from pathlib import Path

from common import compose, match_pipeline_threads, measurement_main, workload_overrides

EPOCHS = (1, 2)


def run(payload: dict) -> dict:
    match_pipeline_threads()  # before torch starts: the same threads for every framework
    import torch

    from xitt.stages.pipeline import quiet_libraries

    quiet_libraries()
    root = Path(payload["root"])
    precision = payload["precision"]
    frameworks = payload.get("frameworks", ["plain", "xitt", "trainer"])
    result = {"precision": precision, "threads": torch.get_num_threads()}
    for framework in frameworks:
        timings = {}
        for epochs in EPOCHS:
            overrides = [*workload_overrides(payload["workload"], payload["quick"]), f"trainer.precision={precision}",
                         f"target.hparams.epochs={epochs}", "logger=none", "trainer.enable_progress_bar=false",
                         f"paths.root={root / f'{framework}-{epochs}'}"]
            timings[epochs] = {"xitt": stage_xitt, "plain": stage_plain, "trainer": stage_trainer}[framework](overrides)
        one, two = timings[EPOCHS[0]], timings[EPOCHS[1]]
        per_epoch = (two["seconds"] - one["seconds"]) / (EPOCHS[1] - EPOCHS[0])
        result[framework] = {"seconds": {str(e): t["seconds"] for e, t in timings.items()},
                             "examples": one["examples"], "epoch_s": per_epoch,
                             "loop_examples_per_s": one["examples"] / per_epoch,
                             "stage_examples_per_s": one["examples"] / one["seconds"],
                             "overhead_s": one["seconds"] - per_epoch,
                             **{k: v for k, v in one.items() if k.endswith("_s") and k != "seconds"}}
    return result


def stage_xitt(overrides: list[str]) -> dict:
    import pytorch_lightning as pl

    from xitt.data.tokenizer import load_tokenizer
    from xitt.stages.pipeline import CellRunner

    marks = {}

    class Marks(pl.Callback):
        def on_train_batch_start(self, *args):
            marks.setdefault("first_step", time.perf_counter())

        def on_train_end(self, *args):
            marks["trained"] = time.perf_counter()

    started = time.perf_counter()
    runner = CellRunner(compose(*overrides), callbacks=[Marks()])
    stage = next(stage for stage in runner.cell.stages() if stage.name == "target")
    runner.train(stage, load_tokenizer(runner.cell.model, runner.store))
    ended = time.perf_counter()
    return {"seconds": ended - started, "examples": _train_rows(stage),
            "before_first_step_s": marks["first_step"] - started, "after_training_s": ended - marks["trained"]}


def _train_rows(stage) -> int:
    from xitt.data.tasks import load_split

    return sum(len(load_split(stage.task, lang, stage.task["train_split"])) for lang in stage.train_langs)


def plain_inputs(overrides: list[str]):
    """What a plain script starts from: the model (xitt's head on the pretrained encoder,
    so that every framework trains the same weights), the tokenizer, and the training rows
    tokenised by the tokenizer itself."""
    import datasets
    import pytorch_lightning as pl
    from transformers import DataCollatorWithPadding

    from xitt.data.tasks import load_split
    from xitt.data.tokenizer import load_tokenizer
    from xitt.stages.pipeline import CellRunner

    runner = CellRunner(compose(*overrides))
    stage = next(stage for stage in runner.cell.stages() if stage.name == "target")
    pl.seed_everything(runner.cell.seed, verbose=False)
    tokenizer = load_tokenizer(runner.cell.model, runner.store)  # a hub id or folder (tiny: built once)
    module = runner.module_for(stage, tokenizer, None)
    rows = datasets.concatenate_datasets([load_split(stage.task, lang, stage.task["train_split"])
                                          for lang in stage.train_langs])
    encoded = tokenizer(list(rows["text"]), truncation=True, max_length=int(stage.hparams["max_length"]))
    dataset = datasets.Dataset.from_dict({**encoded, "labels": list(rows["label"])})
    collate = DataCollatorWithPadding(tokenizer)
    return runner, stage, module, dataset, collate


def stage_plain(overrides: list[str], trainer: bool = False) -> dict:
    """The plain script (or, with `trainer`, the same around transformers' Trainer)."""
    from safetensors.torch import save_file

    from training import train_plain, train_with_trainer

    started = time.perf_counter()
    runner, stage, module, dataset, collate = plain_inputs(overrides)
    train = train_with_trainer if trainer else train_plain
    train(dataset=dataset, collate=collate, module=module, hparams=stage.hparams,
          bf16=runner.cell.training["precision"].startswith("bf16"), seed=runner.cell.seed, step_times=[])
    out = Path(runner.cfg.paths.root) / "plain"
    out.mkdir(parents=True, exist_ok=True)
    save_file({name: tensor.contiguous() for name, tensor in module.state_dict().items()}, str(out / "model.safetensors"))
    return {"seconds": time.perf_counter() - started, "examples": len(dataset)}


def stage_trainer(overrides: list[str]) -> dict:
    return stage_plain(overrides, trainer=True)


if __name__ == "__main__":
    measurement_main(__doc__, run, precision=True)
