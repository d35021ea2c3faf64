"""Bad input is refused before any work, with one paragraph naming the value, the rule and
the fix; nothing is recorded or stored for it; names from the config never leave the output
root; damaged artifacts and records are detected and rebuilt."""

import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from conftest import compose, run_script
from xitt import CONF_DIR, XittError
from xitt.core import validate
from xitt.core.cell import Cell
from xitt.core.keys import TRAINER_SETTINGS
from xitt.core.records import stored_result_key
from xitt.core.store import ArtifactStore
from xitt.core.taskspec import resolve_task
from xitt.data.f1_formats import read_conllu, read_panx_tsv, read_squad_json
from xitt.data.readers import read_csv, read_jsonl, read_tsv
from xitt.data.tasks import load_split

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
    ("seed=-1", ["seed=-1", "[0, 4294967295]"]),
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
    # Non-finite and overflowing numbers, in every float hyper-parameter and group.
    ("target.hparams.lr=inf", ["target.hparams.lr=inf", "finite number > 0"]),
    ("target.hparams.lr=-inf", ["target.hparams.lr=-inf", "finite"]),
    ("target.hparams.lr=nan", ["target.hparams.lr=nan", "finite"]),
    ("target.hparams.lr=1e400", ["target.hparams.lr=inf", "finite"]),
    ("target.hparams.lr=1" + "0" * 400, ["target.hparams.lr=1000", "finite"]),
    ("itt.hparams.lr=inf", ["itt.hparams.lr=inf", "finite"]),
    ("transfer=few_shot transfer.hparams.lr=nan", ["transfer.hparams.lr=nan", "finite"]),
    ("target.hparams.weight_decay=inf", ["target.hparams.weight_decay=inf", "finite number >= 0"]),
    ("itt.hparams.weight_decay=nan", ["itt.hparams.weight_decay=nan", ">= 0"]),
    ("target.hparams.warmup_ratio=nan", ["warmup_ratio=nan", "[0, 1]"]),
    ("itt.hparams.dropout=inf", ["itt.hparams.dropout=inf", "[0, 1)"]),
    ("+target.hparams.encoder_dropout=nan", ["encoder_dropout=nan", "[0, 1)"]),
    ("target.hparams.epochs=inf", ["epochs=inf", "whole number"]),
    ("+target.dev_ratio=nan", ["target.dev_ratio=nan", "between 0 and 1"]),
    ("+store_lock_timeout_s=inf", ["store_lock_timeout_s=inf", "finite"]),
    # Bounds of the libraries xitt calls: Lightning's seed range and Trainer, numpy's seeds.
    ("seed=99999999999999999999", ["seed=99999999999999999999", "[0, 4294967295]", "seed_everything"]),
    ("seed=4294967296", ["seed=4294967296", "4294967295"]),
    ("transfer=few_shot transfer.sample_seed=-1", ["transfer.sample_seed=-1", ">= 0"]),
    ("target=yelp_polarity target.dev_sample.seed=-1", ["target.dev_sample.seed=-1", ">= 0"]),
    ("target=yelp_polarity target.dev_sample.n=0", ["target.dev_sample.n=0", ">= 1"]),
    ("trainer.precision=abc", ["trainer.precision=abc", "32-true", "bf16-mixed", "Lightning"]),
    ("trainer.precision=true", ["trainer.precision=true", "32-true"]),
    ("trainer.precision=16-mixed", ["trainer.precision=16-mixed", "needs a GPU", "bf16-mixed"]),
    ("trainer.accelerator=xyz", ["trainer.accelerator=xyz", "cpu", "gpu"]),
    ("trainer.strategy=bogus", ["trainer.strategy=bogus", "ddp", "_target_"]),
    ("trainer.strategy=dpp", ["trainer.strategy=dpp", "did you mean `ddp`"]),
    ("trainer.devices=[-1]", ["trainer.devices=[-1]", "indices"]),
    ("trainer.devices=1.5", ["trainer.devices=1.5", ">= 1"]),
    ("trainer.num_nodes=0", ["trainer.num_nodes=0", ">= 1"]),
    ("trainer.log_every_n_steps=0", ["trainer.log_every_n_steps=0", ">= 1"]),
    ("trainer.accumulate_grad_batches=0", ["trainer.accumulate_grad_batches=0", ">= 1"]),
    ("trainer.gradient_clip_val=inf", ["trainer.gradient_clip_val=inf", "finite"]),
    ("trainer.gradient_clip_val=-1", ["trainer.gradient_clip_val=-1", ">= 0"]),
    ("+trainer.gradient_clip_algorithm=max", ["gradient_clip_algorithm=max", "norm or value"]),
    ("trainer.enable_progress_bar=maybe", ["enable_progress_bar=maybe", "true or false"]),
    ("trainer.compile=1", ["trainer.compile=1", "true or false"]),
    ("trainer.activation_checkpointing=yes", ["activation_checkpointing=yes", "true or false"]),
    ("trainer.checkpoint_every_n_epochs=-1", ["checkpoint_every_n_epochs=-1", ">= 0"]),
    ("trainer.checkpoint_min_interval_s=nan", ["checkpoint_min_interval_s=nan", "finite"]),
    ("trainer=gpu trainer.gpu_memory_gb=0", ["trainer.gpu_memory_gb=0", "> 0"]),
    ("+trainer.limit_train_batches=1.5", ["limit_train_batches=1.5", "fraction in [0, 1]"]),
    ("+trainer.max_steps=-2", ["trainer.max_steps=-2", "-1"]),
    ("+trainer.precison=32", ["trainer.precison", "did you mean `precision`"]),
    ("+trainer.max_epochs=3", ["trainer.max_epochs", "target.hparams.epochs"]),
    ("+trainer.check_val_every_n_epoch=2", ["trainer.check_val_every_n_epoch", "selection.every_n_epochs"]),
    # The freezing and pooling a model is built with, and each task type's own settings.
    ("freezing.mode=top", ["freezing.mode=top", "bottom_k"]),
    ("freezing=bottom_k freezing.stages=[tgt]", ["freezing.stages", "itt, target"]),
    ("model.pooling=max", ["model.pooling=max", "cls, last, mean"]),
    ("target=demo_ner target.metric=f1", ["metric 'f1'", "entity_f1", "word_accuracy"]),
    ("target=demo_qa target.doc_stride=80", ["target.doc_stride=80", "below 68"]),
    ("target=demo_qa target.n_best=0", ["target.n_best=0", ">= 1"]),
    ("target=demo_qa target.max_answer_length=abc", ["target.max_answer_length=abc", "whole number"]),
    ("target=demo_qa +target.hparams.doc_stride=16", ["setting of the task", "target.doc_stride=16"]),
]


@pytest.mark.parametrize("overrides, words", CATALOGUE, ids=[case for case, _ in CATALOGUE])
def test_a_bad_setting_is_refused_with_one_paragraph(overrides, words):
    with pytest.raises(XittError) as caught:
        Cell.from_config(compose(*overrides.split()))
    message = str(caught.value)
    assert "\n" not in message and len(message) < 700, message
    for word in words:
        assert word in message, message


@pytest.mark.parametrize("overrides, words", [
    ("target.hparams.epochs=0", "`target.hparams.epochs=0` is not valid"),
    ("+target.hparams.lrr=0.5", "did you mean `lr`"),
    ("seed=abc", "`seed=abc` is not valid"),
    ("model.family=../../escape", "'../../escape' cannot name a folder"),
    # Once Lightning's own tracebacks, after the tokenizer artifact was stored.
    ("trainer.precision=abc", "`trainer.precision=abc` is not valid: it must be one of Lightning's precisions"),
    ("seed=99999999999999999999", "`seed=99999999999999999999` is not valid: it must be a whole number in"),
    ("target.hparams.lr=inf", "`target.hparams.lr=inf` is not valid: it must be a finite number > 0"),
])
def test_train_py_exits_with_the_message_and_leaves_nothing(tmp_path, overrides, words):
    result = run_script("train.py", *overrides.split(), "logger=none", f"paths.root={tmp_path}")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and "\nxitt: " in result.stderr, result.stderr[-2000:]
    assert words in result.stderr, result.stderr[-2000:]
    assert not (tmp_path / "results").exists() and not (tmp_path / "store").exists()
    assert not list(tmp_path.parent.glob("escape*"))


@pytest.mark.parametrize("trainer", sorted(path.stem for path in (CONF_DIR / "trainer").glob("*.yaml")))
def test_every_trainer_config_validates(trainer):
    assert Cell.from_config(compose(f"trainer={trainer}")).training["precision"] in validate.PRECISIONS


@pytest.mark.parametrize("overrides", [
    "trainer.precision=32-true", "trainer.precision=bf16-mixed", "trainer.precision=bf16-true",
    "trainer.precision=64-true", "trainer.precision=32", "trainer=gpu trainer.precision=16-mixed",
    "trainer.accelerator=auto", "trainer=gpu trainer.accelerator=cuda", "trainer.accelerator=mps",
    "trainer.strategy=ddp_spawn", "trainer=ddp trainer.strategy=ddp", "trainer=gpu trainer.strategy=deepspeed_stage_2",
    "trainer.devices=auto", "trainer=gpu trainer.devices=[0,1]", "seed=0", "seed=4294967295",
    "trainer.gradient_clip_val=null", "+trainer.limit_train_batches=0.5", "+trainer.limit_train_batches=3",
    "+trainer.max_steps=20", "+trainer.deterministic=true", "+store_lock_timeout_s=30",
    "transfer=few_shot transfer.sample_seed=0", "+target.hparams.encoder_dropout=null",
])
def test_valid_settings_still_pass(overrides):
    cell = Cell.from_config(compose(*overrides.split()))
    stages = cell.stages()
    assert stages[-1].name == "evaluate" and all(len(stage.key) == 16 for stage in stages)
    for override in overrides.split():  # the value asked for is the value the cell holds
        name, value = override.lstrip("+").split("=", 1)
        if name.startswith("trainer.") and value not in ("null", "auto") and not value.startswith("["):
            assert str(cell.trainer[name.removeprefix("trainer.")]).lower() == value.lower(), override


def test_the_copied_lightning_lists_match_lightning():
    """validate.py keeps Lightning's names without importing torch; they must stay Lightning's."""
    import inspect
    from typing import get_args

    import pytorch_lightning as pl
    from lightning_fabric.plugins.precision.precision import _PRECISION_INPUT
    from lightning_fabric.utilities.seed import max_seed_value, min_seed_value
    from pytorch_lightning.accelerators import AcceleratorRegistry
    from pytorch_lightning.strategies import StrategyRegistry

    arguments = {name: parameter.default for name, parameter in inspect.signature(pl.Trainer).parameters.items()}
    lightning_arguments = set(TRAINER_SETTINGS) - set(validate.XITT_TRAINER_RULES) - set(validate.HYDRA_KEYS)
    assert lightning_arguments == set(arguments)
    assert all(arguments[name] is None for name in validate.NULLABLE if name in arguments)
    assert set(validate.PRECISIONS) == {str(value) for kind in get_args(_PRECISION_INPUT) for value in get_args(kind)}
    assert set(validate.STRATEGIES) == {"auto", *StrategyRegistry.available_strategies()}
    assert set(validate.ACCELERATORS) == {"auto", "gpu", *AcceleratorRegistry.available_accelerators()}
    assert validate.SEED_RANGE == (min_seed_value, max_seed_value)


def test_equal_and_shorthand_spellings_give_one_cell():
    keys = {Cell.from_config(compose(*o.split())).cell_key
            for o in ("model=xlmr_large", "model=xlmr size=large", "model=xlmr_large size=large")}
    assert len(keys) == 1


CLEAN_CSV = "text,label,source\ngood film,positive,a\nschön,negative,b\n"


@pytest.mark.parametrize("content, reader, words", [
    (b"text,label\nfine,1\nbad \xe9 byte,0\n", read_csv,
     ["Line 3", "not valid UTF-8", "Latin-1", "cp1252", "'bad é byte,0'", "iconv -f CP1252 -t UTF-8"]),
    ("text\tlabel\n\u201cquoted\u201d\t1\n".encode("cp1252"), read_tsv, ["Line 2", "cp1252", "'“quoted”\\t1'"]),
    ("text,label\nschön,1\n".encode() + "café,0\n".encode("latin-1"), read_csv, ["Line 3", "mixes encodings"]),
    (CLEAN_CSV.encode("utf-16"), read_csv, ["UTF-16 (little-endian, with a byte-order mark)", "iconv -f UTF-16 -t UTF-8"]),
    (CLEAN_CSV.encode("utf-16-le"), read_csv, ["UTF-16 (little-endian, without", "iconv -f UTF-16LE"]),
    (CLEAN_CSV.encode("utf-16-be"), read_tsv, ["UTF-16 (big-endian, without", "iconv -f UTF-16BE"]),
    (CLEAN_CSV.encode("utf-32"), read_csv, ["UTF-32", "iconv -f UTF-32"]),
    ('{"text": "x", "label": 1}\n'.encode("utf-16"), read_jsonl, ["UTF-16", "iconv"]),
    ("Paris\tB-LOC\n".encode("utf-16"), read_panx_tsv, ["UTF-16", "iconv"]),
    ("1\tMünchen\t_\tPROPN\t_\t_\t0\troot\t_\t_\n".encode("latin-1"), read_conllu, ["Line 1", "Latin-1"]),
    ('{"data": []}'.encode("utf-16-le"), read_squad_json, ["UTF-16"]),
    (b"PK\x03\x04\x00\x00\x08\x00\x00\x00", read_csv, ["NUL bytes"]),
    (b"text,label,text \na,b,c\n", read_csv, ["Line 1", "'text' twice"]),
    (b"text,label\n", read_csv, ["no data rows", "header"]),
    (b"a\tb\n1\t2\n3\n", read_tsv, ["Line 3", "1 columns"]),
    (b"a,b\n1,2\n\n  \n3\n", read_csv, ["Line 5", "1 columns"]),  # blank lines keep the count
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
    assert "\n" not in message and len(message.replace(str(path), "")) < 600, message


def _as_people_have_it(text: str, quirk: str) -> bytes:
    """A clean UTF-8 file's text as a spreadsheet program or a hand edit leaves it."""
    if quirk == "bom":
        return b"\xef\xbb\xbf" + text.encode()
    if quirk == "crlf":
        return text.replace("\n", "\r\n").encode()
    if quirk == "trailing blank lines":
        return (text + "\n\n  \n\t\n").encode()
    return b"\xef\xbb\xbf" + (text.replace("\n", "\r\n") + "\r\n\r\n").encode()  # all of them


@pytest.mark.parametrize("quirk", ["bom", "crlf", "trailing blank lines", "all"])
@pytest.mark.parametrize("reader, text", [
    (read_csv, 'text,label,source\ngood film,positive,a\n"schön, really",negative,b\n'),
    (read_tsv, "text\tlabel\ngood film\tpositive\nschön\tnegative\n"),
    (read_jsonl, '{"text": "good film", "label": "positive"}\n{"text": "sch\u2028ön", "label": 0}\n'),
    (read_panx_tsv, "Paris\tB-LOC\nis\tO\n\nBerlin\tB-LOC\n"),
    (read_conllu, "# sent_id = a\n1\tMünchen\t_\tPROPN\t_\t_\t0\troot\t_\t_\n\n"),
    (read_squad_json, json.dumps({"data": [{"paragraphs": [{"context": "Paris is big.", "qas": [
        {"id": "q", "question": "What?", "answers": [{"text": "Paris", "answer_start": 0}]}]}]}]}, indent=1)),
], ids=["csv", "tsv", "jsonl", "panx", "conllu", "squad"])
def test_files_as_people_have_them_read_as_the_clean_file(tmp_path, reader, text, quirk):
    clean, quirky = tmp_path / "clean.txt", tmp_path / "quirky.txt"
    clean.write_bytes(text.encode())
    quirky.write_bytes(_as_people_have_it(text, quirk))
    assert reader(quirky) == reader(clean)


def test_spaced_labels_and_header_names_read_as_the_clean_file(tmp_path):
    """A sentiment CSV as a spreadsheet saves it (byte-order mark, CRLF, trailing blank
    lines, spaces after the commas and around the labels) gives the rows of the clean one."""
    rows = {}
    for name, content in (("clean", "text,label,source\ngood,positive,a\nbad,negative,b\nok,neutral,c\n"),
                          ("quirky", "\ufefftext, label , source\r\ngood, positive ,a\r\nbad,negative  ,b\r\n"
                                     "ok,\tneutral,c\r\n\r\n \r\n")):
        (tmp_path / name / "english").mkdir(parents=True)
        (tmp_path / name / "english" / "test.csv").write_bytes(content.encode())
        task = resolve_task(compose("target=sentiment", "target.source=local", f"target.path={tmp_path / name}").target)
        rows[name] = load_split(task, "en", "test").to_list()
    assert [row["label"] for row in rows["clean"]] == [2, 0, 1]
    assert rows["quirky"] == rows["clean"]


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
