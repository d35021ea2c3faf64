"""One cell end to end (offline, the default settings), config errors, the store's atomic writes."""

import json
from pathlib import Path

import pytest
from hydra.errors import MissingConfigException

from conftest import DEMO_LANGS, builds, compose, records_under, run_script
from xitt import XittError
from xitt.core.cell import Cell
from xitt.core.store import ArtifactStore

RECORD_FIELDS = {"model", "size", "params", "itt", "target", "transfer", "freezing", "seed", "lang", "f1",
                 "accuracy", "n", "cell_key", "config", "versions", "predictions", "result_key"}
# Tokens a user has in the environment: no file a cell writes may hold them.
SECRETS = {"WANDB_API_KEY": "fake-wandb-key-0123456789abcdef0123456789abcdef",
           "HF_TOKEN": "hf_fakeTokenThatMustNotLeak0123456789"}


def test_default_cell_runs_offline_and_prints_per_language_f1(tmp_path):
    result = run_script("train.py", f"paths.root={tmp_path}", env=SECRETS)
    assert result.returncode == 0, result.stderr[-3000:]
    # Records, artifacts, configs, logs and the offline W&B runs: none holds a token.
    written = [path for path in tmp_path.rglob("*") if path.is_file()]
    assert len(written) > 20 and any("wandb" in str(path) for path in written)
    for path in written:
        data = path.read_bytes()
        assert not any(secret.encode() in data for secret in SECRETS.values()), f"a token leaked into {path}"
    for lang in DEMO_LANGS:
        assert f"\n{lang} " in result.stdout, result.stdout[-2000:]
    records = {r["lang"]: r for r in records_under(tmp_path)}
    assert sorted(records) == sorted(DEMO_LANGS)
    for record in records.values():
        assert RECORD_FIELDS <= set(record)
        assert (record["model"], record["size"], record["itt"], record["target"]) == ("tiny", "s", "demo", "demo")
        assert record["n"] == 300 and 100_000 < record["params"] < 5_000_000
        cell_folder = tmp_path / "results" / f"{record['cell_name']}-{record['cell_key'][:8]}"
        predictions = json.loads((cell_folder / record["predictions"]).read_text())
        assert len(predictions["pred"]) == record["n"] == len(set(predictions["ids"]))
    # The task is learnable and transfers: clearly above chance (33) in English and beyond.
    assert records["en"]["f1"] > 60
    assert sum(records[lang]["f1"] > 40 for lang in ("near", "mid", "far")) >= 2
    # One offline W&B run per stage job (ITT, target, evaluate).
    assert len(list((tmp_path / "wandb").rglob("offline-run-*"))) == 3
    assert len(builds(tmp_path, "itt")) == 1 and len(builds(tmp_path, "target")) == 1
    itt_folder = tmp_path / "store" / "itt" / records["en"]["itt_key"]
    assert (itt_folder / "model.safetensors").is_file() and (itt_folder / "meta.json").is_file()


def test_job_folders_name_the_weight_shaping_trainer_settings_other_than_the_default():
    from xitt.core.naming import job_dirname

    cpu = dict(compose().trainer)
    assert job_dirname("itt=none", cpu) == "itt=none"
    assert job_dirname("itt=none", {**cpu, "precision": "bf16-mixed"}) == "itt=none,precision=bf16-mixed"
    assert job_dirname("itt=none,trainer.precision=bf16-mixed", {**cpu, "precision": "bf16-mixed"}) == \
        "itt=none,trainer.precision=bf16-mixed"
    # an experiment's clipping, or the progress bar: only what shapes the weights names a folder
    assert job_dirname("", {**cpu, "gradient_clip_val": 0.5, "enable_progress_bar": False}) == "gradient_clip_val=0.5"


def test_the_cpu_precision_and_keys_do_not_depend_on_the_machine(tmp_path, monkeypatch):
    """The same command computes the same artifact keys on any CPU: the default precision
    is not read from the CPU's flags."""
    from xitt.core import jobs

    keys = {}
    for native in (True, False):
        monkeypatch.setattr(jobs, "has_native_bf16", lambda native=native: native)
        cfg = compose("itt=demo")
        assert cfg.trainer.precision == "32-true"
        cell = Cell.from_config(cfg)
        keys[native] = (cell.itt_key, cell.target_key(["en"]))
    assert keys[True] == keys[False]


def test_a_faster_precision_measured_here_is_hinted_with_its_numbers(tmp_path, monkeypatch):
    from xitt.core import jobs

    monkeypatch.setenv("XITT_CACHE", str(tmp_path))
    trainer = {"accelerator": "cpu", "precision": "32-true"}
    monkeypatch.setattr(jobs, "has_native_bf16", lambda: False)
    assert jobs.precision_hint(trainer) is None  # nothing measured, nothing native: nothing to say
    monkeypatch.setattr(jobs, "has_native_bf16", lambda: True)
    assert "`make bench` measures whether `trainer.precision=bf16-mixed`" in jobs.precision_hint(trainer)

    def measured(fp32: float, bf16: float) -> None:
        Path(jobs.measurements_path()).write_text(json.dumps({jobs.cpu_model(): {
            "examples_per_s": {"32-true": fp32, "bf16-mixed": bf16}, "workload": "e5-small", "measured": "today"}}))

    measured(20.0, 36.0)
    hint = jobs.precision_hint(trainer)
    assert "bf16-mixed training at 36.0 examples/s vs 20.0 for 32-true (1.80x" in hint
    assert jobs.precision_hint({**trainer, "precision": "bf16-mixed"}) is None  # already the faster one
    measured(27.0, 19.0)
    assert jobs.precision_hint(trainer) is None
    assert "32-true training at 27.0" in jobs.precision_hint({**trainer, "precision": "bf16-mixed"})
    assert jobs.precision_hint({"accelerator": "gpu", "precision": "bf16-mixed"}) is None


def test_unknown_size_fails_at_once_listing_the_family_sizes():
    with pytest.raises(XittError, match=r"'xlmr' has no size 's'\. Its sizes are: base, large, xl, xxl"):
        Cell.from_config(compose("model=xlmr", "size=s"))
    result = run_script("train.py", "size=xxl", "logger=none")
    assert result.returncode == 1
    assert "Model family 'tiny' has no size 'xxl'. Its sizes are: s, m, l" in result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_group_choice_lists_the_options():
    with pytest.raises(MissingConfigException, match="Could not find 'itt/bogus'"):
        compose("itt=bogus")
    result = run_script("train.py", "itt=bogus")
    assert result.returncode == 1
    assert "Available options in 'itt'" in result.stderr and "demo" in result.stderr and "none" in result.stderr


def test_family_size_shorthands_equal_family_plus_size():
    shorthand, explicit = Cell.from_config(compose("model=xlmr_large")), Cell.from_config(compose("model=xlmr", "size=large"))
    assert shorthand.model == explicit.model and shorthand.cell_key == explicit.cell_key
    assert shorthand.model["name_or_path"] == "FacebookAI/xlm-roberta-large"
    assert Cell.from_config(compose("model=tiny_m")).model["hidden_size"] == 128


def test_offline_hub_cell_names_the_missing_assets(tmp_path):
    result = run_script("train.py", "model=xlmr_base", "itt=imdb", "logger=none", f"paths.root={tmp_path}",
                        env={"HF_HOME": str(tmp_path / "hf")})
    assert result.returncode == 1
    assert "model FacebookAI/xlm-roberta-base" in result.stderr and "stanfordnlp/imdb" in result.stderr
    assert "python -m xitt.prepare" in result.stderr
    assert not (tmp_path / "store" / "itt").exists()


def test_store_is_atomic_and_leaves_nothing_half_written(tmp_path):
    store = ArtifactStore(tmp_path)

    def broken(out: Path) -> dict:
        (out / "weights.bin").write_bytes(b"partial")
        raise RuntimeError("killed mid-build")

    with pytest.raises(RuntimeError):
        store.get_or_build("itt", "k1", broken, {})
    assert not store.has("itt", "k1") and list((tmp_path / "itt").iterdir()) == [tmp_path / "itt" / "k1.lock"]
    folder = store.get_or_build("itt", "k1", lambda out: (out / "w").write_text("ok") and {"loss": 0.1}, {"a": 1})
    assert (folder / "w").read_text() == "ok" and store.meta("itt", "k1")["config"] == {"a": 1}
    assert [e["key"] for e in store.events()] == ["k1"]
