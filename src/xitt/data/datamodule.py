"""The DataModule of one stage: the task's training set in the training language(s) and
one test set per evaluation language, tokenised once and padded per batch."""

from collections.abc import Mapping, Sequence
from typing import Any

import datasets
import pytorch_lightning as pl
from torch.utils.data import DataLoader
from transformers import DataCollatorWithPadding, PreTrainedTokenizerBase

from xitt.data.tasks import load_split

MODEL_COLUMNS = ("input_ids", "attention_mask", "token_type_ids", "label", "row")


class TaskDataModule(pl.LightningDataModule):
    def __init__(self, task: Mapping[str, Any], tokenizer: PreTrainedTokenizerBase,
                 train_langs: Sequence[str] = (), eval_langs: Sequence[str] = (),
                 batch_size: int = 32, eval_batch_size: int = 128, max_length: int = 128,
                 num_workers: int = 0):
        super().__init__()
        self.task = task
        self.tokenizer = tokenizer
        self.train_langs = list(train_langs)
        self.eval_langs = list(eval_langs)
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.max_length = max_length
        self.num_workers = num_workers
        self.collate = DataCollatorWithPadding(tokenizer)
        self.test_ids: dict[str, list[str]] = {}

    def _tokenised(self, dataset: datasets.Dataset) -> datasets.Dataset:
        fields = list(self.task["text_fields"])

        def tokenise(batch: dict[str, list]) -> dict[str, list]:
            return self.tokenizer(*[batch[field] for field in fields], truncation=True, max_length=self.max_length)

        dataset = dataset.add_column("row", list(range(len(dataset))))
        dataset = dataset.map(tokenise, batched=True, desc=None)
        keep = [column for column in MODEL_COLUMNS if column in dataset.column_names]
        return dataset.select_columns(keep).with_format("torch")

    def setup(self, stage: str | None = None) -> None:
        if self.train_langs and not hasattr(self, "train_set"):
            parts = [load_split(self.task, lang, self.task["train_split"]) for lang in self.train_langs]
            self.train_set = self._tokenised(datasets.concatenate_datasets(parts))
        if self.eval_langs and not hasattr(self, "test_sets"):
            self.test_sets = []
            for lang in self.eval_langs:
                raw = load_split(self.task, lang, self.task["test_split"])
                self.test_ids[lang] = [str(i) for i in raw["id"]]
                self.test_sets.append(self._tokenised(raw))

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True,
                          collate_fn=self.collate, num_workers=self.num_workers)

    def test_dataloader(self) -> list[DataLoader]:
        return [DataLoader(test_set, batch_size=self.eval_batch_size, shuffle=False,
                           collate_fn=self.collate, num_workers=self.num_workers)
                for test_set in self.test_sets]
