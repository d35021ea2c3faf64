"""Evaluation throughput: xitt's evaluate stage (`CellRunner.evaluate`: Lightning's predict
loop over every language's test set, sorted by length, gathered, scored, one record per
language) vs a plain inference loop over the same sorted test sets, batches, collator,
model and precision.

The model is the cell's pretrained encoder with a fresh head, saved as the target stage
saves it: the weights do not change the speed. The tokenised cache is filled first (the
tokenisation row measures that); one untimed batch warms the kernels for both loops.

    python benchmarks/evaluation.py --workload e5
"""

import time
from pathlib import Path

from common import compose, match_pipeline_threads, measurement_main, workload_overrides


def run(payload: dict) -> dict:
    match_pipeline_threads()
    import pytorch_lightning as pl
    import torch
    from torch.utils.data import DataLoader

    from xitt.data.tokenizer import load_tokenizer
    from xitt.stages.pipeline import CellRunner, quiet_libraries, save_trained

    precision = payload["precision"]
    overrides = [*workload_overrides(payload["workload"], payload["quick"]), f"trainer.precision={precision}",
                 "logger=none", "trainer.enable_progress_bar=false", f"paths.root={payload['root']}"]
    if payload["quick"]:
        overrides.append("+target.test_sample={n: 32, seed: 1}")
    runner = CellRunner(compose(*overrides))
    quiet_libraries()
    tokenizer = load_tokenizer(runner.cell.model, runner.store)
    stages = runner.cell.stages()
    target = next(stage for stage in stages if stage.name == "target")
    evaluate = next(stage for stage in stages if stage.name == "evaluate")

    pl.seed_everything(runner.cell.seed, verbose=False)
    model_dir = Path(payload["root"]) / "model"
    save_trained(model_dir, runner.module_for(target, tokenizer, None), tokenizer, None, with_head=True)
    data = runner.datamodule(evaluate.task, tokenizer, eval_langs=evaluate.eval_langs)
    data.prepare_data()
    data.setup("predict")
    module = runner.module_for(evaluate, tokenizer, model_dir).eval()
    bf16 = precision.startswith("bf16")
    batch_size = data.eval_batch_size

    def plain_predict(test_sets, limit=None) -> int:
        done = 0
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            for test_set in test_sets:
                for batch in DataLoader(test_set, batch_size=batch_size, collate_fn=data.collate):
                    module.logits(batch).argmax(dim=-1).tolist()
                    done += len(batch["labels"])
                    if limit and done >= limit:
                        return done
        return done

    plain_predict(data.test_sets[:1], limit=1)  # warm-up: the longest batch of the first language

    # xitt: the evaluate stage as the pipeline runs it; a callback times its predict loop.
    loop: dict[str, float] = {}

    class PredictTimer(pl.Callback):
        def on_predict_start(self, *args):
            loop["start"] = time.perf_counter()

        def on_predict_end(self, *args):
            loop["end"] = time.perf_counter()

    runner.callbacks.append(PredictTimer())
    started = time.perf_counter()
    records = runner.evaluate(evaluate, tokenizer, model_dir)
    stage_s = time.perf_counter() - started
    examples = sum(record["n"] for record in records.values())

    started = time.perf_counter()
    plain_examples = plain_predict(data.test_sets)
    plain_s = time.perf_counter() - started
    if plain_examples != examples:
        raise RuntimeError(f"plain loop scored {plain_examples} examples, xitt {examples}")
    return {"languages": len(records), "examples": examples, "precision": precision,
            "xitt_stage_s": stage_s, "xitt_predict_s": loop["end"] - loop["start"], "plain_s": plain_s,
            "xitt_stage_per_s": examples / stage_s, "xitt_predict_per_s": examples / (loop["end"] - loop["start"]),
            "plain_per_s": examples / plain_s, "threads": torch.get_num_threads()}


def main() -> None:
    measurement_main(__doc__, run, precision=True)


if __name__ == "__main__":
    main()
