"""Several processes per cell (DDP, 2 CPU processes with gloo here) learn what one process
learns, write each record and artifact once, log one W&B run per stage job, and tokenise
each split once; precision settings are accepted or refused with the reason."""

import json
from pathlib import Path

import pytest

from conftest import compose, run_script
from xitt.memory import Parallelism
from xitt.core.store import ArtifactStore

# The demo cell, shortened, and without dropout: training is then deterministic given the
# data order, which DDP keeps (each rank takes its slice of the single-process batches), so
# both runs must reach the same model up to floating-point summation order.
# No dropout, and full precision: bfloat16 rounds the two processes' different summation
# orders differently, which five epochs amplify beyond what the comparison tolerates.
DETERMINISTIC = ["itt.hparams.epochs=1", "target.hparams.epochs=5", "itt.hparams.dropout=0",
                 "target.hparams.dropout=0", "+itt.hparams.encoder_dropout=0", "+target.hparams.encoder_dropout=0",
                 "trainer.precision=32-true"]


def records(root: Path) -> dict[str, dict]:
    found = [json.loads(p.read_text()) for p in (root / "results").rglob("*.json")
             if not p.name.endswith(".predictions.json")]
    assert len(found) == len({r["lang"] for r in found}), "a language was recorded twice"
    return {r["lang"]: r for r in found}


@pytest.mark.slow
def test_ddp_matches_one_process_and_writes_once(tmp_path):
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    one = run_script("train.py", "logger=none", f"paths.root={single}", *DETERMINISTIC)
    assert one.returncode == 0, one.stderr[-3000:]
    two = run_script("train.py", "trainer=ddp", "logger=wandb", f"paths.root={ddp}", *DETERMINISTIC)
    assert two.returncode == 0, two.stderr[-3000:]
    log = two.stdout + two.stderr

    assert "Rank 1 of 2 joined" in log  # Lightning started the second rank
    by_lang_one, by_lang_two = records(single), records(ddp)
    assert sorted(by_lang_two) == ["en", "far", "mid", "near"]
    for lang, record in by_lang_two.items():
        assert record["n"] == 300  # every test example scored once, none twice
        assert abs(record["f1"] - by_lang_one[lang]["f1"]) <= 1.0, (lang, record["f1"], by_lang_one[lang]["f1"])
        predictions = json.loads((record_dir(ddp, record) / record["predictions"]).read_text())
        assert len(predictions["ids"]) == len(set(predictions["ids"])) == 300

    # The same model by design: the same keys (one cell, one records folder), the ranks recorded.
    assert (by_lang_two["en"]["target_key"], by_lang_two["en"]["cell_key"]) == \
        (by_lang_one["en"]["target_key"], by_lang_one["en"]["cell_key"])
    assert (by_lang_one["en"]["run_settings"]["devices"], by_lang_two["en"]["run_settings"]["devices"]) == (1, 2)
    # Model selection sees the whole development set on every rank count: the same curve.
    curves = [ArtifactStore(root / "store").meta("target", by_lang["en"]["target_key"])["metrics"]["selection"]["curve"]
              for root, by_lang in ((single, by_lang_one), (ddp, by_lang_two))]
    assert [point["epoch"] for point in curves[1]] == [1, 2, 3, 4, 5]
    assert [p["f1"] for p in curves[1]] == pytest.approx([p["f1"] for p in curves[0]], abs=1.5)
    assert by_lang_two["en"]["selected_epoch"] == by_lang_one["en"]["selected_epoch"]

    events = ArtifactStore(ddp / "store").events()
    assert sorted(e["kind"] for e in events) == ["itt", "target", "tokenizer"]  # rank 0 built each once
    assert {e["world_size"] for e in events} == {2}
    itt = ArtifactStore(ddp / "store").meta("itt", by_lang_two["en"]["itt_key"])
    assert itt["metrics"]["steps"] == ArtifactStore(single / "store").meta(
        "itt", by_lang_one["en"]["itt_key"])["metrics"]["steps"]  # same optimizer steps: same effective batch
    # One W&B run per stage job (ITT, target, evaluate), from rank 0 only.
    assert len(list((ddp / "wandb").rglob("offline-run-*"))) == 3
    # One Hydra run folder: the second rank ran in the first one's folder.
    assert len(list((ddp / "runs").iterdir())) == 1
    assert json.loads(next((ddp / "runs").glob("*/cell.json")).read_text())["status"] == "done"
    # Data prepared once (on rank 0, in prepare_data): each split tokenised once.
    tokenised = [line for line in log.splitlines() if "into the cache" in line]
    # 2 train, 2 development (ITT, target), 4 test
    assert len(tokenised) == len(set(line.split(" - ", 1)[-1] for line in tokenised)) == 8


def record_dir(root: Path, record: dict) -> Path:
    return root / "results" / f"{record['cell_name']}-{record['cell_key'][:8]}"


@pytest.mark.slow
def test_bf16_mixed_precision_trains_on_cpu(tmp_path):
    result = run_script("train.py", "logger=none", f"paths.root={tmp_path}", "trainer.precision=bf16-mixed",
                        "itt=none")
    assert result.returncode == 0, result.stderr[-3000:]
    found = records(tmp_path)
    assert len(found) == 4 and all(r["config"]["trainer"]["precision"] == "bf16-mixed" for r in found.values())
    assert found["en"]["f1"] > 40  # it learns: chance is 33


def test_float16_on_cpu_is_refused_with_the_reason(tmp_path):
    result = run_script("train.py", "logger=none", f"paths.root={tmp_path}", "trainer.precision=16-mixed")
    assert result.returncode == 1
    assert "needs a GPU" in result.stderr and "bf16-mixed" in result.stderr


def test_local_multirun_with_ddp_is_refused_with_the_way_out(tmp_path):
    result = run_script("train.py", "-m", "trainer=ddp", "logger=none", f"paths.root={tmp_path}", "seed=1,2")
    assert "2 cells: 0 run, 0 skipped (already done), 2 failed" in result.stdout, result.stderr[-3000:]
    assert "cannot use 2 processes per cell" in result.stdout and "launcher=slurm" in result.stdout
    assert not (tmp_path / "store" / "itt").exists()  # refused before any training


@pytest.mark.parametrize("trainer, expected", [
    ("cpu", ("single", 1, False)), ("ddp", ("ddp", 2, False)), ("ddp_gpu", ("ddp", 4, False)),
    ("fsdp", ("fsdp", 4, True)), ("deepspeed_stage2", ("deepspeed_stage2", 4, False)),
    ("deepspeed_stage3", ("deepspeed_stage3", 8, True)),
])
def test_scale_out_trainer_configs_compose(trainer, expected):
    from omegaconf import OmegaConf

    cfg = compose(f"trainer={trainer}", "model=xlmr", "size=xl")
    settings = OmegaConf.to_container(cfg.trainer, resolve=True)
    parallelism = Parallelism.from_trainer(settings)
    assert (parallelism.name, parallelism.gpus, parallelism.shards_weights) == expected
    if trainer in ("fsdp", "deepspeed_stage2", "deepspeed_stage3"):
        assert settings["activation_checkpointing"] is True and settings["precision"] == "bf16-mixed"


def test_fsdp_trainer_config_instantiates_its_strategy():
    """FSDP's strategy (with the per-layer wrap policy) is built from the config as is; it
    needs GPUs only once training starts."""
    from hydra.utils import instantiate
    from pytorch_lightning.strategies import FSDPStrategy

    cfg = compose("trainer=fsdp")
    strategy = instantiate(cfg.trainer.strategy)
    assert isinstance(strategy, FSDPStrategy)


def test_ranks_train_on_slices_of_the_single_process_batches():
    from xitt.data.datamodule import ShardedBatchSampler

    single = ShardedBatchSampler(150, 16, seed=3)
    ranks = [ShardedBatchSampler(150, 16, world_size=2, rank=r, seed=3) for r in (0, 1)]
    for epoch in (0, 1):
        for sampler in (single, *ranks):
            sampler.set_epoch(epoch)
        steps = list(zip(single, *ranks))
        assert len(steps) == len(single) == len(ranks[0]) == 10  # every rank steps together
        for whole, first, second in steps:
            assert sorted(first + second) == sorted(whole) and not set(first) & set(second)
    last_epoch = list(single)
    single.set_epoch(0)
    assert list(single) != last_epoch  # reshuffled each epoch


def test_a_resumed_epoch_continues_with_the_batches_not_yet_trained():
    from xitt.data.datamodule import ShardedBatchSampler

    reference = ShardedBatchSampler(150, 16, seed=1)
    reference.set_epoch(2)
    epoch_2 = list(reference)
    resumed = ShardedBatchSampler(150, 16, seed=1, resume_at=(2, 4))
    assert len(resumed) == 10  # Lightning's restored loop counts the whole epoch
    assert list(resumed) == epoch_2[4:]
    resumed.set_epoch(3)
    reference.set_epoch(3)
    assert list(resumed) == list(reference)  # later epochs are whole again


def test_length_grouped_batches_pad_little_and_stay_random_per_seed_and_epoch():
    import random

    from xitt.data.datamodule import ShardedBatchSampler

    rng = random.Random(0)
    lengths = [rng.randint(5, 128) for _ in range(2000)]

    def padding(batches: list[list[int]]) -> float:
        padded = sum(len(batch) * max(lengths[i] for i in batch) for batch in batches)
        return 1 - sum(lengths) / padded

    plain = list(ShardedBatchSampler(2000, 16, seed=1))
    grouped = ShardedBatchSampler(2000, 16, seed=1, lengths=lengths)
    epoch_0 = list(grouped)
    assert padding(epoch_0) < 0.1 < 0.3 < padding(plain)
    assert sorted(i for batch in epoch_0 for i in batch) == list(range(2000))  # every example once
    assert max(lengths) in (lengths[i] for i in epoch_0[0])  # the longest batch first
    # not sorted by length: consecutive batches are of unrelated lengths
    firsts = [lengths[batch[-1]] for batch in epoch_0[1:]]
    assert firsts != sorted(firsts) and firsts != sorted(firsts, reverse=True)
    assert epoch_0 == list(ShardedBatchSampler(2000, 16, seed=1, lengths=lengths))  # a function of seed+epoch
    grouped.set_epoch(1)
    assert list(grouped) != epoch_0
    assert list(ShardedBatchSampler(2000, 16, seed=2, lengths=lengths)) != epoch_0
    # ranks take slices of the same batches, and a resumed epoch continues with the rest
    ranks = [list(ShardedBatchSampler(2000, 16, world_size=2, rank=r, seed=1, lengths=lengths)) for r in (0, 1)]
    assert all(sorted(a + b) == sorted(whole) for whole, a, b in zip(epoch_0, *ranks))
    resumed = ShardedBatchSampler(2000, 16, seed=1, resume_at=(0, 7), lengths=lengths)
    assert list(resumed) == epoch_0[7:]
