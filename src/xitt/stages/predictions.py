"""Prediction rows (one per example, from the modules' `predict_step`) turned into a
predictions file per language, the shape `xitt.metrics.predictions` scores: for the test
sets after training, and for the development set of tagging and QA tasks at each validation
(a classifier counts its development predictions in torchmetrics: `xitt.stages.selection`)."""

from typing import Any

import datasets
import numpy as np
import pytorch_lightning as pl
import torch

from xitt.data.datamodule import NO_OFFSET
from xitt.data.f1_features import best_spans, word_tags
from xitt.data.tasks import task_type
from xitt.metrics import qa as qa_metrics


def gather_rows(trainer: pl.Trainer, batches: list[torch.Tensor], width: int) -> np.ndarray:
    """Every rank's prediction rows (the example's row number first, then `width` - 1
    values: see the modules' `predict_step`), in test-set order. Test shards differ in size
    by up to one example (no rank repeats one), and all_gather needs equal shapes: pad with
    rows of -1, then drop them."""
    rows = torch.cat(batches) if batches else torch.zeros(0, width, dtype=torch.long)
    if trainer.world_size > 1:
        strategy = trainer.strategy
        counts = strategy.all_gather(torch.tensor(rows.size(0), device=strategy.root_device))
        padded = torch.full((int(counts.max()), width), -1, dtype=rows.dtype, device=strategy.root_device)
        padded[: rows.size(0)] = rows.to(strategy.root_device)
        rows = strategy.all_gather(padded).reshape(-1, width)
        rows = rows[rows[:, 0] >= 0]
    rows = rows.cpu().numpy()
    _, first = np.unique(rows[:, 0], return_index=True)  # a row seen twice counts once
    return rows[first]


def predictions_file(task: dict[str, Any], lang: str, rows: np.ndarray, data: datasets.Dataset) -> dict[str, Any]:
    """One language's predictions as the task's metric reads them (the format
    `xitt.metrics.predictions` describes), from the gathered prediction rows and the
    test set's prepared rows (`data`, indexed by row number)."""
    kind = task_type(task)
    numbers = rows[:, 0].astype(np.int64)
    if kind == "classification":
        ids = data["id"]
        return {"ids": [ids[row] for row in numbers], "gold": rows[:, 1].tolist(), "pred": rows[:, 2].tolist(),
                "labels": list(task["labels"])}
    if kind == "tagging":
        labels = list(task["labels"])
        # A word cut by truncation counts as a miss: no entity ("O") for NER, a tag outside
        # the tag set for POS.
        fill = "O" if task["metric"] == "entity_f1" else "_"
        ids, tags, positions = data["id"], data["tags"], data["word_positions"]
        return {"task_type": "tagging", "metric": task["metric"], "labels": labels,
                "ids": [ids[row] for row in numbers], "gold": [tags[row] for row in numbers],
                "pred": [word_tags(positions[row], predictions, labels, fill)
                         for row, predictions in zip(numbers, rows[:, 1:])]}
    # qa: rows are windows; the answer of a question is its best span over all its windows
    length = (rows.shape[1] - 1) // 2
    window_ids, offsets, contexts, answers = data["id"], data["offsets"], data["context"], data["answers"]
    examples: dict[str, dict[str, Any]] = {}  # by question id, in the order of their first window
    for row in numbers:
        examples.setdefault(window_ids[row], {"context": contexts[row], "answers": answers[row]})
    order = list(examples)
    position = {example_id: index for index, example_id in enumerate(order)}
    features = {"example_index": [position[window_ids[row]] for row in numbers],
                "offset_mapping": [[None if offset == NO_OFFSET else tuple(offset) for offset in offsets[row]]
                                   for row in numbers]}
    predicted = best_spans(features, rows[:, 1:1 + length], rows[:, 1 + length:], [examples[i] for i in order],
                           n_best=int(task["n_best"]), max_answer_length=int(task["max_answer_length"]))
    # Scored with the language's own normalisation where MLQA defines one (xitt.metrics.qa),
    # else SQuAD's (the synthetic demo languages, TyDiQA's languages outside MLQA/XQuAD).
    return {"task_type": "qa", "lang": lang if lang in qa_metrics.LANGUAGES else None, "ids": order,
            "gold": [examples[i]["answers"]["text"] for i in order], "pred": predicted}
