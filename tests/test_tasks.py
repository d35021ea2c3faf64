"""Real tasks and model ladders: the task registry and its readers (hub and local files),
unified labels, carved splits, transfer modes and their keys, every encoder family with
every head, the offline asset check, `python -m xitt.prepare --dry-run`, and the named
studies. Offline throughout; the real data slices in ../shared are read where present."""

import csv
import json
from collections import Counter
from pathlib import Path

import datasets
import pytest
import torch
import transformers
from transformers import AutoTokenizer, DataCollatorWithPadding

from conftest import compose, run_script
from xitt import XittError
from xitt.data.readers import read_csv, read_jsonl, read_tsv
from xitt.core.taskspec import HELD_OUT_DEV, split_note
from xitt.core.sources import data_parts
from xitt.data.tasks import load_split
from xitt.grid_expand import sweep_jobs
from xitt.core.cell import Cell

XNLI_LANGS = ["en", "ar", "bg", "de", "el", "es", "fr", "hi", "ru", "sw", "th", "tr", "ur", "vi", "zh"]
PAWSX_LANGS = ["en", "de", "es", "fr", "ja", "ko", "zh"]


def task(*overrides: str, group: str = "target") -> dict:
    """A task as the pipeline sees it, from the real configs."""
    cell = Cell.from_config(compose(*overrides))
    return cell.target if group == "target" else cell.itt


# -- readers -------------------------------------------------------------------------------


def test_each_reader_reads_its_format(tmp_path):
    tsv = tmp_path / "pairs.tsv"
    tsv.write_text('He said "hi.\tShe "left\tneutral\nNo quotes\there\tentailment\n', encoding="utf-8")
    rows = read_tsv(tsv, ["premise", "hypothesis", "label"])
    assert rows == {"premise": ['He said "hi.', "No quotes"], "hypothesis": ['She "left', "here"],
                    "label": ["neutral", "entailment"]}  # stray quotes do not join lines

    with open(tmp_path / "tweets.csv", "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([["text", "label"], ['a, "quoted"\nline', "positive"], ["b", "negative"]])
    assert read_csv(tmp_path / "tweets.csv") == {"text": ['a, "quoted"\nline', "b"], "label": ["positive", "negative"]}

    (tmp_path / "r.jsonl").write_text('{"body": "x", "stars": 5}\n\n{"body": "y", "stars": 1}\n')
    assert read_jsonl(tmp_path / "r.jsonl") == {"body": ["x", "y"], "stars": [5, 1]}


def test_a_ragged_line_is_named_with_its_file_and_line(tmp_path):
    (tmp_path / "bad.tsv").write_text("a\tb\tneutral\na\tneutral\n")
    with pytest.raises(XittError, match=r"Line 2 of .*bad\.tsv has 2 columns"):
        read_tsv(tmp_path / "bad.tsv", ["premise", "hypothesis", "label"])


# -- the real data slices ------------------------------------------------------------------


def test_xnli_tsv_reads_every_language_with_balanced_string_labels(shared):
    xnli = task("target=xnli", "target.source=local", f"target.path={shared / 'data/xnli'}")
    for lang in XNLI_LANGS:
        rows = load_split(xnli, lang, "validation")
        assert len(rows) == 2490, lang
        assert Counter(rows["label"]) == {0: 830, 1: 830, 2: 830}, lang


def test_the_same_xnli_pair_has_the_same_label_in_english_and_german(shared):
    xnli = task("target=xnli", "target.source=local", f"target.path={shared / 'data/xnli'}")
    english, german = load_split(xnli, "en", "validation"), load_split(xnli, "de", "validation")
    assert english["id"] == german["id"]  # parallel rows share their id
    assert english["label"] == german["label"]
    first = english[0], german[0]
    assert first[0]["premise"].startswith("And he said, Mama") and first[1]["premise"].startswith("und er hat gesagt")
    assert xnli["labels"][first[0]["label"]] == "neutral"


def test_pawsx_tsv_reads_seven_languages_as_paraphrase_labels(shared):
    pawsx = task("target=pawsx", "target.source=local", f"target.path={shared / 'data/pawsx'}")
    assert pawsx["labels"] == ["not_paraphrase", "paraphrase"]
    for lang in PAWSX_LANGS:
        rows = load_split(pawsx, lang, "validation")
        assert len(rows) == 2000 and set(rows["label"]) == {0, 1}, lang


def test_sentiment_csv_folders_are_found_by_language_name(shared):
    sentiment = task("target=sentiment", "target.source=local", f"target.path={shared / 'data/multilingual_sentiment'}",
                     "target.languages=[en,de,zh,id]")
    assert data_parts(sentiment, "de", "test")[0].path.parent.name == "german"
    english = load_split(sentiment, "en", "test")
    assert len(english) == 870 and len(load_split(sentiment, "en", "validation")) == 324
    assert set(english["label"]) == {0, 1, 2}
    assert len(load_split(sentiment, "zh", "test")) == 3000
    assert len(load_split(sentiment, "id", "validation")) == 1260
    first = next(csv.DictReader(open(shared / "data/multilingual_sentiment/english/test.csv", encoding="utf-8")))
    assert sentiment["labels"][english[0]["label"]] == first["label"] == "negative"


def test_marc_jsonl_stars_or_three_way_and_a_carved_test_split(shared):
    local = ["target=marc", "target.source=local", f"target.path={shared / 'data/marc_fewshot'}"]
    stars = task(*local, "target.split_ratio=0.7")
    assert stars["labels"] == ["1", "2", "3", "4", "5"]
    train, test = load_split(stars, "de", "train"), load_split(stars, "de", "test")
    dev = load_split(stars, "de", HELD_OUT_DEV)  # MARC's local file has no dev split: 10% of train
    assert (len(train), len(dev), len(test)) == (126, 14, 60) and not set(train["id"]) & set(test["id"])
    assert not set(dev["id"]) & (set(train["id"]) | set(test["id"]))
    assert sorted(Counter(list(train["label"]) + list(dev["label"]) + list(test["label"])).values()) == [40] * 5
    assert load_split(stars, "de", "test")["id"] == test["id"]  # the same carve every time
    assert "70%" in split_note(stars) and "'train' split" in split_note(stars)

    three_way = task(*local, "target.label_scheme=three_way", "target.split_ratio=0.7")
    assert three_way["labels"] == ["negative", "neutral", "positive"]
    whole = [label for split in ("train", HELD_OUT_DEV, "test") for label in load_split(three_way, "fr", split)["label"]]
    assert Counter(whole) == {0: 80, 1: 40, 2: 80}

    with pytest.raises(XittError, match="no 'test' split.*split_ratio"):
        load_split(task(*local), "de", "test")  # one file only: say how to carve a test split
    with pytest.raises(XittError, match="no label scheme 'five'.*stars, three_way"):
        task(*local, "target.label_scheme=five")


def test_imdb_sample_csv_splits_by_its_is_valid_column(shared):
    imdb = task("itt=imdb", "itt.source=local", f"itt.path={shared / 'data/imdb'}", group="itt")
    train, test = load_split(imdb, "en", "train"), load_split(imdb, "en", "test")
    # 10% of the 800 training reviews are held out as the development split
    assert (len(train), len(load_split(imdb, "en", HELD_OUT_DEV)), len(test)) == (720, 80, 200)
    assert imdb["labels"] == ["negative", "positive"] and set(train["label"]) == {0, 1}


# -- errors that name the path and the fix -------------------------------------------------


def test_a_missing_folder_names_the_path_and_the_fix(tmp_path):
    xnli = task("target=xnli", "target.source=local", f"target.path={tmp_path / 'nowhere'}")
    with pytest.raises(XittError, match=r"the folder .*nowhere does not exist.*`target.path=") as error:
        load_split(xnli, "de", "test")
    assert "{split}-{lang}.tsv" in str(error.value)


def test_a_missing_column_and_an_unknown_label_are_named(tmp_path):
    (tmp_path / "english").mkdir()
    (tmp_path / "english" / "test.csv").write_text("tweet,label\nhello,positive\n")
    sentiment = task("target=sentiment", "target.source=local", f"target.path={tmp_path}")
    with pytest.raises(XittError, match=r"no column 'text'.*its columns are: tweet, label.*local.columns"):
        load_split(sentiment, "en", "test")
    (tmp_path / "english" / "test.csv").write_text("text,label\nhello,positive\nmeh,mixed\n")
    with pytest.raises(XittError, match=r"label values 'mixed'.*\['negative', 'neutral', 'positive'\].*label_map"):
        load_split(sentiment, "en", "test")


def test_a_language_without_a_folder_name_says_where_to_add_it(tmp_path):
    sentiment = task("target=sentiment", "target.source=local", f"target.path={tmp_path}", "target.languages=[en,sw]")
    with pytest.raises(XittError, match="`lang_names` has no entry for 'sw'"):
        load_split(sentiment, "sw", "test")


# -- the hub path, on a local data set folder ------------------------------------------------


def test_hub_integer_labels_are_read_by_class_name_not_position(tmp_path):
    """The hub's XNLI has integer labels; a source whose class list is in another order
    must still give each pair its meaning (here, a data set folder read by `load_dataset`)."""
    features = datasets.Features({"premise": datasets.Value("string"), "hypothesis": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["contradiction", "entailment", "neutral"])})
    rows = {"premise": ["p1", "p2", "p3"], "hypothesis": ["h1", "h2", "h3"], "label": [0, 1, 2]}
    (tmp_path / "de").mkdir()
    datasets.Dataset.from_dict(rows, features=features).to_parquet(str(tmp_path / "de" / "test.parquet"))
    xnli = task("target=xnli", f"target.hub.path={tmp_path}", "target.hub.name=null", '+target.hub.data_dir="{lang}"')
    unified = load_split(xnli, "de", "test")
    assert [xnli["labels"][label] for label in unified["label"]] == ["contradiction", "entailment", "neutral"]


# -- splits read from a data set of their own: XQuAD and MLQA train on SQuAD v1.1 ----------


def squad_file(path: Path, prefix: str, n: int) -> Path:
    """A SQuAD v1.1 JSON file of `n` questions with ids `<prefix>-<i>`."""
    paragraphs = [{"context": f"Answer {i} is here.", "qas": [{"id": f"{prefix}-{i}", "question": f"What is {i}?",
                                                               "answers": [{"text": f"Answer {i}", "answer_start": 0}]}]}
                  for i in range(n)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"version": "1.1", "data": [{"title": prefix, "paragraphs": paragraphs}]}))
    return path


def test_xquad_and_mlqa_train_on_squad_v1_1_and_test_on_their_own_hub_data():
    for name, test_part in (("xquad", ("google/xquad", "xquad.de", "validation")),
                            ("mlqa", ("google/xtreme", "MLQA.de.de", "test"))):
        qa = task(f"target={name}")
        for split in ("train", HELD_OUT_DEV):  # model selection holds its share out of SQuAD's train
            (part,) = data_parts(qa, "en", split)
            assert (part.path, part.name, part.split) == ("rajpurkar/squad", "plain_text", "train")
        (part,) = data_parts(qa, "de", "test")
        assert (part.path, part.name, part.split) == test_part
        assert split_note(qa).startswith("train is read from rajpurkar/squad (plain_text), split train")
        # SQuAD is English: training in another language is refused, naming the setting
        with pytest.raises(XittError, match=r"reads its train split from rajpurkar/squad, which has en only, "
                                            r"not 'de' \(`<group>.hub.splits.train.languages`\)"):
            data_parts(qa, "de", "train")
        own_language = Cell.from_config(compose(f"target={name}", "transfer=target_finetune", "target_lang.langs=[de]"))
        with pytest.raises(XittError, match="has en only, not 'de'"):  # as the run's asset check finds it
            [data_parts(*need) for need in own_language.data_needs()]


def test_the_train_and_test_splits_read_their_own_files(shared, tmp_path):
    """Local files: SQuAD stands in as a file written here, in a folder of its own; the
    test sets are the real XQuAD files."""
    squad_file(tmp_path / "squad" / "train-v1.1.json", "squad", 50)
    xquad = task("target=xquad", "target.source=local", f"target.path={shared / 'data/xquad'}",
                 f"target.local.splits.train.path={tmp_path / 'squad'}")
    train, dev = load_split(xquad, "en", "train"), load_split(xquad, "en", HELD_OUT_DEV)
    assert len(train) == 45 and len(dev) == 5 and not set(train["id"]) & set(dev["id"])
    assert all(example_id.startswith("squad-") for example_id in [*train["id"], *dev["id"]])
    test = load_split(xquad, "de", "test")
    assert len(test) == 1190 and not any(example_id.startswith("squad-") for example_id in test["id"])
    assert f"train is read from train-v1.1.json under {tmp_path / 'squad'}" in split_note(xquad)
    # without the train split's own folder it is looked for beside the test files, and named when missing
    beside = task("target=xquad", "target.source=local", f"target.path={shared / 'data/xquad'}")
    with pytest.raises(XittError, match=r"no file train-v1.1.json in .*xquad.*`<group>.local.splits.train.path="):
        load_split(beside, "en", "train")


def test_the_train_split_of_its_own_goes_through_the_hub_reader(tmp_path):
    """The hub path, with a local data set folder standing in for each hub data set (no
    network): the train split comes from the one its entry names, the test split from the task's."""
    for folder, prefix in (("squad", "squad"), ("xquad", "xquad")):
        rows = [{"id": f"{prefix}-{i}", "question": f"What is {i}?", "context": f"Answer {i} is here.",
                 "answers": {"text": [f"Answer {i}"], "answer_start": [0]}} for i in range(20)]
        (tmp_path / folder).mkdir()
        (tmp_path / folder / ("train.jsonl" if prefix == "squad" else "validation.jsonl")).write_text(
            "\n".join(json.dumps(row) for row in rows))
    xquad = task("target=xquad", f"target.hub.path={tmp_path / 'xquad'}", "target.hub.name=null",
                 f"target.hub.splits.train.path={tmp_path / 'squad'}", "target.hub.splits.train.name=null")
    assert set(load_split(xquad, "en", "train")["id"]) | set(load_split(xquad, "en", HELD_OUT_DEV)["id"]) == {
        f"squad-{i}" for i in range(20)}
    assert set(load_split(xquad, "de", "test")["id"]) == {f"xquad-{i}" for i in range(20)}


# -- transfer modes and their keys ---------------------------------------------------------


def test_each_transfer_mode_trains_on_the_languages_it_says():
    assert Cell.from_config(compose("transfer=zero_shot")).train_langs_for("far") == ["en"]
    assert Cell.from_config(compose("transfer=target_finetune")).train_langs_for("far") == ["far"]
    few = Cell.from_config(compose("transfer=few_shot", "transfer.k=4"))
    assert few.train_langs_for("far") == ["far"]
    training = few.target_training_task
    assert training["train_sample"] == {"per_class": 4, "seed": 1} and training["hparams"]["epochs"] == 20


def test_few_shot_starts_from_the_zero_shot_model_and_keys_everything_that_shapes_it():
    zero = Cell.from_config(compose("transfer=zero_shot"))
    few = Cell.from_config(compose("transfer=few_shot"))
    assert few.english_target_key == zero.target_key(["en"])  # one English model for both
    keys = {few.target_key(["far"]), few.target_key(["near"]),
            Cell.from_config(compose("transfer=few_shot", "transfer.k=16")).target_key(["far"]),
            Cell.from_config(compose("transfer=few_shot", "transfer.sample_seed=2")).target_key(["far"]),
            Cell.from_config(compose("transfer=target_finetune")).target_key(["far"])}
    assert len(keys) == 5


def test_few_shot_samples_k_per_class_and_a_larger_k_extends_a_smaller_one():
    base = Cell.from_config(compose("transfer=few_shot")).target

    def sample(k: int, seed: int) -> datasets.Dataset:
        return load_split({**base, "train_sample": {"per_class": k, "seed": seed}}, "mid", "train")

    four, eight = sample(4, 1), sample(8, 1)
    assert Counter(four["label"]) == {0: 4, 1: 4, 2: 4} and set(four["id"]) < set(eight["id"])
    assert set(sample(4, 2)["id"]) != set(four["id"])
    with pytest.raises(XittError, match="fewer than the 1000 per class"):
        sample(1000, 1)


def test_translate_train_reads_the_declared_translations_or_says_the_task_has_none(tmp_path):
    xnli = Cell.from_config(compose("target=xnli", "transfer=translate_train", "target.source=local",
                                    f"target.path={tmp_path}")).target_training_task
    assert data_parts(xnli, "de", xnli["train_split"])[0].path == tmp_path / "XNLI-MT-1.0/multinli/multinli.train.de.tsv"
    assert data_parts(xnli, "en", xnli["train_split"])[0].path == tmp_path / "train-en.tsv"
    hub = Cell.from_config(compose("target=xnli", "transfer=translate_train")).target_training_task
    assert data_parts(hub, "de", hub["train_split"])[0].split == "train"
    with pytest.raises(XittError, match="'sentiment' has no machine-translated training sets"):
        Cell.from_config(compose("target=sentiment", "transfer=translate_train"))


@pytest.mark.slow
def test_few_shot_on_carved_xnli_files_reuses_the_english_model_of_zero_shot(shared, tmp_path):
    """A real local-files cell, tiny model: XNLI dev files carved 70/30 into train/test,
    English training, then 4 examples per class in each language; the zero-shot cell that
    follows trains nothing new, since its target model is the few-shot cells' English one."""
    from xitt.core.store import ArtifactStore

    common = ["model=tiny", "itt=none", "target=xnli", "target.source=local", f"target.path={shared / 'data/xnli'}",
              "target.split_ratio=0.7", "target_lang.langs=[en,de]", "target.hparams.epochs=1",
              "target.hparams.max_length=32", "logger=none", f"paths.root={tmp_path}", "trainer.enable_progress_bar=false"]
    few_shot = run_script("train.py", *common, "transfer=few_shot", "transfer.k=4", "transfer.hparams.epochs=2")
    assert few_shot.returncode == 0, few_shot.stderr[-3000:]
    records = [json.loads(p.read_text()) for p in (tmp_path / "results").rglob("*.json")
               if not p.name.endswith(".predictions.json")]
    assert sorted((r["lang"], r["train_lang"], r["few_shot_k"], r["few_shot_seed"]) for r in records) == [
        ("de", "de", 4, 1), ("en", "en", 4, 1)]
    assert all(r["n"] == 747 and "70%" in r["split_note"] for r in records)  # 30% of 2,490 pairs
    built = [event["key"] for event in ArtifactStore(tmp_path / "store").events() if event["kind"] == "target"]
    assert len(built) == 3  # the English model, then one few-shot model per language

    zero_shot = run_script("train.py", *common, "transfer=zero_shot")
    assert zero_shot.returncode == 0, zero_shot.stderr[-3000:]
    assert [e["key"] for e in ArtifactStore(tmp_path / "store").events() if e["kind"] == "target"] == built


def test_the_offline_check_names_missing_local_files_before_training(tmp_path):
    from xitt.stages.pipeline import CellRunner

    runner = CellRunner(compose("target=xnli", "target.source=local", f"target.path={tmp_path}", "itt=none",
                                "target_lang.langs=[en,de]", f"paths.root={tmp_path / 'out'}", "logger=none"))
    with pytest.raises(XittError, match=r"lacks local file .*train-en\.tsv; local file .*test-de\.tsv"):
        runner.check_assets()


# -- model ladders -------------------------------------------------------------------------


def test_family_shorthands_resolve_to_real_hub_ids_with_their_pooling():
    expected = {
        "mt5_small": ("google/mt5-small", "mean", "MT5EncoderModel"),
        "mt5_xxl": ("google/mt5-xxl", "mean", "MT5EncoderModel"),
        "mbert_base": ("google-bert/bert-base-multilingual-cased", "cls", None),
        "mdeberta_base": ("microsoft/mdeberta-v3-base", "cls", None),
        "distilmbert_base": ("distilbert/distilbert-base-multilingual-cased", "cls", None),
        "bert_large": ("google-bert/bert-large-uncased", "cls", None),
        "roberta_base": ("FacebookAI/roberta-base", "cls", None),
        "xlnet_base": ("xlnet/xlnet-base-cased", "last", None),
        "xlmr_xl": ("facebook/xlm-roberta-xl", "cls", None),
    }
    for shorthand, (hub_id, pooling, encoder_class) in expected.items():
        model = Cell.from_config(compose(f"model={shorthand}")).model
        assert (model["name_or_path"], model["pooling"], model.get("encoder_class")) == (hub_id, pooling, encoder_class)


def _tiny_family_configs(vocab_size: int, pad_token_id: int) -> dict:
    """One tiny random config per architecture family, 3 layers each."""
    common = {"vocab_size": vocab_size, "pad_token_id": pad_token_id}
    bert_like = {"hidden_size": 32, "num_hidden_layers": 3, "num_attention_heads": 2, "intermediate_size": 64,
                 "max_position_embeddings": 64, **common}
    return {  # family: (config, encoder_class, pooling)
        "xlmr": (transformers.XLMRobertaConfig(**bert_like), None, "cls"),
        "mt5": (transformers.MT5Config(d_model=32, d_kv=16, d_ff=64, num_layers=3, num_heads=2, **common),
                "MT5EncoderModel", "mean"),
        "mbert": (transformers.BertConfig(**bert_like), None, "cls"),
        "mdeberta": (transformers.DebertaV2Config(relative_attention=True, pos_att_type=["p2c", "c2p"],
                                                  position_buckets=16, **bert_like), None, "cls"),
        "distilmbert": (transformers.DistilBertConfig(dim=32, n_layers=3, n_heads=2, hidden_dim=64,
                                                      max_position_embeddings=64, **common), None, "cls"),
        "xlnet": (transformers.XLNetConfig(d_model=32, n_layer=3, n_head=2, d_inner=64, **common), None, "last"),
    }


@pytest.fixture(scope="module")
def tiny_checkpoints(tmp_path_factory) -> dict:
    """Each family as a local checkpoint folder (random weights + a tiny tokenizer); the
    XLNet one pads on the left, as XLNet's tokenizer does."""
    from xitt.data.tokenizer import _train_demo_tokenizer

    root = tmp_path_factory.mktemp("families")
    _train_demo_tokenizer(400, root / "tokenizer")
    tokenizer = AutoTokenizer.from_pretrained(root / "tokenizer")
    checkpoints = {}
    for family, (config, encoder_class, pooling) in _tiny_family_configs(len(tokenizer), tokenizer.pad_token_id).items():
        folder = root / family
        torch.manual_seed(0)
        model = (getattr(transformers, encoder_class)(config) if encoder_class
                 else transformers.AutoModel.from_config(config))
        model.save_pretrained(folder)
        padding_side = "left" if family == "xlnet" else "right"
        AutoTokenizer.from_pretrained(root / "tokenizer", padding_side=padding_side).save_pretrained(folder)
        checkpoints[family] = (folder, encoder_class, pooling)
    return checkpoints


@pytest.mark.parametrize("family", ["xlmr", "mt5", "mbert", "mdeberta", "distilmbert", "xlnet"])
def test_every_family_trains_with_the_head_and_freezes_its_bottom_layers(tiny_checkpoints, family):
    from xitt.models.encoder import _layer_list, apply_freezing, build_encoder, count_parameters
    from xitt.tasktypes.classification.training import SequenceClassifier

    folder, encoder_class, pooling = tiny_checkpoints[family]
    # the tiny checkpoints hold 64 positions (62 usable by XLM-R): shorter inputs than the demo's
    overrides = ["model=hf", f"model.name_or_path={folder}", f"model.pooling={pooling}", "itt=none",
                 "target.hparams.max_length=32"]
    if encoder_class:
        overrides.append(f"+model.encoder_class={encoder_class}")
    model = Cell.from_config(compose(*overrides)).model
    tokenizer = AutoTokenizer.from_pretrained(folder)
    encoder = build_encoder(model, len(tokenizer), tokenizer.pad_token_id, seed=1)
    assert count_parameters(encoder) > 0 and (encoder_class is None or type(encoder).__name__ == encoder_class)
    classifier = SequenceClassifier(encoder, 3, {"dropout": 0.0, "lr": 1e-3, "weight_decay": 0.0, "warmup_ratio": 0.0},
                                    model["pooling"])
    pairs = [tokenizer("the film was good", "it was fine"), tokenizer("the plot was very bad and so long", "no")]
    batch = dict(DataCollatorWithPadding(tokenizer)(pairs))
    if family == "xlnet":
        assert tokenizer.padding_side == "left" and batch["attention_mask"][0, 0] == 0

    # pooling finds the same token with or without padding: the short text alone scores the same
    classifier.eval()
    with torch.no_grad():
        alone = classifier(**dict(DataCollatorWithPadding(tokenizer)(pairs[:1])))[0]
        padded = classifier(**batch)[0]
    assert torch.allclose(alone, padded, atol=1e-5)

    classifier.train()
    apply_freezing(encoder, "bottom_k", 1)
    loss = torch.nn.functional.cross_entropy(classifier(**batch), torch.tensor([0, 2]))
    loss.backward()
    assert torch.isfinite(loss)
    layers = _layer_list(encoder)
    assert len(layers) == 3
    assert encoder.get_input_embeddings().weight.grad is None
    assert all(p.grad is None and not p.requires_grad for p in layers[0].parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in layers[1].parameters())
    assert all(p.grad is not None for p in classifier.head.parameters())


def test_an_encoder_decoder_checkpoint_without_encoder_class_says_how_to_load_it(tiny_checkpoints, tmp_path):
    from xitt.models.encoder import load_encoder

    encoder_only = tiny_checkpoints["mt5"][0]  # saved from MT5EncoderModel, as xitt's artifacts are
    assert type(load_encoder(encoder_only)).__name__ == "MT5EncoderModel"
    config = transformers.MT5Config.from_pretrained(encoder_only)
    transformers.MT5ForConditionalGeneration(transformers.MT5Config(**{**config.to_dict(), "is_encoder_decoder": True,
                                                                        "architectures": None})).save_pretrained(tmp_path)
    with pytest.raises(XittError, match=r"encoder-decoder \(MT5\).*\+model.encoder_class=MT5EncoderModel"):
        load_encoder(tmp_path)


# -- prepare and the named studies ---------------------------------------------------------


def test_prepare_dry_run_lists_every_model_and_data_set_of_a_sweep_offline(tmp_path):
    result = run_script("-m", "xitt.prepare", "--dry-run", "model=xlmr_base,mt5_small", "itt=none,mnli,anli",
                        "target=xnli", "target_lang.langs=[en,de]", env={"HF_HOME": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "6 cells need:" in out
    for line in ("model FacebookAI/xlm-roberta-base", "model google/mt5-small",
                 "data set facebook/xnli (en): train, validation, test", "data set facebook/xnli (de): test",
                 "data set nyu-mll/glue (mnli): train", "data set facebook/anli (plain_text): train_r1, train_r2, train_r3"):
        assert line in out, line
    assert not any(Path(tmp_path).iterdir())  # nothing downloaded


def test_prepare_plans_squad_train_and_the_qa_test_sets_of_xquad_and_mlqa(tmp_path):
    # offline, prepare lists what it would download, then says it cannot download it
    result = run_script("-m", "xitt.prepare", "target=xquad,mlqa", "itt=none", env={"HF_HOME": str(tmp_path)})
    assert result.returncode == 1 and "2 cells need:" in result.stdout
    assert "HF_HUB_OFFLINE=1 is set, so nothing can be downloaded" in result.stderr
    assert "PROBLEM" not in result.stderr  # both cells can run once the caches hold these
    lines = result.stdout.splitlines()
    assert "  data set rajpurkar/squad (plain_text): train" in lines
    assert {"  data set google/xquad (xquad.de): validation", "  data set google/xtreme (MLQA.de.de): test"} <= set(lines)
    assert not any("google/xquad" in line and "train" in line for line in lines)
    assert not any(Path(tmp_path).iterdir())  # nothing downloaded
    # local files: SQuAD's train file is checked where the train split's own section says
    local = ["target=xquad", "itt=none", "target.source=local", f"target.path={tmp_path / 'xquad'}",
             f"target.local.splits.train.path={tmp_path / 'squad'}", "target_lang.langs=[en,de]"]
    missing = run_script("-m", "xitt.prepare", *local)
    assert missing.returncode == 1
    for path in (tmp_path / "squad/train-v1.1.json", tmp_path / "xquad/xquad.de.json"):
        assert f"missing local file {path}" in missing.stderr
    squad_file(tmp_path / "squad" / "train-v1.1.json", "squad", 3)
    for lang in ("en", "de"):
        squad_file(tmp_path / "xquad" / f"xquad.{lang}.json", "xquad", 3)
    ready = run_script("-m", "xitt.prepare", *local)
    assert ready.returncode == 0, ready.stderr
    assert f"local file {tmp_path / 'squad/train-v1.1.json'}" in ready.stdout


def test_prepare_reports_missing_local_files_and_cells_that_cannot_run(tmp_path):
    # nothing here comes from the hub, so prepare runs (offline) and only checks
    result = run_script("-m", "xitt.prepare", "target=sentiment", "target.source=local",
                        f"target.path={tmp_path}", "transfer=zero_shot,translate_train")
    assert result.returncode == 1 and "2 cells need:" in result.stdout
    assert f"missing local file {tmp_path}/english/train.csv" in result.stderr
    assert "'sentiment' has no machine-translated training sets" in result.stderr


def test_prepare_fetches_only_config_tokenizer_and_safetensors_files_and_every_split(tmp_path, monkeypatch):
    """The download step with the hub's two entry points stood in for (no network here):
    the model files it asks for, and `load_dataset` for real on a local data set folder."""
    import huggingface_hub
    from types import SimpleNamespace

    from xitt import prepare
    from xitt.core.sources import HubPart

    repos = {"with-safetensors": ["config.json", "model.safetensors", "pytorch_model.bin", "tf_model.h5",
                                  "sentencepiece.bpe.model", "tokenizer.json", "onnx/config.json", "README.md"],
             "bin-only": ["config.json", "pytorch_model.bin", "spiece.model", "flax_model.msgpack"]}
    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", lambda self, repo_id: SimpleNamespace(
        siblings=[SimpleNamespace(rfilename=name) for name in repos[repo_id]]))
    fetched = {}
    monkeypatch.setattr(huggingface_hub, "snapshot_download",
                        lambda repo_id, allow_patterns: fetched.setdefault(repo_id, sorted(allow_patterns)))
    for split in ("train", "test"):
        datasets.Dataset.from_dict({"text": [split], "label": [0]}).to_parquet(str(tmp_path / f"{split}.parquet"))
    dataset = HubPart(path=str(tmp_path), name=None, split=None)
    prepare.download(prepare.GridAssets(cells=1, hub_models=list(repos), hub_datasets={dataset: ["train", "test"]}))
    assert fetched == {"with-safetensors": ["config.json", "model.safetensors", "sentencepiece.bpe.model", "tokenizer.json"],
                       "bin-only": ["config.json", "pytorch_model.bin", "spiece.model"]}


def _sweep_size(*overrides: str) -> int:
    """How many cells `python train.py -m <overrides>` launches (the project's own expansion,
    which the plan and prepare use too; every named experiment's cells are composed and
    validated in test_ladder.py)."""
    return len(sweep_jobs(list(overrides)))


def test_named_studies_compose_and_expand_to_their_grids():
    xnli = compose("experiment=size_sweep_xnli", "model=mt5_xl", "itt=anli")
    cell = Cell.from_config(xnli)
    assert cell.target["name"] == "xnli" and cell.eval_langs == XNLI_LANGS and cell.transfer["mode"] == "zero_shot"
    assert cell.model["name_or_path"] == "google/mt5-xl" and cell.itt["rounds"] == [1, 2, 3]
    assert _sweep_size("experiment=size_sweep_xnli") == 7 * 4 * 3  # models x ITT tasks x seeds
    assert _sweep_size("experiment=size_sweep_xnli", "model=xlmr_base") == 4 * 3

    sentiment = Cell.from_config(compose("experiment=sentiment_transfer", "model=xlmr_base", "target=marc",
                                         "transfer=target_finetune"))
    assert (sentiment.itt["name"], sentiment.target["name"], sentiment.train_langs_for("de")) == ("imdb", "marc", ["de"])
    assert _sweep_size("experiment=sentiment_transfer") == 5 * 2 * 2 * 2 * 3
