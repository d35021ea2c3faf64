"""Prediction rows (one per example or window, from a module's `predict_step`: the row number
first, then the type's values) gathered from every rank, and scored through the type's
predictions file: for the test sets after training, and for the development set of the
types that gather rows at each validation (`GATHERS_DEV_ROWS`)."""

from collections.abc import Mapping, Sequence
from typing import Any

import datasets
import numpy as np
import pytorch_lightning as pl
import torch


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


def dev_scores_from_rows(trainer: pl.Trainer, pl_module: pl.LightningModule, task: Mapping[str, Any],
                         langs: Sequence[str], gathered: Mapping[int, list],
                         dev_data: Mapping[str, datasets.Dataset]) -> tuple[dict, list[str]]:
    """Each development language's scores from its gathered rows, scored as the test sets are
    (entity F1 needs each sentence's words, SQuAD F1 each answer's text from the context's
    characters: xitt's own scorers), and what the degenerate check saw."""
    from xitt.tasktypes import degenerate_predictions, prediction_scores, task_type

    training = task_type(task).training
    scores, seen = {}, []
    for index, lang in enumerate(langs):
        rows = gather_rows(trainer, gathered[index], pl_module.prediction_width)
        predictions = training.predictions_file(task, lang, rows, dev_data[lang])
        scores[lang] = {name: value for name, value in prediction_scores(predictions).items() if name != "n"}
        seen += filter(None, [degenerate_predictions(predictions, "development", lang)])
    return scores, seen


def each_language(predictions_file, task: Mapping[str, Any], langs: Sequence[str], rows: Mapping[str, np.ndarray],
                  data: Mapping[str, datasets.Dataset]) -> dict[str, dict[str, Any]]:
    """`predictions_files` of a type whose languages are scored each on its own."""
    return {lang: predictions_file(task, lang, rows[lang], data[lang]) for lang in langs}


def pad_to(values: torch.Tensor, length: int, fill: float) -> torch.Tensor:
    """`values` (batch, L) padded on the right to (batch, length): every batch's rows get
    the same width, whatever its own padded length."""
    return torch.nn.functional.pad(values, (0, length - values.size(1)), value=fill)
