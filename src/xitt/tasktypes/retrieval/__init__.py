"""Sentence retrieval, as XTREME's two retrieval tasks score an encoder without training it
for the task: bitext mining (BUCC: pairs mined by ratio margin above a threshold, scored by
F1 against the gold pairs) and translation retrieval (Tatoeba: each sentence's nearest
English sentence, scored by accuracy@1). A retrieval target has no training stage: it
scores the encoder it is given (pretrained, after ITT, or of any stored model).

Settings (`retrieval:` of the task; checked before work by `Retrieval.check`):
- `mode`: `mining` (primary score `f1`, with precision and recall) or `nearest` (primary
  `accuracy`, xx -> en, with `reverse_accuracy`, en -> xx, beside it);
- `layer`: whose token states are averaged into a sentence embedding: `last`, `middle`
  (XTREME's choice for encoders trained by masked language modelling only: layer 7 of 12,
  i.e. the layer count // 2 + 1) or a layer number (1 = the first transformer layer);
- `prefix`: text put before every sentence (e5 was trained with `query: `);
- `margin_k` (mining: the k nearest neighbours of the ratio margin, 4 as in XTREME),
  `dev_ratio` (the share of sentence groups carved as the development part on which the
  mining threshold is tuned, never scored), `distractor_ratio` (of each part's groups, this
  share loses its English side and another share its other side, so that mining must also
  reject), `data_seed` (the carve and the distractors: fixed, not the training seed),
  `group` (the column whose value groups sentences that stay on one side of the carve:
  XNLI's premise, with its hypotheses), `sentences` (the columns holding sentences);
- `pivot_sentence`: the column that holds each row's English translation when a language's
  rows carry both sides (the hub's `google/xtreme` tatoeba and bucc18 configs:
  `target_sentence`); null: the English side is read from the `pivot_lang` files, once for
  every language (XNLI's aligned files, one sentence per line). Rows read from BUCC's own
  files come with their side marked (`format: bucc`) and need no such column;
- `aligned`: every sentence has its translation on the other side (aligned files, rows
  holding both sides): sides that differ are an error. false: BUCC's own files, where the
  gold pairs say which sentences are translations and the others are distractors already.

Unified rows: `id` (the same in every language for translations of one sentence), `text`,
`group`, `side` (`own`, or `pivot` for an English sentence in a language's own rows). The
English side is the task's `pivot_lang` (read like any language, never scored), or the
`pivot` rows of each language.

A predictions file: `ids` (the scored sentences of the language), `gold` and `pred` (the id
of the English sentence that is its translation, and the one retrieved or mined; '' for
none), with, for mining, each mined pair's `margin`, the `threshold` and where it came
from; for nearest, the reverse direction under `reverse`.
"""

from collections.abc import Mapping
from typing import Any

import numpy as np

from xitt import XittError
from xitt.tasktypes.base import MIN_EXAMPLES, TaskType, row_ids, source_columns

MODES = {"mining": "f1", "nearest": "accuracy"}  # mode: its primary score
MINING_F1, NEAREST_ACCURACY = "mining_f1", "retrieval_accuracy"
LAYERS = ("last", "middle")
DEFAULTS = {"mode": "nearest", "layer": "last", "prefix": "", "margin_k": 4, "dev_ratio": 0.2,
            "distractor_ratio": 0.2, "data_seed": 1, "group": None, "sentences": ["text"],
            "pivot_sentence": None, "aligned": True}
OWN, PIVOT = "own", "pivot"  # the `side` of a unified row


def settings(task: Mapping[str, Any]) -> dict[str, Any]:
    """The task's retrieval settings, with the defaults of those it does not set."""
    return {**DEFAULTS, **(task.get("retrieval") or {})}


class Retrieval(TaskType):
    name = "retrieval"
    columns = ("id", "text", "group", "side")
    trains = False
    transfer_modes = ("zero_shot",)

    def primary_for(self, task: Mapping[str, Any]) -> str:
        return MODES[settings(task)["mode"]]

    def companions_for(self, task: Mapping[str, Any]) -> tuple[str, ...]:
        return ("precision", "recall") if settings(task)["mode"] == "mining" else ("reverse_accuracy",)

    def rows_view(self, task: Mapping[str, Any]) -> dict[str, Any] | None:
        """The embeddings depend on the sentences read, the layer, the prefix and the length,
        not on the mode: a mining and a nearest task over the same files share them."""
        chosen = settings(task)
        read = ("source", "path", "corpus", "local", "hub", "test_split", "test_sample")
        view = {"data": {name: task.get(name) for name in read},
                "sentences": chosen["sentences"], "group": chosen["group"], "layer": chosen["layer"],
                "prefix": chosen["prefix"], "max_length": task["hparams"]["max_length"]}
        if chosen["pivot_sentence"]:  # (absent otherwise: the keys of the rows stored before it stay)
            view["pivot_sentence"] = chosen["pivot_sentence"]
        return view

    def evaluation_languages(self, task: Mapping[str, Any], langs: list[str]) -> list[str]:
        pivot = task.get("pivot_lang")
        if settings(task)["pivot_sentence"]:  # each language's rows hold its English side
            return list(langs)
        return [*langs, pivot] if pivot and pivot not in langs else list(langs)

    def check(self, task: Mapping[str, Any], group: str) -> None:
        name = task["name"]
        if group != "target":
            raise XittError(f"Task '{name}' is a retrieval task: it trains nothing (it scores the encoder it is "
                            f"given), so it cannot be the {group} task. Use it as the target "
                            f"(`target={name}`) and pick a trained task as the intermediate one.")
        chosen = settings(task)
        unknown = sorted(set(chosen) - set(DEFAULTS))
        if unknown:
            raise XittError(f"`{group}.retrieval.{unknown[0]}` is not a retrieval setting; the settings are "
                            f"{', '.join(DEFAULTS)}. Fix or remove it.")
        if chosen["mode"] not in MODES:
            raise XittError(f"`{group}.retrieval.mode={chosen['mode']}` is not a retrieval mode; use `mining` "
                            f"(BUCC-style, F1) or `nearest` (Tatoeba-style, accuracy).")
        layer = chosen["layer"]
        if not (layer in LAYERS or isinstance(layer, int) and not isinstance(layer, bool) and layer >= 1):
            raise XittError(f"`{group}.retrieval.layer={layer}` is not a layer: use `last`, `middle` or a layer "
                            f"number from 1 (the first transformer layer).")
        if not isinstance(chosen["prefix"], str):
            raise XittError(f"`{group}.retrieval.prefix` must be text (e.g. 'query: '), not {chosen['prefix']!r}.")
        k = chosen["margin_k"]
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise XittError(f"`{group}.retrieval.margin_k={k}` must be a whole number of neighbours, 1 or more "
                            f"(XTREME uses 4).")
        # nearest-neighbour retrieval tunes nothing: it may score every sentence (dev_ratio 0)
        nearest = chosen["mode"] == "nearest"
        for setting, high, zero_allowed in (("dev_ratio", 1.0, nearest), ("distractor_ratio", 0.5, True)):
            value = chosen[setting]
            if not (isinstance(value, (int, float)) and (0 < value < high or zero_allowed and value == 0)):
                raise XittError(f"`{group}.retrieval.{setting}={value}` must lie between 0 and {high} "
                                f"(exclusive{', or be 0' if zero_allowed else ''}).")
        pivot_sentence = chosen["pivot_sentence"]
        if pivot_sentence is not None and not (isinstance(pivot_sentence, str) and pivot_sentence):
            raise XittError(f"`{group}.retrieval.pivot_sentence` must name the column that holds each row's English "
                            f"translation (e.g. target_sentence), or be null; not {pivot_sentence!r}.")
        if pivot_sentence and len(chosen["sentences"]) != 1:
            raise XittError(f"`{group}.retrieval.pivot_sentence` pairs one sentence column with its English one, but "
                            f"`{group}.retrieval.sentences` names {len(chosen['sentences'])}: name one.")
        if not isinstance(chosen["aligned"], bool):
            raise XittError(f"`{group}.retrieval.aligned` must be true (every sentence has its translation on the "
                            f"other side) or false (BUCC's own files); not {chosen['aligned']!r}.")
        if not task.get("pivot_lang"):
            raise XittError(f"Task '{name}' names no `pivot_lang`: the language every other is paired with "
                            f"(English in XTREME). Set `{group}.pivot_lang=en`.")

    def unify(self, raw: Any, task: Mapping[str, Any], section: Mapping[str, Any], where: str,
              id_prefix: str) -> Any:
        """Sentences with their id, group and side: every `sentences` column of a row is one
        sentence (XNLI's premise and hypothesis); a sentence repeated in consecutive rows
        (XNLI's premise, once per hypothesis) is one sentence. The group is the value of the
        `group` column (its run of consecutive rows), else the sentence itself. With
        `pivot_sentence`, the row's English translation follows it (same id, side `pivot`);
        rows that come with a `side` column (BUCC's own files) keep theirs."""
        chosen = settings(task)
        fields = list(chosen["sentences"])
        group_field = chosen["group"]
        sided = "side" in raw.column_names
        pivot_field = None if sided else chosen["pivot_sentence"]
        extra = [name for name in (group_field, pivot_field) if name and name not in fields]
        columns = source_columns(raw, task, section, fields + extra, where)
        table = {field: raw[columns[field]] for field in dict.fromkeys([*fields, *extra])}
        has_id = columns["id"] in raw.column_names
        base_ids = row_ids({columns["id"]: raw[columns["id"]]} if has_id else {}, columns["id"], has_id,
                           id_prefix, list(range(len(raw))))
        marked = raw["side"] if sided else None
        ids, texts, groups, sides = [], [], [], []
        run, previous, new_group = -1, object(), True

        def sentence(index: int, field: str) -> str:
            text = table[field][index]
            if not isinstance(text, str) or not text.strip():
                raise XittError(f"Task '{task['name']}': {where}, row {index + 1}, has an empty sentence in "
                                f"`{field}`; retrieval needs a sentence on every line. Remove the line (in "
                                f"every language, to keep the files aligned) or fix it.")
            return text.rstrip("\r\n")  # the hub's tatoeba rows keep their line ends

        for index in range(len(raw)):
            if group_field:
                new_group = table[group_field][index] != previous
                if new_group:
                    run, previous = run + 1, table[group_field][index]
            for field in fields:
                if field == group_field and not new_group:
                    continue  # the group's own sentence (XNLI's premise), taken from its first row
                if field == group_field:
                    ids.append(f"{field}-g{run}")
                else:
                    ids.append(f"{field}-{base_ids[index]}" if len(fields) > 1 else base_ids[index])
                texts.append(sentence(index, field))
                groups.append(f"g{run}" if group_field else ids[-1])
                sides.append(marked[index] if sided else OWN)
            if pivot_field:
                ids.append(ids[-1])
                texts.append(sentence(index, pivot_field))
                groups.append(groups[-1])
                sides.append(PIVOT)
        import datasets  # the readers' rows are datasets; this module stays importable without it

        return datasets.Dataset.from_dict({"id": ids, "text": texts, "group": groups, "side": sides})

    def scores(self, predictions: Mapping[str, Any]) -> dict[str, float]:
        gold, pred = predictions["gold"], predictions["pred"]
        if predictions["metric"] == MINING_F1:
            tp, mined, n_gold = mining_totals(gold, pred)
            precision = 100 * tp / mined if mined else 0.0
            recall = 100 * tp / n_gold if n_gold else 0.0
            f1 = 200 * tp / (mined + n_gold) if mined + n_gold else 0.0
            return {"f1": f1, "precision": precision, "recall": recall, "n": len(gold)}
        reverse = predictions["reverse"]
        return {"accuracy": accuracy(gold, pred), "reverse_accuracy": accuracy(reverse["gold"], reverse["pred"]),
                "n": len(gold)}

    def degenerate(self, predictions: Mapping[str, Any], split: str, lang: str) -> str | None:
        """Nearest: every sentence retrieves the same English sentence (a collapsed embedding
        space); mining: no pair above the threshold."""
        gold, pred = predictions["gold"], predictions["pred"]
        if len(pred) < MIN_EXAMPLES:
            return None
        if predictions["metric"] == NEAREST_ACCURACY and len(set(pred)) == 1:
            return f"retrieves one English sentence ({pred[0]!r}) for all {len(pred):,} {split} sentences in {lang}"
        if predictions["metric"] == MINING_F1 and not any(pred) and any(gold):
            return f"mines no pair among the {len(pred):,} {split} sentences in {lang}"
        return None

    def example_terms(self, predictions: Mapping[str, Any], path: Any) -> tuple[str, Any]:
        """Per scored sentence: mining (tp, mined, gold) with the threshold fixed, so a
        resample of sentences recomputes F1 without mining again; nearest (correct,)."""
        gold, pred = predictions["gold"], predictions["pred"]
        if predictions["metric"] == MINING_F1:
            return MINING_F1, np.array([[bool(g) and g == p, bool(p), bool(g)] for g, p in zip(gold, pred)],
                                       dtype=np.float64).reshape(-1, 3)
        return NEAREST_ACCURACY, np.array([[g == p] for g, p in zip(gold, pred)], dtype=np.float64).reshape(-1, 1)

    def ratio_terms(self, metric: str, counts: Any) -> tuple[Any, Any]:
        if metric == MINING_F1:  # 2 TP / (mined + gold)
            return 2 * counts[:, 0], counts[:, 1] + counts[:, 2]
        return counts[:, 0], np.ones(len(counts))


def mining_totals(gold: list[str], pred: list[str]) -> tuple[int, int, int]:
    """(true positives, mined pairs, gold pairs) of a mining predictions file."""
    tp = sum(1 for g, p in zip(gold, pred) if g and g == p)
    return tp, sum(1 for p in pred if p), sum(1 for g in gold if g)


def accuracy(gold: list[str], pred: list[str]) -> float:
    return 100 * sum(g == p for g, p in zip(gold, pred)) / len(gold) if gold else 0.0
