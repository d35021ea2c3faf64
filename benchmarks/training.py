"""Target-stage training throughput: xitt's own stage vs transformers' `Trainer` vs a plain
PyTorch loop, on the same model (the same weights), the same tokenised rows and collator,
the same precision, optimizer (fused AdamW, no decay on biases and norms), lr schedule
(linear warmup over 10% of the steps, then linear decay), gradient clipping (1.0), batch,
max length and epochs. One process per workload and precision (see common.py), in which
the frameworks take turns in rounds (plain, Trainer, xitt, plain, ...), the best round of
each counting: on a shared machine, noise only ever slows a run down.

- xitt: `CellRunner.fit` on the cell's target stage, as `train.py` runs it: the trainer
  built by `build_trainer` from the composed `trainer` config (progress bar, per-step loss
  logging, the resumable epoch-end checkpoint), `TaskDataModule`'s batches (shuffled,
  dynamic padding, not grouped by length). `xitt-lean` is the same without the progress
  bar and epoch checkpoints: where the difference goes.
- Trainer: transformers' at its best settings: dynamic padding (the same collator),
  length-grouped sampling (`train_sampling_strategy="group_by_length"`, transformers 5's
  spelling of `group_by_length=True`), its default fused AdamW, no checkpoints, no reporting.
- plain: a loop written here, the floor of overhead: length-grouped batches (random across
  groups, seeded), dynamic padding, fused AdamW, no logging.

Timing: a timestamp after every optimizer step; the first `warmup` steps are left out
(allocator, autocast caches, first-call dispatch) and the rest timed from the end of
step `warmup` to the end of the last step, epoch boundaries included. Examples and real
(non-pad) tokens are counted by a wrapper around the collator, in batch order.

    python benchmarks/training.py --frameworks plain,trainer,xitt --workload tiny --precision bf16-mixed
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from common import child_main, compose, match_pipeline_threads, workload_overrides

FRAMEWORKS = ("xitt", "xitt-lean", "trainer", "plain")
PRECISIONS = ("32-true", "bf16-mixed")


class CountingCollator:
    """The collator of every framework, wrapped to record each batch's examples, real
    tokens and padded tokens in the order the batches are built (num_workers=0: in process)."""

    def __init__(self, collate):
        self.collate = collate
        self.examples: list[int] = []
        self.tokens: list[int] = []
        self.padded: list[int] = []

    def __call__(self, features):
        batch = self.collate(features)
        mask = batch["attention_mask"]
        self.examples.append(int(mask.size(0)))
        self.tokens.append(int(mask.sum()))
        self.padded.append(int(mask.numel()))
        return batch


def first_linear_dtype(module):
    """Record the output dtype of the encoder's first linear layer at its first call: proof
    that autocast is on (bfloat16) or off (float32) in every framework."""
    import torch

    seen = {}
    linear = next(m for m in module.encoder.modules() if isinstance(m, torch.nn.Linear))

    def hook(_module, _inputs, output):
        seen.setdefault("dtype", str(output.dtype).replace("torch.", ""))

    linear.register_forward_hook(hook)
    return seen


def steady_state(step_times: list[float], counter: CountingCollator, warmup: int) -> dict:
    steps = len(step_times)
    if steps != len(counter.examples):
        raise RuntimeError(f"{steps} optimizer steps but {len(counter.examples)} batches collated")
    if steps <= warmup + 1:
        raise RuntimeError(f"only {steps} steps: too few to leave out {warmup} warm-up steps")
    seconds = step_times[-1] - step_times[warmup - 1]
    examples = sum(counter.examples[warmup:])
    tokens = sum(counter.tokens[warmup:])
    padded = sum(counter.padded[warmup:])
    return {"steps": steps, "timed_steps": steps - warmup, "seconds": seconds,
            "examples_per_s": examples / seconds, "tokens_per_s": tokens / seconds,
            "padding": 1 - tokens / padded}


def run(payload: dict) -> dict:
    """Every framework of `payload["frameworks"]` on one workload and precision, in
    `rounds` interleaved rounds (plain, Trainer, xitt, plain, ...): the best round of each,
    since on a shared machine noise only ever slows a run down."""
    match_pipeline_threads()  # before torch starts: the same threads for every framework
    import torch

    from xitt.data.tokenizer import load_tokenizer
    from xitt.stages.pipeline import CellRunner, quiet_libraries

    precision = payload["precision"]
    overrides = [*workload_overrides(payload["workload"], payload["quick"]), f"trainer.precision={precision}",
                 "logger=none", f"paths.root={payload['root']}"]
    runners = {"xitt": CellRunner(compose(*overrides)),
               # the same stage without the progress bar and the epoch-end checkpoints
               "xitt-lean": CellRunner(compose(*overrides, "trainer.enable_progress_bar=false",
                                               "trainer.checkpoint_every_n_epochs=0")),
               # the same stage with its encoder compiled (torch.compile, dynamic shapes)
               "xitt-compile": CellRunner(compose(*overrides, "trainer.compile=true"))}
    runner = runners["xitt"]
    quiet_libraries()
    tokenizer = load_tokenizer(runner.cell.model, runner.store)
    stage = next(stage for stage in runner.cell.stages() if stage.name == "target")
    data = runner.datamodule(stage.task, tokenizer, train_langs=stage.train_langs)
    data.prepare_data()  # the tokenised cache, filled once for every framework
    data.setup("fit")
    threads = torch.get_num_threads()
    best: dict[str, dict] = {}
    for _ in range(int(payload.get("rounds", 1))):
        for framework in payload["frameworks"]:
            result = run_once(framework, runners.get(framework, runner), stage, tokenizer, data, precision,
                              int(payload["warmup"]))
            if torch.get_num_threads() != threads:
                raise RuntimeError(f"{framework} changed the math threads from {threads} to {torch.get_num_threads()}")
            if framework not in best or result["examples_per_s"] > best[framework]["examples_per_s"]:
                best[framework] = result
    for result in best.values():
        result.update(threads=threads, rounds=int(payload.get("rounds", 1)))
    return best


def run_once(framework: str, runner, stage, tokenizer, data, precision: str, warmup: int) -> dict:
    import gc
    import shutil

    import pytorch_lightning as pl

    # As the stage's build does: seeded, then the model (the same weights in every run).
    pl.seed_everything(runner.cell.seed, workers=True, verbose=False)
    module = runner.module_for(stage, tokenizer, None)
    dtype = first_linear_dtype(module)
    step_times: list[float] = []
    counters: list[CountingCollator] = []
    checkpoint: dict[str, float] = {}
    if framework.startswith("xitt"):
        # A checkpoint left by an earlier run of the same stage would make this one resume.
        work_dir = runner.store.work_dir(stage.store, stage.key)
        shutil.rmtree(work_dir, ignore_errors=True)
        counters_for_stage(runner, counters)
        timer = step_timer(pl, step_times, checkpoint, Path(runner.cfg.paths.root) / "timed.ckpt")
        runner.callbacks.append(timer)
        try:
            runner.fit(stage, module, tokenizer)
        finally:
            runner.callbacks.remove(timer)
            del runner.datamodule  # back to the class's method
            shutil.rmtree(work_dir, ignore_errors=True)
    else:
        counters.append(CountingCollator(data.collate))
        train = train_with_trainer if framework == "trainer" else train_plain
        train(dataset=data.train_set, collate=counters[0], module=module, hparams=stage.hparams,
              bf16=precision.startswith("bf16"), seed=runner.cell.seed, step_times=step_times)
    result = steady_state(step_times, counters[0], warmup)
    per_epoch = result["steps"] // int(stage.hparams["epochs"])
    result.update(framework=framework, precision=precision, compute_dtype=dtype.get("dtype"),
                  epoch_s=per_epoch * result["seconds"] / result["timed_steps"],
                  checkpoint_s=checkpoint.get("seconds"), checkpoint_mb=checkpoint.get("mb"))
    del module
    gc.collect()
    return result


def counters_for_stage(runner, counters: list) -> None:
    """Wrap the collator of the DataModule that `CellRunner.fit` builds."""
    make_datamodule = runner.datamodule

    def datamodule(*args, **kwargs):
        data = make_datamodule(*args, **kwargs)
        data.collate = CountingCollator(data.collate)
        counters.append(data.collate)
        return data

    runner.datamodule = datamodule


def step_timer(pl, step_times: list[float], checkpoint: dict, checkpoint_path: Path):
    class StepTimer(pl.Callback):
        def on_train_batch_end(self, *args, **kwargs):
            step_times.append(time.perf_counter())

        def on_train_end(self, trainer, module):
            # After the timed steps: what one epoch-end checkpoint of the stage costs (the
            # call xitt.stages.resume.StageCheckpoints makes after every epoch but the last).
            started = time.perf_counter()
            trainer.save_checkpoint(checkpoint_path, weights_only=False)
            checkpoint["seconds"] = time.perf_counter() - started
            checkpoint["mb"] = checkpoint_path.stat().st_size / 1e6
            checkpoint_path.unlink()

    return StepTimer()


def decay_groups(module, weight_decay: float) -> list[dict]:
    """xitt's parameter groups: no weight decay on biases and norms (tensors of one dim)."""
    decay, no_decay = [], []
    for parameter in module.parameters():
        if parameter.requires_grad:
            (no_decay if parameter.ndim < 2 else decay).append(parameter)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def total_and_warmup_steps(size: int, hparams: dict) -> tuple[int, int]:
    """xitt's step count (every batch, the last one short) and warmup (int of the ratio)."""
    per_epoch = -(-size // int(hparams["batch_size"]))
    total = per_epoch * int(hparams["epochs"])
    return total, int(float(hparams["warmup_ratio"]) * total)


def length_grouped_batches(lengths: list[int], batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """A random permutation cut into mega-batches (at least 4, of at most 50 batches: the
    rule of transformers' LengthGroupedSampler, so that the plain loop pads as the Trainer
    does), each sorted by length and cut into batches; the batches are then shuffled, so
    that similar lengths pad little and the order stays random."""
    import torch

    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    order = torch.randperm(len(lengths), generator=generator).tolist()
    mega = max(1, min(len(lengths) // (4 * batch_size), 50)) * batch_size
    batches = []
    for start in range(0, len(order), mega):
        chunk = sorted(order[start:start + mega], key=lambda index: -lengths[index])
        batches += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
    shuffled = torch.randperm(len(batches), generator=generator).tolist()
    return [batches[i] for i in shuffled]


def train_plain(dataset, collate, module, hparams, bf16: bool, seed: int, step_times: list[float]) -> None:
    import torch
    from torch.utils.data import DataLoader
    from transformers import get_linear_schedule_with_warmup

    total, warmup = total_and_warmup_steps(len(dataset), hparams)
    optimizer = torch.optim.AdamW(decay_groups(module, float(hparams["weight_decay"])), lr=float(hparams["lr"]),
                                  fused=True)
    scheduler = get_linear_schedule_with_warmup(optimizer, warmup, total)
    parameters = [p for p in module.parameters() if p.requires_grad]
    lengths = [len(ids) for ids in dataset["input_ids"]]
    module.train()
    for epoch in range(int(hparams["epochs"])):
        batches = length_grouped_batches(lengths, int(hparams["batch_size"]), seed, epoch)
        for batch in DataLoader(dataset, batch_sampler=batches, collate_fn=collate):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = module.loss(module.logits(batch), batch["labels"])
            loss.backward()
            torch.nn.utils.clip_grad_norm_(parameters, 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step_times.append(time.perf_counter())


def train_with_trainer(dataset, collate, module, hparams, bf16: bool, seed: int, step_times: list[float]) -> None:
    import torch
    from transformers import Trainer, TrainerCallback, TrainingArguments

    class WithLoss(torch.nn.Module):
        """xitt's module (encoder + head) with the forward a `Trainer` expects."""

        def __init__(self, module):
            super().__init__()
            self.module = module

        def forward(self, input_ids, attention_mask, labels, token_type_ids=None):
            batch = {"input_ids": input_ids, "attention_mask": attention_mask}
            if token_type_ids is not None:
                batch["token_type_ids"] = token_type_ids
            logits = self.module.logits(batch)
            return {"loss": self.module.loss(logits, labels), "logits": logits}

    class StepTimer(TrainerCallback):
        def on_step_end(self, *args, **kwargs):
            step_times.append(time.perf_counter())

    total, warmup = total_and_warmup_steps(len(dataset), hparams)
    with tempfile.TemporaryDirectory() as out:
        arguments = TrainingArguments(
            output_dir=out, use_cpu=True, bf16=bf16, seed=seed,
            per_device_train_batch_size=int(hparams["batch_size"]), num_train_epochs=int(hparams["epochs"]),
            learning_rate=float(hparams["lr"]), weight_decay=float(hparams["weight_decay"]),
            lr_scheduler_type="linear", warmup_steps=warmup, max_grad_norm=1.0,
            train_sampling_strategy="group_by_length",  # = group_by_length=True before transformers 5
            save_strategy="no", report_to="none", logging_strategy="epoch", dataloader_num_workers=0,
        )
        trainer = Trainer(model=WithLoss(module), args=arguments, train_dataset=dataset, data_collator=collate,
                          callbacks=[StepTimer()])
        assert "fused" in str(getattr(arguments.optim, "value", arguments.optim)), arguments.optim  # default, torch >= 2.8
        trainer.train()
    if trainer.state.global_step != total:
        raise RuntimeError(f"Trainer ran {trainer.state.global_step} steps, xitt's schedule has {total}")


def main() -> None:
    if "--child" in sys.argv:
        child_main(run)
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frameworks", default="plain,trainer,xitt", help=f"of {', '.join(FRAMEWORKS)}")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--workload", choices=("tiny", "e5"), default="tiny")
    parser.add_argument("--precision", choices=PRECISIONS, default="32-true")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--quick", action="store_true")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as root:
        result = run({**vars(options), "frameworks": options.frameworks.split(","), "root": root})
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
