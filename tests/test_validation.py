"""Bad input is refused before any work, with one paragraph naming the value, the rule and
the fix; nothing is recorded or stored for it; names from the config never leave the output
root; damaged artifacts and records are detected and rebuilt."""

from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from conftest import compose, run_script
from xitt import XittError
from xitt.core.cell import Cell
from xitt.core.records import stored_result_key
from xitt.core.store import ArtifactStore
from xitt.data.readers import read_csv, read_jsonl, read_tsv

# (overrides, words the message must hold: the value or setting, and the way out)
CATALOGUE = [
    ("target.hparams.lr=abc", ["target.hparams.lr=abc", "> 0"]),
    ("target.hparams.lr=-1", ["target.hparams.lr=-1", "> 0"]),
    ("itt.hparams.lr=0", ["itt.hparams.lr=0", "> 0"]),
    ("target.hparams.epochs=0", ["target.hparams.epochs=0", ">= 1"]),
    ("target.hparams.epochs=-1", ["epochs=-1", ">= 1"]),
    ("target.hparams.epochs=1.5", ["epochs=1.5", "whole number"]),
    ("target.hparams.batch_size=0", ["batch_size=0", ">= 1"]),
    ("target.hparams.dropout=1.5", ["dropout=1.5", "[0, 1)"]),
    ("target.hparams.dropout=1", ["dropout=1", "[0, 1)"]),
    ("target.hparams.max_length=0", ["max_length=0", ">= 1"]),
    ("target.hparams.max_length=100000", ["max_length=100000", "at most 512"]),
    ("target.hparams.warmup_ratio=2", ["warmup_ratio=2", "[0, 1]"]),
    ("target.hparams.weight_decay=-0.1", ["weight_decay=-0.1", ">= 0"]),
    ("+target.hparams.lrr=0.5", ["target.hparams.lrr", "did you mean `lr`"]),
    ("+itt.hparams.epoch=3", ["itt.hparams.epoch", "did you mean `epochs`"]),
    ("transfer=few_shot +transfer.hparams.bach_size=4", ["transfer.hparams.bach_size", "batch_size"]),
    ("+transfer.lang=de", ["transfer.lang", "train_lang"]),
    ("+freezing.kk=2", ["freezing.kk", "did you mean `k`"]),
    ("+seeed=3", ["seeed", "did you mean `seed`"]),
    ("num_workers=-1", ["num_workers=-1", ">= 0"]),
    ("trainer.devices=0", ["trainer.devices=0", ">= 1"]),
    ("seed=-1", ["seed=-1", ">= 0"]),
    ("seed=abc", ["seed=abc", "whole number"]),
    ("seed=1.7", ["seed=1.7", "whole number"]),
    ("target_lang.langs=[]", ["target_lang.langs=[]", "target_lang=all"]),
    ("target_lang.langs=[xx]", ["no language xx", "target_lang.langs"]),
    ("model=xlmr_large size=base", ["model=xlmr_large", "size=base", "model=xlmr_base"]),
    ("model=hf", ["model.name_or_path"]),
    ("model=tiny size=xl", ["no size 'xl'", "s, m, l"]),
    ("freezing=bottom_k freezing.k=9", ["freezing.k=9", "2 layers"]),
    ("freezing=bottom_k freezing.k=-1", ["freezing.k=-1", ">= 0"]),
    ("transfer=few_shot transfer.k=0", ["transfer.k", "> 0"]),
    ("transfer=few_shot transfer.sample_seed=abc", ["sample_seed=abc"]),
    ("transfer=translate_train", ["no machine-translated training sets", "transfer=zero_shot"]),
    ("model.family=../../x", ["'../../x'", "model.family"]),
    ("target.name=../y", ["'../y'", "target.name"]),
    ("itt.name=a/b", ["'a/b'", "itt.name"]),
    ("target_lang.langs=[../en]", ["'../en'", "target_lang.langs"]),
]


@pytest.mark.parametrize("overrides, words", CATALOGUE, ids=[case for case, _ in CATALOGUE])
def test_a_bad_setting_is_refused_with_one_paragraph(overrides, words):
    with pytest.raises(XittError) as caught:
        Cell.from_config(compose(*overrides.split()))
    message = str(caught.value)
    assert "\n" not in message and len(message) < 700, message
    for word in words:
        assert word in message, message


@pytest.mark.parametrize("overrides", ["target.hparams.epochs=0", "+target.hparams.lrr=0.5", "seed=abc",
                                       "model.family=../../escape"])
def test_train_py_exits_with_the_message_and_leaves_nothing(tmp_path, overrides):
    result = run_script("train.py", *overrides.split(), "logger=none", f"paths.root={tmp_path}")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and "\nxitt: " in result.stderr, result.stderr[-2000:]
    assert not (tmp_path / "results").exists() and not (tmp_path / "store").exists()
    assert not list(tmp_path.parent.glob("escape*"))


def test_equal_and_shorthand_spellings_give_one_cell():
    keys = {Cell.from_config(compose(*o.split())).cell_key
            for o in ("model=xlmr_large", "model=xlmr size=large", "model=xlmr_large size=large")}
    assert len(keys) == 1


@pytest.mark.parametrize("content, reader, words", [
    (b"text,label\nfine,1\nbad \xe9 byte,0\n", read_csv, ["Line 3", "not UTF-8", "iconv"]),
    (b"text,label\n", read_csv, ["no data rows", "header"]),
    (b"a\tb\n1\t2\n3\n", read_tsv, ["Line 3", "1 columns"]),
    (b'{"text": "x", "label": 1}\n{"text": \n', read_jsonl, ["Line 2", "not valid JSON"]),
    (b"", read_csv, ["empty"]),
])
def test_data_errors_name_the_file_and_the_line(tmp_path, content, reader, words):
    path = tmp_path / "data.txt"
    path.write_bytes(content)
    with pytest.raises(XittError) as caught:
        reader(path)
    message = str(caught.value)
    assert str(path) in message and all(word in message for word in words), message


def _artifact(store: ArtifactStore, key: str) -> Path:
    def build(out: Path) -> dict:
        save_file({"weight": np.ones((64, 64), dtype=np.float32)}, str(out / "model.safetensors"))
        return {}
    return store.get_or_build("itt", key, build, {})


@pytest.mark.parametrize("damage", ["truncated weights", "meta not json"])
def test_a_damaged_artifact_is_moved_aside_and_rebuilt(tmp_path, damage):
    store = ArtifactStore(tmp_path)
    folder = _artifact(store, "k1")
    if damage == "truncated weights":
        weights = folder / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[:1000])
    else:
        (folder / "meta.json").write_text("{not json")
    assert not store.has("itt", "k1")
    rebuilt = _artifact(store, "k1")
    assert store.has("itt", "k1") and rebuilt == folder
    assert len(list(tmp_path.glob("itt/k1.corrupt-*"))) == 1
    assert [event["key"] for event in store.events()] == ["k1", "k1"]


def test_a_truncated_record_counts_as_missing(tmp_path):
    record = tmp_path / "en.json"
    record.write_text('{"result_key": "abc", "f1": 5')
    assert stored_result_key(record) is None
    record.write_text('{"result_key": "abc", "f1": 5}')
    assert stored_result_key(record) == "abc"


@pytest.mark.parametrize("multirun", [False, True])
def test_an_output_root_that_is_a_file_is_refused_before_hydra_writes(tmp_path, multirun):
    root = tmp_path / "a-file"
    root.write_text("not a folder")
    result = run_script("train.py", *(["-m", "seed=1,2"] if multirun else []), "logger=none", f"paths.root={root}")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"`paths.root={root}` cannot hold the run's folders (it is a file)" in result.stderr


def test_data_problems_stop_the_cell_before_any_training(tmp_path):
    """A label the task does not know, in a test file of a language evaluated last: found
    when the cell starts, before the ITT and target stages train."""
    data = tmp_path / "data"
    (data / "english").mkdir(parents=True)
    (data / "german").mkdir()
    (data / "english" / "train.csv").write_text("text,label\ngood,positive\nbad,negative\nok,neutral\n")
    (data / "english" / "test.csv").write_text("text,label\ngood,positive\n")
    (data / "english" / "valid.csv").write_text("text,label\nfine,positive\n")  # model selection reads it
    (data / "german" / "test.csv").write_text("text,label\ngut,positiv\n")
    result = run_script("train.py", "target=sentiment", "target.source=local", f"target.path={data}",
                        "target_lang.langs=[en,de]", "logger=none", f"paths.root={tmp_path / 'out'}")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "german/test.csv" in result.stderr and "'positiv'" in result.stderr and "label_map" in result.stderr
    assert not (tmp_path / "out" / "store" / "itt").exists()  # the demo ITT never started
