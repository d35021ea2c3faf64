"""The depth ladder (a real pretrained encoder with its bottom L layers kept) and the XNLI
carving by premise that the smoke ladders run on."""

import pytest

from conftest import compose
from xitt.core.cell import Cell
from xitt.core.taskspec import HELD_OUT_DEV, split_note
from xitt.data.tasks import load_split


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


def test_the_report_says_when_its_sizes_are_a_depth_ladder():
    import pandas as pd

    from xitt.analysis.report import _depth_ladder_note

    records = pd.DataFrame({"model": ["e5_depth", "e5_depth", "e5_depth", "tiny"],
                            "keep_layers": [3.0, 6.0, 12.0, float("nan")]})
    (note,) = _depth_ladder_note(records)
    assert "depth ladder" in note and "e5_depth: 3, 6, 12 layers" in note and "tiny" not in note
    assert _depth_ladder_note(records[records["model"] == "tiny"]) == []
