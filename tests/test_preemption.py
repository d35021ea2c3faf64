"""Preemption: a stage told to stop (SLURM's warning signal) saves a checkpoint and exits;
running the same command again resumes the stage from that checkpoint."""

import json
import signal
import time

import pytest

from conftest import run_script, start_script
from xitt.core.store import ArtifactStore

# The demo cell with three short ITT epochs (40 batches each), to interrupt in the second,
# and a target stage of three epochs (38 batches of 4 each: long enough to be caught between
# its first checkpoint and its end).
OVERRIDES = ["logger=none", "trainer.checkpoint_min_interval_s=0", "itt.hparams.epochs=3", "+trainer.limit_train_batches=40", "target.hparams.epochs=3",
             "target.hparams.batch_size=4"]


def f1_by_lang(root) -> dict[str, float]:
    records = [json.loads(p.read_text()) for p in (root / "results").rglob("*.json")
               if not p.name.endswith(".predictions.json")]
    return {record["lang"]: record["f1"] for record in records}


def target_selection(root) -> dict:
    store = ArtifactStore(root / "store")
    (key,) = [event["key"] for event in store.events() if event["kind"] == "target"]
    return store.meta("target", key)["metrics"]["selection"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict[str, float]:
    """The F1 of the same command run without interruption (and its target model's
    selection, under "selection"): what a resumed run must match."""
    root = tmp_path_factory.mktemp("uninterrupted")
    result = run_script("train.py", *OVERRIDES, f"paths.root={root}")
    assert result.returncode == 0, result.stderr[-3000:]
    return {**f1_by_lang(root), "selection": target_selection(root)}


def wait_for(predicate, process, timeout: float, what: str) -> None:
    deadline = time.time() + timeout
    while not predicate():
        if process.poll() is not None:
            out, err = process.communicate()
            pytest.fail(f"the run ended (status {process.returncode}) before {what}:\n{err[-3000:]}")
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.mark.slow
@pytest.mark.parametrize("stop_signal", [signal.SIGUSR2])
def test_a_signalled_stage_checkpoints_exits_and_resumes(tmp_path, stop_signal, uninterrupted):
    overrides = [*OVERRIDES, f"paths.root={tmp_path}"]
    first = start_script("train.py", *overrides)
    itt_dir = tmp_path / "store" / "itt"
    # Wait until the ITT stage has finished its first epoch (its epoch-end checkpoint), then
    # signal it in the middle of the second.
    wait_for(lambda: list(itt_dir.glob(".work-*/last.json")), first, 600, "the first ITT epoch ended")
    work = next(itt_dir.glob(".work-*"))
    first.send_signal(stop_signal)
    out, err = first.communicate(timeout=300)
    assert first.returncode == 128 + stop_signal, err[-3000:]
    saved = json.loads((work / "last.json").read_text())
    assert saved["reason"] == "preempted" and saved["epochs_done"] >= 1 and saved["global_step"] > 0
    assert (work / "last.ckpt").is_file()
    assert not ArtifactStore(tmp_path / "store").has("itt", work.name.removeprefix(".work-"))
    assert not list(itt_dir.glob(".tmp-*"))  # the half-built artifact folder was removed
    assert "Run the same command again" in err

    second = run_script("train.py", *overrides)
    assert second.returncode == 0, second.stderr[-3000:]
    log = second.stdout + second.stderr
    assert f"resuming itt from epoch {saved['epochs_done']} (step {saved['global_step']})" in log
    store = ArtifactStore(tmp_path / "store")
    itt_key = work.name.removeprefix(".work-")
    meta = store.meta("itt", itt_key)
    assert meta["metrics"]["resumed_from_epoch"] == saved["epochs_done"]
    assert meta["metrics"]["steps"] == 3 * 40  # all three epochs of 40 batches, none repeated or skipped
    built = [e for e in store.events() if e["kind"] == "itt"]
    assert len(built) == 1 and built[0]["resumed_from_epoch"] == saved["epochs_done"]
    assert not work.exists()  # the checkpoints go once the artifact is stored
    # The resumed stage ends with the model the uninterrupted one has: same data order,
    # same dropout masks (the random state is part of the checkpoint).
    assert f1_by_lang(tmp_path) == pytest.approx({k: v for k, v in uninterrupted.items() if k != "selection"},
                                                 abs=0.01)


@pytest.mark.slow
def test_a_killed_target_stage_resumes_to_the_same_model(tmp_path, uninterrupted):
    """SIGKILL (no warning, nothing saved at the moment) in the target stage's second epoch:
    the rerun resumes from the epoch-end checkpoint and records the uninterrupted F1, and
    leaves no temporary folder, lock holder or checkpoint behind."""
    overrides = [*OVERRIDES, f"paths.root={tmp_path}"]
    first = start_script("train.py", *overrides)
    target_dir = tmp_path / "store" / "target"
    wait_for(lambda: list(target_dir.glob(".work-*/last.json")), first, 600, "the first target epoch ended")
    first.kill()
    first.wait(timeout=60)
    second = run_script("train.py", *overrides)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "resuming target from epoch 1" in second.stdout + second.stderr
    expected = dict(uninterrupted)
    selection = expected.pop("selection")
    assert f1_by_lang(tmp_path) == pytest.approx(expected, abs=0.01)
    # The selection state went with the checkpoint: the first epoch's validation, scored
    # before the kill, is in the curve, and the same epoch is selected.
    resumed = target_selection(tmp_path)
    assert [p["epoch"] for p in resumed["curve"]] == [1, 2, 3]
    assert [p["f1"] for p in resumed["curve"]] == pytest.approx([p["f1"] for p in selection["curve"]], abs=0.01)
    assert resumed["selected_epoch"] == selection["selected_epoch"]
    assert not list(target_dir.glob(".tmp-*")) and not list(target_dir.glob(".work-*"))
