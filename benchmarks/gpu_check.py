"""GPU check (issue 11, item 6): training throughput of XLM-R base and large shapes in bf16
on one GPU, xitt's Lightning stage vs a plain loop, with model FLOPs utilisation; DDP vs one
GPU where the machine has several; and one demo cell under `trainer=gpu` and one under
`trainer=fsdp trainer.devices=1` (paths that otherwise never run on a GPU). No downloads:
the encoders are random-init from `XLMRobertaConfig` (SDPA attention) and the batches are
synthetic token ids, every sequence exactly `seq` tokens (no padding). Under 5 minutes on
one H100.

    python benchmarks/gpu_check.py            # on a GPU machine
    python benchmarks/gpu_check.py --smoke    # anywhere (CPU): tiny shapes, a few steps, the
                                              # same code paths (DDP over 2 CPU processes, gloo)

- xitt: `SequenceClassifier` (the stage's module: head, fused AdamW, warmup/decay schedule)
  trained by `build_trainer` from the composed `trainer=gpu` config (bf16-mixed, gradient
  clipping, the progress bar), as the target stage trains it; `trainer=cpu` with
  `trainer.precision=bf16-mixed` under --smoke.
- plain: the same module's forward and loss in a loop: bf16 autocast, fused AdamW, the same
  schedule and clipping.
- MFU = 6 x non-embedding parameters x tokens / second / the GPU's dense bf16 peak
  (`xitt.memory.GPU_PEAK_TFLOPS`, found from the device name). 6N counts the matrix
  products of the forward and backward passes, not attention's (about 5% more at 128).
- Timing: `warmup` steps are left out; the window is closed by synchronising the device.
"""

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ENV, REPO, compose  # noqa: E402

SHAPES = {  # XLM-R base and large (conf/model/xlmr.yaml's checkpoints), as configs
    "xlmr-base": dict(vocab_size=250_002, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                      intermediate_size=3072),
    "xlmr-large": dict(vocab_size=250_002, hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                       intermediate_size=4096),
}
SMOKE_SHAPES = {"tiny": dict(vocab_size=1000, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                             intermediate_size=256)}
HPARAMS = {"lr": 2e-5, "weight_decay": 0.01, "warmup_ratio": 0.1, "dropout": 0.1}
NUM_LABELS = 3


def build_module(shape: dict, device: str, seed: int = 0):
    """xitt's classifier module around a random-init XLM-R encoder of `shape`."""
    import torch
    import transformers

    from xitt.tasktypes.classification.training import SequenceClassifier

    torch.manual_seed(seed)
    config = transformers.XLMRobertaConfig(**shape, max_position_embeddings=514, pad_token_id=1,
                                           attn_implementation="sdpa")
    with torch.device(device):  # initialised where it trains: a large encoder inits in seconds
        encoder = transformers.XLMRobertaModel(config)
        module = SequenceClassifier(encoder, NUM_LABELS, HPARAMS, "cls")
    return module


def non_embedding_params(module) -> int:
    embeddings = sum(p.numel() for p in module.encoder.embeddings.parameters())
    return sum(p.numel() for p in module.parameters()) - embeddings


def synthetic_loader(shape: dict, seq: int, batch: int, steps: int, seed: int = 0):
    """`steps` batches of random token ids, every row `seq` tokens, from the CPU as a
    DataLoader delivers them (the copy to the device is part of each step)."""
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    generator = torch.Generator().manual_seed(seed)
    rows = steps * batch
    ids = torch.randint(5, shape["vocab_size"], (rows, seq), generator=generator)
    ids[:, 0], ids[:, -1] = 0, 2  # <s> ... </s>
    data = TensorDataset(ids, torch.ones_like(ids), torch.randint(0, NUM_LABELS, (rows,), generator=generator))

    def collate(items):
        input_ids, mask, labels = (torch.stack(column) for column in zip(*items))
        return {"input_ids": input_ids, "attention_mask": mask, "labels": labels}

    return DataLoader(data, batch_size=batch, collate_fn=collate, pin_memory=torch.cuda.is_available())


def synchronise() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def run_xitt(shape, seq, batch, warmup, steps, device) -> float:
    """Seconds of the timed steps of xitt's stage: the stage's module and trainer."""
    import pytorch_lightning as pl

    from xitt.stages.pipeline import build_trainer, quiet_libraries

    quiet_libraries()
    marks: dict[str, float] = {}

    class Window(pl.Callback):
        def on_train_batch_end(self, trainer, *args):
            if trainer.global_step in (warmup, warmup + steps):
                synchronise()
                marks["start" if trainer.global_step == warmup else "end"] = time.perf_counter()

    overrides = ["trainer=gpu"] if device == "cuda" else ["trainer=cpu", "trainer.precision=bf16-mixed"]
    cfg = compose(*overrides, "logger=none")
    module = build_module(shape, device)
    trainer = build_trainer(cfg.trainer, max_steps=warmup + steps, logger=False, callbacks=[Window()])
    trainer.fit(module, train_dataloaders=synthetic_loader(shape, seq, batch, warmup + steps))
    del trainer, module
    return marks["end"] - marks["start"]


def plain_steps(module, loader, warmup: int, steps: int, device: str) -> float:
    """The plain loop over `loader`; seconds of its steps after `warmup`."""
    import torch
    from transformers import get_linear_schedule_with_warmup

    from xitt.tasktypes.classification.training import SequenceClassifier

    inner = module.module if isinstance(module, torch.nn.parallel.DistributedDataParallel) else module
    parameters = [p for p in module.parameters() if p.requires_grad]
    decay = [p for p in parameters if p.ndim >= 2]
    no_decay = [p for p in parameters if p.ndim < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": HPARAMS["weight_decay"]},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=HPARAMS["lr"], fused=True)
    total = warmup + steps
    scheduler = get_linear_schedule_with_warmup(optimizer, int(HPARAMS["warmup_ratio"] * total), total)
    assert isinstance(inner, SequenceClassifier)
    module.train()
    started = None
    for step, batch in enumerate(loader):
        if step == warmup:
            synchronise()
            started = time.perf_counter()
        batch = {key: value.to(device, non_blocking=True) for key, value in batch.items()}
        with torch.autocast(device, dtype=torch.bfloat16):
            # through the wrapper's forward (DDP's gradient hooks), then xitt's head and loss
            logits = module(batch["input_ids"], batch["attention_mask"])
            loss = inner.loss(logits, batch["labels"])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
    synchronise()
    return time.perf_counter() - started


def run_plain(shape, seq, batch, warmup, steps, device) -> float:
    module = build_module(shape, device)
    seconds = plain_steps(module, synthetic_loader(shape, seq, batch, warmup + steps), warmup, steps, device)
    del module
    return seconds


def free_memory() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def peak_tflops(device: str) -> tuple[str, float | None]:
    import torch

    from xitt.memory import GPU_PEAK_TFLOPS

    if device != "cuda":
        return "cpu", None
    name = torch.cuda.get_device_name(0)
    peak = next((tflops for key, tflops in GPU_PEAK_TFLOPS.items() if key in name.lower()), None)
    return name, peak


# -- DDP vs one device: plain loops, one process per device (torch.multiprocessing) --------

def ddp_worker(rank: int, world: int, shape: dict, seq: int, batch: int, warmup: int, steps: int, out: str):
    import torch
    import torch.distributed as dist

    cuda = torch.cuda.is_available()
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    dist.init_process_group("nccl" if cuda else "gloo", rank=rank, world_size=world)
    device = "cuda" if cuda else "cpu"
    if cuda:
        torch.cuda.set_device(rank)
    else:
        torch.set_num_threads(1)  # two processes on the smoke machine's cores
    module = build_module(shape, f"cuda:{rank}" if cuda else "cpu")
    model = torch.nn.parallel.DistributedDataParallel(module, device_ids=[rank] if cuda else None)
    loader = synthetic_loader(shape, seq, batch, warmup + steps, seed=rank)
    dist.barrier()
    seconds = plain_steps(model, loader, warmup, steps, device)
    timing = torch.tensor([seconds], device=device)
    dist.all_reduce(timing, op=dist.ReduceOp.MAX)  # the slowest rank sets the pace
    if rank == 0:
        Path(out).write_text(json.dumps({"seconds": float(timing)}))
    dist.destroy_process_group()


def run_ddp(world: int, shape, seq, batch_per_rank, warmup, steps) -> float:
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as probe:  # a free port for the process group
        probe.bind(("127.0.0.1", 0))
        os.environ["MASTER_PORT"] = str(probe.getsockname()[1])
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        mp.spawn(ddp_worker, args=(world, shape, seq, batch_per_rank, warmup, steps, out.name), nprocs=world)
        return json.loads(Path(out.name).read_text())["seconds"]


def demo_cells(smoke: bool) -> list[tuple[str, float, str]]:
    """One demo cell under each GPU trainer config, as a user runs it."""
    cells = [["trainer=gpu"], ["trainer=fsdp", "trainer.devices=1"]]
    if smoke:  # the CPU can run neither: check the command itself with the CPU trainer
        cells = [["trainer=cpu", "itt=none", "target.hparams.epochs=1"]]
    results = []
    for overrides in cells:
        with tempfile.TemporaryDirectory() as root:
            started = time.perf_counter()
            done = subprocess.run([sys.executable, str(REPO / "train.py"), *overrides, "logger=none",
                                   f"paths.root={root}"], cwd=REPO, env=ENV, capture_output=True, text=True)
            seconds = time.perf_counter() - started
            outcome = "ok" if done.returncode == 0 else f"FAILED ({done.returncode}): {done.stderr[-1500:]}"
            if done.returncode == 0:
                en = [line for line in done.stdout.splitlines() if line.startswith("en ")]
                outcome = f"ok, {en[0].split()[0]} F1 {en[0].split()[1]}" if en else "ok"
            results.append((" ".join(overrides), seconds, outcome))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny shapes and a few steps (runs on a CPU)")
    parser.add_argument("--batch", type=int, default=32, help="examples per step on one device")
    parser.add_argument("--no-cells", action="store_true", help="skip the two demo cells")
    parser.add_argument("--json", help="also write the results to this file")
    options = parser.parse_args()
    os.environ.update({key: ENV[key] for key in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "WANDB_MODE")})
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu" and not options.smoke:
        sys.exit("No GPU here: run with --smoke to check the code paths on the CPU.")
    shapes = SMOKE_SHAPES if options.smoke else SHAPES
    seqs = (32,) if options.smoke else (128, 256)
    batch = 4 if options.smoke else options.batch
    warmup, steps = (2, 3) if options.smoke else (10, 30)
    gpu, peak = peak_tflops(device)
    started = time.time()
    print(f"device: {gpu}; bf16 peak {peak or '-'} TFLOPS; torch {torch.__version__}; "
          f"{torch.cuda.device_count()} GPUs; batch {batch}; {steps} timed steps after {warmup}", flush=True)
    results = []
    header = f"{'model':<11}{'seq':>5}  {'loop':<6}{'examples/s':>11}{'tokens/s':>11}{'MFU':>7}{'xitt/plain':>12}"
    print(header)
    for name, shape in shapes.items():
        params = non_embedding_params(build_module(shape, "meta"))
        for seq in seqs:
            row = {"model": name, "seq": seq, "batch": batch, "non_embedding_params": params}
            for loop, run in (("plain", run_plain), ("xitt", run_xitt)):
                seconds = run(shape, seq, batch, warmup, steps, device)
                free_memory()
                tokens = steps * batch * seq / seconds
                mfu = 6 * params * tokens / (peak * 1e12) if peak else None
                row[loop] = {"examples_per_s": steps * batch / seconds, "tokens_per_s": tokens, "mfu": mfu}
            ratio = row["xitt"]["examples_per_s"] / row["plain"]["examples_per_s"]
            row["xitt_over_plain"] = ratio
            results.append(row)
            for loop in ("plain", "xitt"):
                r = row[loop]
                mfu = f"{r['mfu']:.1%}" if r["mfu"] is not None else "-"
                print(f"{name:<11}{seq:>5}  {loop:<6}{r['examples_per_s']:>11.1f}{r['tokens_per_s']:>11.0f}{mfu:>7}"
                      + (f"{ratio:>12.3f}" if loop == "xitt" else ""), flush=True)

    devices = torch.cuda.device_count() if device == "cuda" else (2 if options.smoke else 1)
    ddp = []
    if devices > 1:
        name = "xlmr-base" if not options.smoke else "tiny"
        seq = seqs[0]
        single = run_plain(shapes[name], seq, batch, warmup, steps, device)
        free_memory()
        print(f"\nDDP over {devices} {'GPUs' if device == 'cuda' else 'CPU processes (gloo, smoke)'}, plain loop, "
              f"{name} seq {seq}: examples/s (x one device)")
        # The same batch per device (weak scaling), and xitt's way: `batch_size` is the
        # batch of one optimizer step over all processes, split over the ranks.
        for label, per_rank in (("same batch per device", batch), ("global batch split", max(1, batch // devices))):
            seconds = run_ddp(devices, shapes[name], seq, per_rank, warmup, steps)
            speed, one = steps * per_rank * devices / seconds, steps * batch / single
            ddp.append({"mode": label, "devices": devices, "examples_per_s": speed, "over_single": speed / one})
            print(f"  {label:<24}{speed:>10.1f}  ({speed / one:.2f}x of {one:.1f} on one)", flush=True)
    else:
        print("\nDDP vs one device: skipped (one device here).")

    cells = [] if options.no_cells else demo_cells(options.smoke)
    for overrides, seconds, outcome in cells:
        print(f"demo cell `python train.py {overrides}`: {seconds:.0f} s, {outcome}")
    print(f"\ngpu_check: {time.time() - started:.0f} s")
    if options.json:
        Path(options.json).write_text(json.dumps({"device": gpu, "peak_tflops": peak, "runs": results, "ddp": ddp,
                                                  "cells": cells}, indent=1))
    if any(not outcome.startswith("ok") for _, _, outcome in cells):
        sys.exit(1)


if __name__ == "__main__":
    main()
