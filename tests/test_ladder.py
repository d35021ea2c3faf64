"""The depth ladder (a real pretrained encoder with its bottom L layers kept), the XNLI
carving by premise that the smoke ladders run on, XQuAD's carving by article that the QA
ladder runs on, and the named ladder experiments' grids."""

import pytest

from conftest import compose
from xitt import CONF_DIR
from xitt.core.cell import Cell
from xitt.core.taskspec import HELD_OUT_DEV, dev_split, split_note
from xitt.data.f1_formats import read_squad_json
from xitt.data.tasks import load_split
from xitt.grid_expand import expand_grid

XQUAD_LANGS = ["en", "ar", "de", "el", "es", "hi", "ro", "ru", "th", "tr", "vi", "zh"]


def test_keep_layers_keeps_the_bottom_layers_of_the_pretrained_weights(shared, tmp_path):
    import torch

    from xitt.models.encoder import build_encoder, count_parameters, load_encoder

    full = Cell.from_config(compose("model=e5_depth_l12", f"model.name_or_path={shared}/models/multilingual-e5-small"))
    small = Cell.from_config(compose("model=e5_depth_l3", f"model.name_or_path={shared}/models/multilingual-e5-small"))
    assert small.model["keep_layers"] == 3 and small.cell_key != full.cell_key
    whole, kept = build_encoder(full.model, 0, 0, seed=1), build_encoder(small.model, 0, 0, seed=1)
    assert len(kept.encoder.layer) == kept.config.num_hidden_layers == 3
    assert count_parameters(kept) < count_parameters(whole)
    for mine, theirs in zip(kept.encoder.layer.parameters(), whole.encoder.layer[:3].parameters()):
        assert torch.equal(mine, theirs)  # the same pretrained weights, not a new initialisation
    kept.save_pretrained(tmp_path)  # a stored artifact loads with its 3 layers
    assert len(load_encoder(tmp_path).encoder.layer) == 3


def test_keep_layers_beyond_the_encoder_is_refused(shared):
    from xitt import XittError

    with pytest.raises(XittError, match=r"keep_layers=20.*12 layers"):
        Cell.from_config(compose("model=hf", f"model.name_or_path={shared}/models/multilingual-e5-small",
                                 "+model.keep_layers=20"))


def test_xnli_dev_carved_by_premise_shares_no_premise_between_train_and_test(shared):
    cell = Cell.from_config(compose("experiment=smoke_ladder_xnli", "size=l3", "itt=none",
                                    f"target.path={shared}/data/xnli"))
    train = load_split(cell.target, "en", "train")
    tests = {lang: load_split(cell.target, lang, "test") for lang in ("en", "de", "zh")}
    dev = load_split(cell.target, "en", HELD_OUT_DEV)  # model selection's, held out of training
    assert len(train) + len(dev) + len(tests["en"]) == 2490 and len(train) % 3 == len(dev) % 3 == 0  # whole premises
    assert not set(train["premise"]) & set(tests["en"]["premise"])
    # The test set is the same pairs in every language, none of them a training pair's translation.
    assert tests["de"]["id"] == tests["zh"]["id"] == tests["en"]["id"]
    assert not set(train["id"]) & set(tests["de"]["id"])
    assert "groups of rows with one premise" in split_note(cell.target)


def test_xquad_carved_by_article_shares_no_article_between_train_dev_and_test_in_any_language(shared):
    cell = Cell.from_config(compose("experiment=qa_ladder", "size=l6", "itt=none", f"target.path={shared}/data/xquad"))
    # the carve does not depend on the languages evaluated: check it in all twelve of XQuAD's
    target = {**cell.target, "languages": XQUAD_LANGS}
    splits = ("train", HELD_OUT_DEV, "test")  # HELD_OUT_DEV: model selection's English development set
    english = {split: load_split(target, "en", split) for split in splits}
    titles = {split: set(rows["title"]) for split, rows in english.items()}
    assert all(titles[split] for split in splits)
    assert not titles["train"] & titles[HELD_OUT_DEV] and not titles["train"] & titles["test"]
    assert not titles[HELD_OUT_DEV] & titles["test"]
    # every English question on exactly one side, and every side whole articles
    whole = read_squad_json(shared / "data/xquad/xquad.en.json")
    assert sum(len(rows) for rows in english.values()) == len(whole) == 1190
    for split, rows in english.items():
        assert sorted(rows["id"]) == sorted(q["id"] for q in whole if q["title"] in titles[split])
    # the same questions on each side in every language (ids and order are XQuAD's in every file)
    article_of = {q["id"]: q["title"] for q in whole}
    for lang in XQUAD_LANGS[1:]:
        for split in splits:
            rows = load_split(target, lang, split)
            assert rows["id"] == english[split]["id"], (lang, split)
            assert {article_of[id_] for id_ in rows["id"]} <= titles[split], (lang, split)
    assert "groups of rows with one title" in split_note(target)


def test_the_ladder_experiments_expand_to_their_grids_and_share_the_qa_itt_model():
    qa = expand_grid(["experiment=qa_ladder"])
    tagging = expand_grid(["experiment=tagging_ladder"])
    assert len(qa) == 2 * 2 * 3 and len(tagging) == 2 * 3 * 3  # depths x ITT arms x seeds
    qa_cells = [Cell.from_config(cfg) for _, cfg in qa]
    tagging_cells = [Cell.from_config(cfg) for _, cfg in tagging]
    assert {(c.model["size"], c.itt and c.itt["name"], c.seed) for c in qa_cells} == {
        (size, itt, seed) for size in ("l6", "l12") for itt in (None, "tydiqa") for seed in (1, 2, 3)}
    for cell in [*qa_cells, *tagging_cells]:
        assert cell.model["family"] == "e5_depth" and cell.transfer["mode"] == "zero_shot"
        target = next(stage for stage in cell.stages() if stage.name == "target")
        # the target model is selected on English development rows held out of its training split
        assert target.validates and target.dev_langs == ("en",) and dev_split(cell.target) == HELD_OUT_DEV
    assert {cell.target["name"] for cell in qa_cells} == {"xquad"} and qa_cells[0].eval_langs[0] == "en"
    assert {cell.target["name"] for cell in tagging_cells} == {"panx"}
    assert {cell.itt and cell.itt["name"] for cell in tagging_cells} == {None, "udpos", "tydiqa"}
    # `itt=tydiqa` is one ITT model per (depth, seed) in both experiments: the store trains it once
    qa_itt = {(c.model["size"], c.seed): c.itt_key for c in qa_cells if c.itt}
    tagging_itt = {(c.model["size"], c.seed): c.itt_key for c in tagging_cells if c.itt and c.itt["name"] == "tydiqa"}
    assert qa_itt == tagging_itt and len(set(qa_itt.values())) == 6


def test_panx_selects_on_english_rows_held_out_of_training_never_on_a_scored_file(shared):
    cell = Cell.from_config(compose("experiment=tagging_ladder", "size=l6", "itt=udpos",
                                    f"target.path={shared}/data/panx", f"itt.path={shared}/data/udpos"))
    train, dev = load_split(cell.target, "en", "train"), load_split(cell.target, "en", HELD_OUT_DEV)
    assert len(train) == cell.target["train_sample"]["n"] and len(dev) == cell.target["dev_sample"]["n"]
    assert not set(train["id"]) & set(dev["id"])  # both from train-en.tsv, whose ids are sentence numbers
    assert "10% of train, held out of training" in split_note(cell.target)
    # the ITT trains on EWT's dev file and watches its test file: POS only, no PAN-X sentence
    assert len(load_split(cell.itt, "en", cell.itt["train_split"])) == 2001


@pytest.mark.parametrize("experiment", sorted(path.stem for path in (CONF_DIR / "experiment").glob("*.yaml")))
def test_every_named_experiment_composes_into_valid_cells(experiment):
    cells = expand_grid([f"experiment={experiment}", "seed=1"])
    assert cells
    for _, cfg in cells:
        Cell.from_config(cfg)  # validated: a bad setting fails here with its one-paragraph message


def test_the_report_says_when_its_sizes_are_a_depth_ladder():
    import pandas as pd

    from xitt.analysis.report import _depth_ladder_note

    records = pd.DataFrame({"model": ["e5_depth", "e5_depth", "e5_depth", "tiny"],
                            "keep_layers": [3.0, 6.0, 12.0, float("nan")]})
    (note,) = _depth_ladder_note(records)
    assert "depth ladder" in note and "e5_depth: 3, 6, 12 layers" in note and "tiny" not in note
    assert _depth_ladder_note(records[records["model"] == "tiny"]) == []
