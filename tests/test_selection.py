"""Model selection on the development set: every training stage validates on its task's
development split in its training language, stores the best (or last) model, can stop
early, and says how it selected in the artifact's meta.json and in every record."""

from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from omegaconf import OmegaConf, open_dict

from conftest import compose, records_under
from xitt.core.cell import Cell
from xitt.core.store import ArtifactStore
from xitt.core.taskspec import HELD_OUT_DEV, carves_dev, dev_split, split_note
from xitt.data.tasks import load_split

# The demo target without ITT, trained in this process so that a callback can shape its
# development curve by construction (never by hoping that one CPU's numerics give a curve
# of the wanted shape).
SETTING = ["itt=none", "target.hparams.epochs=5", "target.hparams.lr=3e-3", "logger=none", "trainer.enable_progress_bar=false"]


class WorseLastEpoch(pl.Callback):
    """After the last training step, before the last validation: the head predicts its first
    class for every example, the lowest macro-F1 a model of the balanced demo classes can
    reach by a constant (16.7), so the last epoch is worse than any epoch that learned
    anything and `best` and `last` must store different models."""

    def on_train_batch_end(self, trainer, module, *args):
        if trainer.is_last_batch and trainer.current_epoch == trainer.max_epochs - 1:
            with torch.no_grad():
                module.head.out.weight.zero_()
                module.head.out.bias.copy_(torch.tensor([10.0, 0.0, 0.0]))


class FrozenAfterFirstEpoch(pl.Callback):
    """From the second epoch on the learning rate is 0: the model, so its development F1,
    stays what the first epoch made it, which early stopping must count as no improvement."""

    def on_train_epoch_start(self, trainer, module):
        if trainer.current_epoch >= 1:
            for scheduler in trainer.lr_scheduler_configs:
                scheduler.scheduler.base_lrs = [0.0 for _ in scheduler.scheduler.base_lrs]
            for optimizer in trainer.optimizers:
                for group in optimizer.param_groups:
                    group["lr"] = 0.0


def train_in_process(root: Path, *overrides: str, callback) -> None:
    """Run the cell as train.py does (CellRunner.run), with `callback` added to its trainers."""
    from xitt.stages.pipeline import CellRunner

    CellRunner(compose(*SETTING, *overrides, f"paths.root={root}"), callbacks=[callback]).run()


def target_selection(root: Path) -> tuple[str, dict]:
    (key,) = [event["key"] for event in ArtifactStore(root / "store").events() if event["kind"] == "target"]
    return key, ArtifactStore(root / "store").meta("target", key)["metrics"]["selection"]


def rescored_dev_f1(root: Path, key: str) -> float:
    """The development F1 of the stored target model, scored afresh: the cell's own config
    with the development split as its test split, evaluated in English."""
    from transformers import AutoTokenizer

    from xitt.core.cell import Stage
    from xitt.stages.pipeline import CellRunner

    store = ArtifactStore(root / "store")
    cfg = OmegaConf.create(store.meta("target", key)["config"]["cell_config"])
    with open_dict(cfg):
        cfg.target.test_split = "validation"
        cfg.target_lang.langs = ["en"]
        cfg.paths.results = str(root / "rescored")
    runner = CellRunner(cfg)
    cell = runner.cell
    stage = Stage("evaluate", "target", key, ("target", key), cell.target, ("en",), cell.freezing_for("target"),
                  cell.transfer, ("en",))
    model_dir = store.path("target", key)
    return runner.evaluate(stage, AutoTokenizer.from_pretrained(model_dir), model_dir=model_dir)["en"]["f1"]


@pytest.mark.slow
def test_best_and_last_store_the_models_their_development_scores_say(tmp_path):
    runs = {}
    for mode in ("best", "last"):
        root = tmp_path / mode
        train_in_process(root, f"selection.target={mode}", callback=WorseLastEpoch())
        runs[mode] = (root, *target_selection(root))
    (_, best_key, best), (_, last_key, last) = runs["best"], runs["last"]
    assert best_key != last_key  # the selection is part of the target key
    # Validation does not disturb training: both runs follow the same development curve.
    assert [point["f1"] for point in best["curve"]] == pytest.approx([point["f1"] for point in last["curve"]],
                                                                     abs=0.01)
    curve = [point["f1"] for point in best["curve"]]
    assert len(curve) == 5 and [point["epoch"] for point in best["curve"]] == [1, 2, 3, 4, 5]
    assert curve[-1] == pytest.approx(100 / 6, abs=0.01)  # the constant prediction made on purpose
    assert max(curve) > curve[-1] + 1, f"the demo target learned nothing in 4 epochs: {curve}"
    assert best["dev_f1"] == max(curve) and best["selected_epoch"] == 1 + curve.index(max(curve)) < 5
    assert last["dev_f1"] == curve[-1] and last["selected_epoch"] == 5
    assert best["dev_split"] == "validation" and best["dev_langs"] == ["en"]
    # The stored model is the one selected: scored afresh on the development set, it gets
    # the development F1 recorded for it.
    for mode, (root, key, selection) in runs.items():
        assert rescored_dev_f1(root, key) == pytest.approx(selection["dev_f1"], abs=0.01), mode
    # Every record of the cell says how its model was selected.
    for mode, (root, _, selection) in runs.items():
        records = records_under(root)
        assert {r["lang"] for r in records} >= {"en", "near", "mid", "far"}
        for record in records:
            assert record["selection"] == mode and record["selected_epoch"] == selection["selected_epoch"]
            assert record["epoch_budget"] == record["epochs_run"] == 5 and record["dev_lang"] == "en"
            assert record["dev_f1_best"] == max(curve) and record["dev_f1_last"] == curve[-1]


@pytest.mark.slow
def test_early_stopping_ends_training_after_patience_validations_without_improvement(tmp_path):
    train_in_process(tmp_path, "selection.patience=1", callback=FrozenAfterFirstEpoch())
    _, selection = target_selection(tmp_path)
    curve = [point["f1"] for point in selection["curve"]]
    # the second validation scores the unchanged model: no improvement, so patience 1 stops there
    assert selection["epochs_run"] == len(curve) == 2 < selection["epoch_budget"] == 5
    assert curve[1] == curve[0] and selection["dev_f1"] == curve[0] and selection["patience"] == 1


def test_zero_shot_and_few_shot_models_are_selected_on_english_only():
    zero_shot = Cell.from_config(compose("target_lang.langs=[near,far]"))
    stages = {stage.name: stage for stage in zero_shot.stages()}
    assert stages["target"].dev_langs == ("en",) and stages["itt"].dev_langs == ("en",)
    # the development rows it reads are English ones, whatever the languages evaluated
    assert [(lang, split) for _, lang, split in stages["target"].data_needs()] == [("en", "train"),
                                                                                   ("en", "validation")]
    few_shot = Cell.from_config(compose("transfer=few_shot", "target_lang.langs=[near]"))
    assert {stage.name: stage.dev_langs for stage in few_shot.stages() if stage.trains} == {
        "itt": ("en",), "target": ("en",), "few_shot": ("en",)}
    # training in the target language itself (target_finetune) selects in that language
    own = Cell.from_config(compose("transfer=target_finetune", "target_lang.langs=[near]"))
    assert [stage.dev_langs for stage in own.stages() if stage.name == "target"] == [("near",)]


def test_selection_settings_are_part_of_the_keys_of_the_stages_they_concern():
    default = Cell.from_config(compose())
    last = Cell.from_config(compose("selection.target=last"))
    assert last.itt_key == default.itt_key and last.target_key(["en"]) != default.target_key(["en"])
    itt_best = Cell.from_config(compose("selection.itt=best"))
    assert itt_best.itt_key != default.itt_key
    for override in ("selection.patience=2", "selection.every_n_epochs=2"):
        assert Cell.from_config(compose(override)).target_key(["en"]) != default.target_key(["en"]), override
    no_validation = Cell.from_config(compose("selection.every_n_epochs=0", "selection.target=last"))
    assert not any(stage.validates for stage in no_validation.stages())
    assert all(need[2] != "validation" for stage in no_validation.stages() for need in stage.data_needs())


def test_a_task_without_its_own_development_split_holds_one_out_of_training(shared):
    # the real-transfer setting: test.csv trains, valid.csv tests, so the development rows
    # are 10% of the training tweets, and they are not trained on
    cfg = compose("target=sentiment", "target.source=local", f"target.path={shared / 'data/multilingual_sentiment'}",
                  "target.train_split=test", "target.test_split=validation")
    task = Cell.from_config(cfg).target
    assert carves_dev(task) and dev_split(task) == HELD_OUT_DEV
    train, dev = load_split(task, "en", "test"), load_split(task, "en", HELD_OUT_DEV)
    assert len(train) + len(dev) == 870 and len(dev) == 87
    assert not set(train["id"]) & set(dev["id"])
    assert "development split (model selection) = 10% of test" in split_note(task)


def test_nothing_is_held_out_when_nothing_is_validated(shared):
    # `every_n_epochs=0` with both selections `last`: the whole training split is trained on,
    # and the keys and the record's split note say so
    setting = ["target=sentiment", "target.source=local", f"target.path={shared / 'data/multilingual_sentiment'}",
               "target.train_split=test", "target.test_split=validation", "itt=imdb", "itt.source=local",
               f"itt.path={shared / 'data/imdb'}"]
    validated = Cell.from_config(compose(*setting, "selection.target=last"))
    unvalidated = Cell.from_config(compose(*setting, "selection.target=last", "selection.every_n_epochs=0"))
    task = unvalidated.target
    assert not carves_dev(task) and len(load_split(task, "en", "test")) == 870
    assert split_note(task) is None or "development" not in split_note(task)
    assert not carves_dev(unvalidated.itt) and carves_dev(validated.itt)
    assert unvalidated.itt_key != validated.itt_key
    assert unvalidated.target_key(["en"]) != validated.target_key(["en"])
    needs = [need for stage in unvalidated.stages() for need in stage.data_needs()]
    assert all(split != HELD_OUT_DEV for _, _, split in needs)


def test_the_xnli_ladder_holds_out_whole_premises_for_development(shared):
    cfg = compose("experiment=smoke_ladder_xnli", "size=l3", "itt=none")
    task = Cell.from_config(cfg).target
    # its declared development split is the one train and test are carved from: not used
    assert task["dev_split"] == task["split_from"] == "validation" and dev_split(task) == HELD_OUT_DEV
    train, dev, test = (load_split(task, "en", split) for split in ("train", HELD_OUT_DEV, "test"))
    assert set(train["premise"]).isdisjoint(dev["premise"]) and set(dev["premise"]).isdisjoint(test["premise"])
    assert len(train) + len(dev) + len(test) == 2490


@pytest.mark.parametrize("override, fragment", [
    ("selection.target=bestest", "`selection.target=bestest` is not valid"),
    ("selection.every_n_epochs=0", "`selection.every_n_epochs=0` turns the validation loop off"),
    ("+selection.monitor=loss", "`selection.monitor` is not a model-selection setting"),
    ("selection.patience=0", "`selection.patience=0` is not valid"),
    ("+target.dev_ratio=1.5", "`target.dev_ratio=1.5` is not valid"),
])
def test_bad_selection_settings_are_refused_with_the_fix(override, fragment):
    from xitt import XittError

    with pytest.raises(XittError, match="(?s)" + fragment.replace("`", ".").replace("(", ".").replace(")", ".")):
        Cell.from_config(compose(override))


def test_the_report_shows_each_models_selection(tmp_path):
    from xitt.analysis.report import selection_table

    import pandas as pd

    rows = [{"model": "tiny", "target": "demo", "transfer": "zero_shot", "freezing": "none", "train_lang": "en", "training": "",
             "size": "s", "itt": itt, "seed": 1, "lang": lang, "selection": "best", "selected_epoch": epoch,
             "epochs_run": 10, "epoch_budget": 10, "dev_lang": "en", "dev_f1": best, "dev_f1_best": best,
             "dev_f1_last": last, "scored_model": "", "metric": "f1"}
            for itt, epoch, best, last in (("none", 10, 80.0, 80.0), ("demo", 4, 90.0, 85.5))
            for lang in ("en", "near")]
    table = selection_table(pd.DataFrame(rows))
    assert len(table) == 2  # one row per trained model, not per language
    by_itt = table.set_index("itt")
    assert by_itt.loc["none", "at_budget_edge"] and not by_itt.loc["demo", "at_budget_edge"]
    assert by_itt.loc["demo", "last_minus_best"] == -4.5 and by_itt.loc["demo", "selected_epoch"] == 4
