"""The DataModule of one stage: the task's training set in the training language(s), its
development set in the development language(s) (model selection, `xitt.stages.selection`)
and one test set per evaluation language, tokenised once and padded per batch.

With a `cache_dir`, reading and tokenising happen once per node, in Lightning's
`prepare_data` (one process per node, before the others start): each split is saved
tokenised under the hash of what determines it, and every rank's `setup` memory-maps it.
Without one (a single process, or tests), the splits are tokenised in memory.

`batch_size` is the batch of one optimizer step over all processes: under DDP each rank
takes its slice of the same batches a single process would train on (`ShardedBatchSampler`),
so a cell learns the same with any number of processes."""

import logging
import os
import shutil
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DataLoader, Sampler
from transformers import PreTrainedTokenizerBase

from xitt.core.cell import split_fingerprints
from xitt.core.fingerprints import folder_fingerprint
from xitt.core.keys import content_key
from xitt.core.taskspec import dev_split
from xitt.data.tasks import load_split
from xitt.tasktypes import task_type

log = logging.getLogger(__name__)


class TaskDataModule(pl.LightningDataModule):
    def __init__(self, task: Mapping[str, Any], tokenizer: PreTrainedTokenizerBase,
                 train_langs: Sequence[str] = (), eval_langs: Sequence[str] = (), dev_langs: Sequence[str] = (),
                 batch_size: int = 32, eval_batch_size: int = 128, max_length: int = 128,
                 num_workers: int = 0, cache_dir: str | Path | None = None, seed: int = 0):
        super().__init__()
        self.task = task
        self.tokenizer = tokenizer
        self.train_langs = list(train_langs)
        self.eval_langs = list(eval_langs)
        self.dev_langs = list(dev_langs)
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.max_length = max_length
        self.num_workers = num_workers
        # The task type's rows, columns and collator (`xitt.tasktypes.<type>.training`).
        self.training = task_type(task).training
        self.collate = self.training.collator(tokenizer)
        # Each evaluation (development) language's prepared test (development) rows, model
        # inputs and scoring columns, indexed by their `row`.
        self.test_data: dict[str, datasets.Dataset] = {}
        self.dev_data: dict[str, datasets.Dataset] = {}
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.seed = seed
        # (epoch, batches already trained in it) when a stage resumes from a checkpoint
        self.resume_at: tuple[int, int] | None = None

    def _tokenised(self, dataset: datasets.Dataset, key: str) -> datasets.Dataset:
        """Model inputs and targets of a split, computed once (they are cached), with the
        columns the type scores from (its `tokenise`: a row per example, or per QA window).
        `key` (the split's content key) is the result's fingerprint: otherwise `datasets`
        hashes the tokenizer the function holds, which takes seconds for a large vocabulary."""
        training = self.training
        dataset = dataset.map(lambda batch: training.tokenise(self.task, self.tokenizer, self.max_length, batch),
                              batched=True, remove_columns=dataset.column_names, desc=None, new_fingerprint=key)
        dataset = dataset.add_column("row", list(range(len(dataset))))
        keep = [column for column in (*training.MODEL_COLUMNS, *training.SCORING_COLUMNS)
                if column in dataset.column_names]
        return dataset.select_columns(keep)

    def _model_view(self, dataset: datasets.Dataset) -> datasets.Dataset:
        """What the model sees of prepared rows: the type's inputs, targets and row number."""
        return dataset.select_columns([column for column in self.training.MODEL_COLUMNS
                                       if column in dataset.column_names])

    def _splits(self) -> list[tuple[str, str]]:
        return ([(lang, self.task["train_split"]) for lang in self.train_langs]
                + [(lang, dev_split(self.task)) for lang in self.dev_langs]
                + [(lang, self.task["test_split"]) for lang in self.eval_langs])

    def _split_key(self, lang: str, split: str) -> str:
        """Everything that determines a split's tokenised rows: the task's data settings
        (not its training hyper-parameters, nor its list of languages), the language, split,
        what its local files hold, the tokenizer, the length and the columns its type keeps."""
        data = {name: value for name, value in self.task.items()
                if name not in ("hparams", "eval_batch_size", "languages")}
        tokenizer = {"name": self.tokenizer.name_or_path, "class": type(self.tokenizer).__name__,
                     "size": len(self.tokenizer)}
        if os.path.isdir(str(self.tokenizer.name_or_path)):  # a local checkpoint: by what its files hold
            tokenizer["files"] = folder_fingerprint(self.tokenizer.name_or_path)
        return content_key({"task": data, "lang": lang, "split": split, "tokenizer": tokenizer,
                            "files": split_fingerprints(self.task, [(lang, split)]), "max_length": self.max_length,
                            "columns": [*self.training.MODEL_COLUMNS, *self.training.SCORING_COLUMNS]})

    def _prepared(self, lang: str, split: str) -> datasets.Dataset:
        """One language's split, tokenised: from the cache (written first if missing), or
        in memory without a cache."""
        if self.cache_dir is None:
            return self._tokenised(load_split(self.task, lang, split), self._split_key(lang, split))
        return datasets.load_from_disk(str(self._cached(lang, split)))

    def _cached(self, lang: str, split: str) -> Path:
        """The cache folder of one language's split, tokenised and written first if missing."""
        key = self._split_key(lang, split)
        folder = self.cache_dir / f"{self.task['name']}-{lang}-{split}-{key}"
        if not folder.is_dir():
            tmp = folder.with_name(f".{folder.name}.{uuid.uuid4().hex[:8]}.tmp")
            tokenised = self._tokenised(load_split(self.task, lang, split), key)
            tokenised.save_to_disk(str(tmp))
            log.info("Tokenised %s %s %s (%d rows) into the cache %s", self.task["name"], lang, split,
                     len(tokenised), folder)
            try:
                os.rename(tmp, folder)
            except OSError:  # another job stored the same split meanwhile: keep theirs
                shutil.rmtree(tmp, ignore_errors=True)
        return folder

    def prepare_data(self) -> None:
        """Fills the cache (one process per node); `setup` then loads from it in every rank."""
        if self.cache_dir is not None:
            for lang, split in self._splits():
                self._cached(lang, split)

    def setup(self, stage: str | None = None) -> None:
        if self.train_langs and not hasattr(self, "train_set"):
            parts = [self._model_view(self._prepared(lang, self.task["train_split"])) for lang in self.train_langs]
            self.train_lengths = [len(ids) for part in parts for ids in part["input_ids"]]
            self.train_set = datasets.concatenate_datasets(parts).with_format("torch")
        if self.dev_langs and not hasattr(self, "dev_sets"):
            self.dev_sets = [self._scored_set(lang, dev_split(self.task), self.dev_data) for lang in self.dev_langs]
        if self.eval_langs and not hasattr(self, "test_sets"):
            self.test_sets = [self._scored_set(lang, self.task["test_split"], self.test_data) for lang in self.eval_langs]

    def _scored_set(self, lang: str, split: str, scoring: dict[str, datasets.Dataset]) -> datasets.Dataset:
        """A split the model predicts on, longest first (batches of similar lengths pad
        little, and a batch too large for memory fails at once; rows keep their `row`
        number, so order is free); its prepared rows go into `scoring`."""
        prepared = self._prepared(lang, split)
        scoring[lang] = prepared
        lengths = np.array([len(ids) for ids in prepared["input_ids"]])
        by_length = np.argsort(-lengths, kind="stable")
        return self._model_view(prepared.select(by_length)).with_format("torch")

    def train_dataloader(self) -> DataLoader:
        world_size, rank = (self.trainer.world_size, self.trainer.global_rank) if self.trainer else (1, 0)
        sampler = ShardedBatchSampler(len(self.train_set), self.batch_size, world_size, rank, self.seed,
                                      resume_at=self.resume_at, lengths=self.train_lengths)
        # A generator of its own: otherwise each epoch's iterator draws its base seed from
        # torch's global generator, which dropout uses too, and a resumed stage would draw
        # its dropout masks from another point of that stream than an uninterrupted one.
        return DataLoader(self.train_set, batch_sampler=sampler, collate_fn=self.collate,
                          num_workers=self.num_workers, generator=torch.Generator().manual_seed(self.seed))

    def val_dataloader(self) -> list[DataLoader]:
        return self._scoring_loaders(getattr(self, "dev_sets", []))

    def predict_dataloader(self) -> list[DataLoader]:
        return self._scoring_loaders(self.test_sets)

    def _scoring_loaders(self, sets: list[datasets.Dataset]) -> list[DataLoader]:
        return [DataLoader(scored, batch_size=self.eval_batch_size, shuffle=False, sampler=self._test_sampler(scored),
                           collate_fn=self.collate, num_workers=self.num_workers)
                for scored in sets]

    def _test_sampler(self, test_set: datasets.Dataset) -> Sampler | None:
        """Under DDP each rank scores its own share of a test set, and no example twice:
        Lightning's default distributed sampler evens out the shares by repeating
        examples, which F1 would then count twice."""
        trainer = self.trainer
        if trainer is None or trainer.world_size == 1:
            return None
        return UnrepeatedDistributedSampler(test_set, num_replicas=trainer.world_size, rank=trainer.global_rank,
                                            shuffle=False)


# Length grouping: each epoch's shuffled examples are taken in groups of this many batches,
# sorted by length within a group, cut into batches, and the batches shuffled (as
# transformers' `group_by_length`): batches pad little and their order stays random.
GROUP_BATCHES = 50


class ShardedBatchSampler(Sampler[list[int]]):
    """Shuffled training batches, the same whatever the number of processes: each epoch
    a seeded permutation is cut into batches of `batch_size`, and rank r of n takes every
    n-th example of each batch. Every rank gets the same number of batches (DDP steps in
    lock-step); a last batch too small to give every rank an example is dropped.

    With `lengths` (tokens per example) the batches are length-grouped (`GROUP_BATCHES`),
    still a function of seed and epoch only, with the batch of the longest example first
    (a batch too large for memory fails at the first step, not hours later).

    `resume_at=(epoch, k)`: training resumes from a checkpoint taken after k batches of
    `epoch`; that epoch yields only its batches from k on (its length still counts all of
    them, as Lightning's restored loop expects). It is set at construction because
    Lightning may draw the first batch before it calls `set_epoch`."""

    def __init__(self, size: int, batch_size: int, world_size: int = 1, rank: int = 0, seed: int = 0,
                 resume_at: tuple[int, int] | None = None, lengths: Sequence[int] | None = None):
        self.size, self.batch_size = size, batch_size
        self.world_size, self.rank, self.seed = world_size, rank, seed
        self.epoch, self.skip = resume_at or (0, 0)
        self.lengths = None if lengths is None else torch.as_tensor(lengths)

    @property
    def sampler(self) -> "ShardedBatchSampler":
        """Lightning sets the epoch of `batch_sampler.sampler` at each epoch start (not of
        the batch sampler itself), so this sampler is its own `sampler`."""
        return self

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _batches(self) -> list[list[int]]:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(self.size, generator=generator)
        if self.lengths is not None:
            group = self.batch_size * GROUP_BATCHES
            order = torch.cat([chunk[torch.argsort(self.lengths[chunk], descending=True, stable=True)]
                               for chunk in order.split(group)])
        order = order.tolist()
        batches = [order[start:start + self.batch_size] for start in range(0, self.size, self.batch_size)]
        if self.lengths is not None:
            permutation = torch.randperm(len(batches), generator=generator).tolist()
            longest = order.index(int(torch.argmax(self.lengths))) // self.batch_size
            permutation.remove(longest)
            batches = [batches[index] for index in [longest, *permutation]]
        return [batch for batch in batches if len(batch) >= self.world_size]

    def __iter__(self):
        skip, self.skip = self.skip, 0  # only the resumed epoch is cut short
        for batch in self._batches()[skip:]:
            yield batch[self.rank::self.world_size]

    def __len__(self) -> int:
        full, rest = divmod(self.size, self.batch_size)
        return full + (rest >= self.world_size and rest > 0)
