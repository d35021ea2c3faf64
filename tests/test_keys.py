"""What goes into the artifact keys (`xitt.core.keys`): every accepted setting classified, and
the classes proven by training. One process trains the same tiny target stage again and
again: the settings that cannot change the weights give the same key each and, all changed
at once, the same weights bit for bit; one that shapes them gives a new key (and other weights where it must change them), one
that gives the same model by design the same key and F1 within the DDP test's tolerance.
"""

import inspect
import json
import shutil
from pathlib import Path

import pytest
from safetensors.numpy import load_file

from conftest import compose
from xitt import XittError
from xitt.core import keys, validate
from xitt.core.cell import Cell
from xitt.core.keys import (DEFAULTS, EVALUATION, NO_EFFECT, REFUSED, SAME_BY_DESIGN, SET_BY_STAGES, SHAPES,
                            TASK_SETTINGS, TRAINER_SETTINGS)

# The stage trained in this module: the demo target on the tiny model, no ITT, 5 epochs at a rate that learns
# the task in them (F1 near 70, not one class everywhere), scored in English.
STAGE = ["itt=none", "target.hparams.epochs=5", "target.hparams.lr=4e-3", "target_lang.langs=[en]", "logger=none"]


def test_every_accepted_setting_is_in_exactly_one_class():
    import pytorch_lightning as pl

    signature = inspect.signature(pl.Trainer).parameters
    accepted = {*signature, *validate.XITT_TRAINER_RULES, *validate.HYDRA_KEYS}
    assert set(TRAINER_SETTINGS) == accepted, "a trainer setting is accepted but not classified, or gone"
    assert set(keys.CELL_SETTINGS) == set(validate.TOP_LEVEL)
    classes = {SHAPES, SAME_BY_DESIGN, EVALUATION, NO_EFFECT, REFUSED, SET_BY_STAGES}
    for name, (kind, why) in {**TRAINER_SETTINGS, **keys.CELL_SETTINGS, **TASK_SETTINGS, **keys.MODEL_SETTINGS}.items():
        assert kind in classes and why, name
    # What an absent setting means is Lightning's own default.
    for name, default in DEFAULTS.items():
        if name in signature:
            assert keys._effective(name, signature[name].default) == keys._effective(name, default), name
    # The shipped CPU trainer is the reference: its runs carry no training label.
    assert keys.training_label(compose("trainer=cpu").trainer) == ""
    assert keys.training_label(compose("trainer=gpu").trainer) == "precision=bf16-mixed"


@pytest.mark.parametrize("override, words", [
    ("+trainer.max_time=00:01:00:00", "time limit"), ("+trainer.fast_dev_run=true", "development run"),
    ("+trainer.overfit_batches=2", "debugging run"), ("+trainer.barebones=true", "callbacks"),
    ("+trainer.model_registry=my-models", "registry"),
])
def test_settings_a_stored_stage_cannot_honour_are_refused(override, words):
    with pytest.raises(XittError, match="cannot be honoured by a stored stage") as refused:
        Cell.from_config(compose(override))
    assert words in str(refused.value) and "limit_train_batches" in str(refused.value)


def test_zero_shot_keys_do_not_hold_the_languages_scored_and_one_spelling_is_one_key():
    base = Cell.from_config(compose())
    fewer = Cell.from_config(compose("target.languages=[en,near,mid]", "target.eval_batch_size=7"))
    assert fewer.target_key(["en"]) == base.target_key(["en"]) and fewer.cell_key == base.cell_key
    assert fewer.result_key(base.target_key(["en"]), "en") != base.result_key(base.target_key(["en"]), "en")
    assert Cell.from_config(compose("trainer.precision=32")).cell_key == base.cell_key
    assert Cell.from_config(compose("+trainer.limit_train_batches=1.0")).itt_key == base.itt_key
    # A translate-train model is one per language: its languages stay in its key.
    assert base.target_key(["en"]) != base.target_key(["near"])


def _train(overrides: list[str], root: Path) -> tuple[Cell, dict, dict]:
    """Train the module's stage (and score it) under `root`; the target model's weights and meta.json."""
    from xitt.stages.pipeline import CellRunner

    runner = CellRunner(compose(*STAGE, f"paths.root={root}", *overrides))
    (record,) = runner.run()
    (target,) = [stage for stage in runner.cell.stages() if stage.name == "target"]
    folder = runner.store.path("target", target.key)
    weights = {**load_file(str(folder / "model.safetensors")), **load_file(str(folder / "head.safetensors"))}
    return runner.cell, weights, {**json.loads((folder / "meta.json").read_text()), "record": record,
                                  "results_dir": runner.results_dir}


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all((a[name] == b[name]).all() for name in a)


def test_each_setting_changes_what_its_class_says_and_nothing_else(tmp_path):
    root = tmp_path / "root"
    cell, reference, meta = _train([], root)
    target_key = meta["key"]

    def retrain(*overrides: str):
        """The stage trained again under the same store (tokenizer and data cache kept): the
        stored model of the same key is removed first, so it is trained, not found."""
        shutil.rmtree(root / "store" / "target" / target_key, ignore_errors=True)
        shutil.rmtree(root / "results", ignore_errors=True)
        return _train(list(overrides), root)

    # Cannot change the weights: the same key, the same weights bit for bit.
    no_effect = [
        ["trainer.log_every_n_steps=1"], ["trainer.enable_progress_bar=false"], ["trainer.enable_model_summary=true"],
        ["trainer.num_sanity_val_steps=2"], ["+trainer.limit_test_batches=0.5"], ["+trainer.inference_mode=false"],
        ["+trainer.detect_anomaly=true"], ["+trainer.profiler=simple"], ["+trainer.reload_dataloaders_every_n_epochs=1"],
        [f"+trainer.default_root_dir={tmp_path / 'lightning'}"], ["+trainer.enable_autolog_hparams=false"],
        ["trainer.checkpoint_every_n_epochs=0"], ["trainer.checkpoint_min_interval_s=0"],
        ["+trainer.gpu_memory_gb=40"], ["num_workers=1"], ["+store_lock_timeout_s=100"], ["logger=csv"],
    ]
    covered = {override.split("=")[0].lstrip("+").removeprefix("trainer.") for overrides in no_effect
               for override in overrides}
    no_effect_settings = {name for name, (kind, _) in TRAINER_SETTINGS.items() if kind == NO_EFFECT}
    assert no_effect_settings - {"_target_", "_partial_"} <= covered
    for overrides in no_effect:
        assert Cell.from_config(compose(*STAGE, *overrides)).target_key(["en"]) == target_key, overrides
    # All of them changed at once, in one training (one per setting would add a minute to the suite).
    changed, weights, _ = retrain(*(override for overrides in no_effect for override in overrides))
    assert changed.target_key(["en"]) == target_key
    assert _same(weights, reference), "a setting that cannot change the weights changed them"
    # The csv logger wrote under the cell's records folder name and the artifact key.
    assert (root / "csv_logs" / meta["results_dir"].name / f"target-{target_key[:8]}" / "metrics.csv").is_file()

    # The same model by design: the same key, the same F1 within the DDP test's tolerance, recorded.
    for override in ("trainer.activation_checkpointing=true", "+trainer.deterministic=true"):
        changed, _, built = retrain(override)
        assert changed.target_key(["en"]) == target_key
        assert abs(built["record"]["f1"] - meta["record"]["f1"]) <= 1.0, override
        name, value = override.lstrip("+").removeprefix("trainer.").split("=")
        assert built["config"]["run_settings"][name] is True and built["record"]["run_settings"][name] is True

    # Shapes the weights: a new key and records of their own; other weights where it must change them.
    shaping = {"trainer.precision=bf16-mixed": True, "trainer.gradient_clip_val=0.001": True,
               "+trainer.gradient_clip_algorithm=value": True, "trainer.accumulate_grad_batches=4": True,
               "+trainer.limit_train_batches=0.5": True, "+trainer.max_steps=7": True,
               "+trainer.limit_val_batches=0.5": False, "+trainer.val_check_interval=0.5": None,
               "+trainer.min_epochs=2": None, "+trainer.min_steps=40": None, "trainer.compile=true": None,
               "+trainer.plugins=[]": None}
    assert {name for name, (kind, _) in TRAINER_SETTINGS.items() if kind == SHAPES} == \
        {o.lstrip("+").removeprefix("trainer.").split("=")[0] for o in shaping}
    folders = {meta["results_dir"]}
    for override, must_differ in shaping.items():
        changed = Cell.from_config(compose(*STAGE, override))
        assert changed.target_key(["en"]) != target_key and changed.cell_key != cell.cell_key, override
        if must_differ is None:  # keyed; not trained here: whether they change this run's weights depends
            continue             # on its curve (a compile would take minutes on a CPU)
        _, weights, built = _train([override], root)
        assert built["key"] != target_key
        folders.add(built["results_dir"])
        assert built["record"]["training"] == override.lstrip("+").removeprefix("trainer.")
        if must_differ:
            assert not _same(weights, reference), f"{override} left the weights as they were"
        elif "limit_val" in override:  # it scores fewer development batches: another curve
            assert built["metrics"]["selection"]["curve"] != meta["metrics"]["selection"]["curve"]
    assert len(folders) == 1 + sum(value is not None for value in shaping.values())

    # A report over all of them keeps each setting apart, superseding none.
    from xitt.analysis.records import load_results

    results = load_results([root / "results"])
    assert len(results.superseded) == 0 and results.records["training"].nunique() == len(folders)


def test_a_zero_shot_cell_asked_for_one_more_language_trains_nothing_and_scores_it(tmp_path):
    from xitt.core.store import ArtifactStore
    from xitt.stages.pipeline import CellRunner

    common = ["itt=none", "target.hparams.epochs=1", "logger=none", f"paths.root={tmp_path}"]
    first = CellRunner(compose(*common, "target.languages=[en,near,mid]"))
    first.run()
    scored = {lang: json.loads((first.results_dir / f"{lang}.json").read_text())["created"] for lang in ("en", "mid")}
    second = CellRunner(compose(*common))
    records = second.run()
    assert second.results_dir == first.results_dir
    assert [record["lang"] for record in records] == ["en", "near", "mid", "far"]
    assert [event["kind"] for event in ArtifactStore(tmp_path / "store").events()].count("target") == 1
    assert {lang: records[index]["created"] for lang, index in (("en", 0), ("mid", 2))} == scored


def test_a_local_data_file_edited_in_place_is_trained_on_again(tmp_path):
    from xitt.core.store import ArtifactStore
    from xitt.stages.pipeline import CellRunner

    data = tmp_path / "data"
    data.mkdir()
    rows = [("a fine film", "positive"), ("a dull film", "negative"), ("it was a film", "neutral")] * 8
    for split in ("train", "valid", "test"):
        (data / "english").mkdir(exist_ok=True)
        (data / "english" / f"{split}.csv").write_text(
            "text,label,source\n" + "".join(f"{text},{label},x\n" for text, label in rows))
    common = ["itt=none", "target=sentiment", "target.source=local", f"target.path={data}", "target.hparams.epochs=1",
              "target_lang.langs=[en]", "logger=none", f"paths.root={tmp_path / 'root'}"]
    cell = Cell.from_config(compose(*common))
    before = cell.target_key(["en"])
    CellRunner(compose(*common)).run()
    # A copy or a touch keeps the key (the content is what counts) ...
    shutil.copy2(data / "english" / "train.csv", tmp_path / "copy.csv")
    shutil.copy(tmp_path / "copy.csv", data / "english" / "train.csv")
    assert Cell.from_config(compose(*common)).target_key(["en"]) == before
    # ... an edit that keeps the size does not; a new test file changes the record, not the model.
    train = data / "english" / "train.csv"
    train.write_text(train.read_text().replace("a dull film,negative", "a dull film,positive", 1))
    edited = Cell.from_config(compose(*common))
    assert edited.target_key(["en"]) != before
    runner = CellRunner(compose(*common))
    runner.run()
    assert [event["kind"] for event in ArtifactStore(tmp_path / "root" / "store").events()].count("target") == 2
    key = edited.target_key(["en"])
    scored = edited.result_key(key, "en")
    test = data / "english" / "test.csv"
    test.write_text(test.read_text() + "a new film,neutral,x\n")
    again = Cell.from_config(compose(*common))
    assert again.target_key(["en"]) == key and again.result_key(key, "en") != scored
