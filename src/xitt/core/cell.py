"""A cell of the grid: the resolved axes of one job, and its stages as one list.

    itt key    = hash(model, size, itt task + hparams, training language, the content of the
                      local files it reads, freezing during ITT, selection, trainer settings
                      that shape weights, seed)
    target key = hash(itt key or pretrained model, target task + hparams, transfer mode,
                      training language(s), the content of the local files it reads,
                      freezing, selection, trainer settings that shape weights, seed)
    result key = hash(target key, evaluation language, the content of its test files,
                      evaluation settings)

Which setting goes into which key is declared once, in `xitt.core.keys`: a setting that
cannot change a model (the languages a zero-shot model is scored in, the progress bar) is
in none of its keys. A local checkpoint or data file is keyed by its content as well as its
path (`xitt.core.fingerprints`), so one edited in place is trained on again.

Transfer modes decide what the target model evaluated on a language is trained on:
zero_shot (one English model for all languages), target_finetune and translate_train (one
model per language, on its own or its machine-translated training data) and few_shot (one
model per language, fine-tuned from the English zero-shot model on k examples per class;
its key starts from that model's key, so the English model is trained once and shared
with the zero-shot cells and every k).
"""

import os
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from omegaconf import DictConfig, MissingMandatoryValue, OmegaConf
from omegaconf.errors import InterpolationToMissingValueError

from xitt import XittError
from xitt.core.fingerprints import file_fingerprint, folder_fingerprint
from xitt.core.keys import (content_key, evaluation_settings, model_key_view, same_by_design_settings,
                             task_key_view, training_label, training_settings)
from xitt.core.sources import FilePart, data_parts
from xitt.core.taskspec import (dev_split, resolve_task, translate_train_section, with_translated_training,
                                without_held_out_dev)
from xitt.core.validate import check_cell, typed
from xitt.tasktypes import task_type

TRANSFER_MODES = ("zero_shot", "target_finetune", "translate_train", "few_shot")


def is_local_path(name_or_path: str) -> bool:
    """A folder on disk rather than a hub id (hub ids never start with a slash or dot)."""
    return os.path.isdir(name_or_path) or name_or_path.startswith(("/", "./", "../"))


def resolve_model(cfg: DictConfig) -> dict[str, Any]:
    """The family's declaration with the chosen size filled in; fails at once, listing
    the family's sizes, when the size is not one of them."""
    family = OmegaConf.to_container(cfg.model, resolve=False)
    sizes = family.pop("sizes")
    shorthand = family.pop("shorthand_size", None)  # set by `model=<family>_<size>`
    size = cfg.size.name or family["default_size"]
    if shorthand is not None and str(size) != str(shorthand):
        raise XittError(
            f"`model={family['family']}_{shorthand}` and `size={size}` contradict each other: the first "
            f"asks for size {shorthand}, the second for {size}. Use `model={family['family']}_{size}` (or "
            f"`model={family['family']} size={size}`), or drop `size=` to keep {shorthand}."
        )
    if size not in sizes:
        raise XittError(
            f"Model family '{family['family']}' has no size '{size}'. Its sizes are: "
            f"{', '.join(sizes)}. Pick one with `size=<name>` (or `model={family['family']}_<size>`)."
        )
    try:
        chosen = OmegaConf.to_container(cfg.model.sizes[size], resolve=True)
    except (MissingMandatoryValue, InterpolationToMissingValueError):
        raise XittError(
            f"Model family '{family['family']}' needs `model.name_or_path=<hub id or local folder>`."
        ) from None
    resolved = {key: value for key, value in family.items() if key != "name_or_path"}
    resolved.update(size=size, **chosen)
    return resolved


def _plain(node: DictConfig) -> dict[str, Any]:
    return OmegaConf.to_container(node, resolve=True)


def transfer_name(transfer: dict[str, Any]) -> str:
    """A transfer mode as names and records show it, with k and the sample seed for few-shot
    (`few_shot-k8-s1`)."""
    if transfer["mode"] == "few_shot":
        return f"few_shot-k{transfer['k']}-s{transfer['sample_seed']}"
    return transfer["mode"]


SCORED_MODEL_KEYS = ("stage", "key", "task", "transfer", "train_langs")


def _scored_model(scored: Any, target: dict[str, Any]) -> dict[str, Any] | None:
    """The `scored_model` setting (written by `evaluate.py ckpt=<target artifact> target=<a task
    that trains nothing>`, from the artifact's meta.json), checked: only a target that trains
    nothing scores another model's encoder."""
    if scored is None:
        return None
    scored = OmegaConf.to_container(scored, resolve=True) if isinstance(scored, DictConfig) else scored
    if not isinstance(scored, dict) or set(scored) != set(SCORED_MODEL_KEYS) or \
            scored["stage"] not in ("target", "few_shot") or not isinstance(scored["transfer"], dict):
        raise XittError(f"`scored_model` must name a stored target model with exactly the settings "
                        f"{', '.join(SCORED_MODEL_KEYS)} (stage `target` or `few_shot`); got {scored!r}. It is "
                        f"set by `python evaluate.py ckpt=<store>/target/<key> target=<retrieval task>`: use that.")
    if task_type(target).trains:
        raise XittError(f"`scored_model` gives a stored target model's encoder to the target task, but target "
                        f"'{target['name']}' ({task_type(target).name}) trains a model of its own. Only a task "
                        f"that trains nothing (retrieval) scores a given encoder.")
    return scored


def split_fingerprints(task: dict[str, Any], reads: list[tuple[str, str]]) -> dict[str, list[str | None]]:
    """What each local file of the given (language, split)s of a task holds; {} for hub and
    demo data (a hub data set is named by its id, configuration and revision)."""
    if task.get("source") != "local":
        return {}
    return {f"{lang}/{split}": [file_fingerprint(path) for part in data_parts(task, lang, split)
                                if isinstance(part, FilePart) for path in part.files] for lang, split in reads}


def reads_fingerprint(task: dict[str, Any], train_langs, dev_langs, selection: dict[str, Any]) -> dict[str, Any]:
    """The local files a training stage reads: its training split in `train_langs` and, when it
    validates, the development split in `dev_langs`."""
    reads = [(lang, task["train_split"]) for lang in train_langs]
    if int(selection["every_n_epochs"]) > 0:
        reads += [(lang, dev_split(task)) for lang in dev_langs]
    return split_fingerprints(task, reads)


@dataclass(frozen=True)
class Stage:
    """One step of a cell. A training stage (`itt`, `target`, `few_shot`) builds the artifact
    `key` of store kind `store` from the artifact `start` ((kind, key); None: the pretrained
    encoder), training `task` in `train_langs`; an `evaluate` stage scores the target
    artifact `key` (trained in `train_langs`) on `eval_langs`."""

    name: str  # itt | target | few_shot | evaluate: the log's and W&B's name for the stage
    store: str  # itt | target
    key: str
    start: tuple[str, str] | None
    task: dict[str, Any] = field(repr=False)
    train_langs: tuple[str, ...]
    freezing: dict[str, Any]
    transfer: dict[str, Any] | None = None
    eval_langs: tuple[str, ...] = ()
    # Model selection (training stages): `mode` best|last, `every_n_epochs` (0: no
    # validation), `patience` (early stopping; None: never), scored on the task's
    # development split in `dev_langs`.
    selection: dict[str, Any] | None = None
    dev_langs: tuple[str, ...] = ()

    @property
    def validates(self) -> bool:
        return self.trains and bool(self.selection) and int(self.selection["every_n_epochs"]) > 0

    @property
    def trains(self) -> bool:
        return self.name != "evaluate"

    @property
    def hparams(self) -> dict[str, Any]:
        return self.task["hparams"]

    def data_needs(self) -> list[tuple[dict[str, Any], str, str]]:
        """The (task, language, split) this stage reads."""
        if self.trains:
            dev = [(self.task, lang, dev_split(self.task)) for lang in self.dev_langs] if self.validates else []
            return [(self.task, lang, self.task["train_split"]) for lang in self.train_langs] + dev
        return [(self.task, lang, self.task["test_split"]) for lang in self.eval_langs]


@dataclass
class Cell:
    model: dict[str, Any]
    itt: dict[str, Any] | None
    target: dict[str, Any]
    transfer: dict[str, Any]
    freezing: dict[str, Any]
    seed: int
    eval_langs: list[str]
    trainer: dict[str, Any]  # the `trainer` group, resolved (see `training` and `run_settings`)
    selection: dict[str, Any]  # the `selection` config: itt, target (best|last), every_n_epochs, patience
    config: dict[str, Any] = field(repr=False)
    # The stored target model whose encoder a target that trains nothing scores, instead of the
    # ITT encoder or the pretrained one (`evaluate.py ckpt=<store>/target/<key> target=<retrieval
    # task>` sets `scored_model`): its stage (`target` or `few_shot`), key, the task it was
    # fine-tuned on, its transfer settings and training language(s). None: the cell's own encoder.
    scored: dict[str, Any] | None = None

    @classmethod
    def from_config(cls, cfg: DictConfig) -> "Cell":
        model = resolve_model(cfg)
        itt = None if cfg.itt.name == "none" else resolve_task(cfg.itt)
        target = resolve_task(cfg.target)
        if typed(cfg.selection.get("every_n_epochs"), int) == 0:
            # Nothing is validated, so no development rows are held out of training; the
            # tasks (and so the keys and the records' split notes) say so.
            itt, target = (task and without_held_out_dev(task) for task in (itt, target))
        langs = cfg.target_lang.langs
        eval_langs = list(target['languages']) if langs == "all" else [str(lang) for lang in langs]
        check_cell(cfg, model, {"itt": itt, "target": target} if itt else {"target": target}, eval_langs)
        transfer = _plain(cfg.transfer)
        if transfer["mode"] not in TRANSFER_MODES:
            raise XittError(f"Transfer mode '{transfer['mode']}' is not supported; use one of {', '.join(TRANSFER_MODES)}.")
        supported = task_type(target).transfer_modes
        if supported is not None and transfer["mode"] not in supported:
            raise XittError(f"Target task '{target['name']}' ({task_type(target).name}) supports transfer "
                            f"{', '.join(supported)}, not {transfer['mode']}: it trains nothing in the target "
                            f"languages. Use `transfer={supported[0]}`.")
        if transfer["mode"] == "translate_train":
            translate_train_section(target)  # fails now, not after ITT, for a task without translations
        if transfer["mode"] == "few_shot" and not (typed(transfer.get("k"), int) or 0) > 0 or \
                transfer["mode"] == "few_shot" and typed(transfer.get("sample_seed"), int) is None:
            raise XittError(f"transfer=few_shot needs `transfer.k` > 0 examples per class and a whole "
                            f"`transfer.sample_seed` (got k={transfer.get('k')}, "
                            f"sample_seed={transfer.get('sample_seed')}).")
        unknown = [lang for lang in eval_langs if lang not in list(target['languages'])]
        if unknown:
            raise XittError(
                f"Target task '{target['name']}' has no language {', '.join(unknown)}. Its languages "
                f"are: {', '.join(list(target['languages']))}; choose with `target_lang.langs=[...]` or `target_lang=all`."
            )
        return cls(model=model, itt=itt, target=target, transfer=transfer, freezing=_plain(cfg.freezing),
                   seed=int(cfg.seed), eval_langs=eval_langs, trainer=_plain(cfg.trainer),
                   config=OmegaConf.to_container(cfg, resolve=True), selection=_plain(cfg.selection),
                   scored=_scored_model(cfg.get("scored_model"), target))

    @property
    def seed_matters(self) -> bool:
        """False for a cell that trains nothing and starts from a pretrained checkpoint (no ITT,
        a target type without a training stage): its scores are the same whatever the seed,
        so its keys, name and records hold none (seed 0), and every seed reuses it."""
        return (bool(self.itt) or task_type(self.target).trains or self.model.get("source") == "scratch"
                or self.scored is not None)

    @property
    def keyed_seed(self) -> int | None:
        return self.seed if self.seed_matters else None

    @property
    def itt_name(self) -> str:
        return self.itt["name"] if self.itt else "none"

    def freezing_for(self, stage: str) -> dict[str, Any]:
        if stage in self.freezing["stages"]:
            return {"mode": self.freezing["mode"], "k": self.freezing["k"]}
        return {"mode": "none", "k": 0}

    def selection_for(self, stage: str) -> dict[str, Any]:
        """How a training stage picks the model it stores: `selection.itt` for ITT,
        `selection.target` for target and few-shot stages."""
        return {"mode": self.selection["itt" if stage == "itt" else "target"],
                "every_n_epochs": int(self.selection["every_n_epochs"]), "patience": self.selection.get("patience")}

    @property
    def dev_langs(self) -> tuple[str, ...]:
        """The language(s) a target or few-shot model is selected in: the language it is
        trained in for target_finetune, else the source language (never a zero-shot
        target language: selecting on its data would no longer be zero-shot)."""
        return () if self.transfer["mode"] == "target_finetune" else (self.transfer["train_lang"],)

    @cached_property
    def training(self) -> dict[str, Any]:
        """The trainer settings that shape every training stage's weights (`xitt.core.keys`)."""
        return training_settings(self.trainer)

    @cached_property
    def run_settings(self) -> dict[str, Any]:
        """The settings that give the same model by design (devices, strategy, ...): recorded."""
        return same_by_design_settings(self.trainer)

    @cached_property
    def model_key_view(self) -> dict[str, Any]:
        """The model as it enters the keys: its settings, and for a checkpoint in a local
        folder what each of its files holds (an edited checkpoint is another model)."""
        path = str(self.model.get("name_or_path") or "")
        if self.model.get("source") == "scratch" or not path or not os.path.isdir(path):
            return model_key_view(self.model)
        return {**model_key_view(self.model), "files": folder_fingerprint(path)}

    @property
    def itt_langs(self) -> tuple[str, ...]:
        """The ITT task's training language: its first (English for every shipped task)."""
        return tuple(self.itt["languages"][:1]) if self.itt else ()

    @property
    def itt_key(self) -> str | None:
        if self.itt is None:
            return None
        selection = self.selection_for("itt")
        return content_key({"stage": "itt", "model": self.model_key_view, "task": task_key_view(self.itt),
                            "train_langs": list(self.itt_langs),
                            "data": reads_fingerprint(self.itt, self.itt_langs, self.itt_langs, selection),
                            "freezing": self.freezing_for("itt"), "selection": selection,
                            "seed": self.seed, "training": self.training})

    def train_langs_for(self, lang: str) -> list[str]:
        """The language(s) the target model that is evaluated on `lang` is trained on."""
        if self.transfer["mode"] == "zero_shot":
            return [self.transfer["train_lang"]]
        return [lang]

    @property
    def english_transfer(self) -> dict[str, Any]:
        """The transfer settings of the model few-shot training starts from: exactly those
        of `transfer=zero_shot`, so that its key is a zero-shot cell's key."""
        return {"mode": "zero_shot", "train_lang": self.transfer["train_lang"]}

    @property
    def english_target_key(self) -> str:
        """The English (zero-shot) target model that few-shot models start from."""
        return self._target_key(self.pretrained_start, self.target, self.english_transfer,
                                [self.transfer["train_lang"]])

    @property
    def pretrained_start(self) -> str | dict[str, Any]:
        """What a target model starts from: the ITT model's key, or the pretrained model (with
        the seed that draws a scratch model's weights)."""
        return self.itt_key or {"pretrained": self.model_key_view, "seed": self.keyed_seed}

    @property
    def target_training_task(self) -> dict[str, Any]:
        """The target task as the target stage trains on it: as declared, with its
        machine-translated training sets for translate_train, or for few_shot with k
        examples per class and the few-shot hyper-parameters."""
        mode = self.transfer["mode"]
        if mode == "translate_train":
            return with_translated_training(self.target)
        if mode == "few_shot":
            return {**self.target, "hparams": {**self.target["hparams"], **(self.transfer.get("hparams") or {})},
                    "train_sample": {"per_class": int(self.transfer["k"]), "seed": int(self.transfer["sample_seed"])}}
        return self.target

    def stages(self, langs: list[str] | None = None) -> list["Stage"]:
        """The cell's stages in the order they run, for the languages `langs` (default: all
        it evaluates): the ITT model, the target model(s) that each language's model is
        trained as (few-shot: the English zero-shot model first), and one evaluation per
        target model. The pipeline runs this list; the planner, the memory check, the
        offline asset check and `xitt.prepare` read it."""
        langs = self.eval_langs if langs is None else list(langs)
        target_freezing = self.freezing_for("target")
        if self.scored:  # a stored target model's encoder: nothing to train, its ITT included
            key = self.scored["key"]
            return [Stage("evaluate", "target", key, ("target", key), self.target, tuple(self.scored["train_langs"]),
                          target_freezing, self.transfer, tuple(langs))]
        stages, start = [], None
        if self.itt:
            itt_langs = self.itt_langs
            stages.append(Stage("itt", "itt", self.itt_key, None, self.itt, itt_langs, self.freezing_for("itt"),
                                selection=self.selection_for("itt"), dev_langs=itt_langs))
            start = ("itt", self.itt_key)
        if not task_type(self.target).trains:  # scores the encoder it is given: ITT's or the pretrained one
            stages.append(Stage("evaluate", start[0] if start else "pretrained", self.evaluated_key, start,
                                self.target, (), target_freezing, self.transfer, tuple(langs)))
            return stages
        groups: dict[tuple[str, ...], list[str]] = {}
        for lang in langs:
            groups.setdefault(tuple(self.train_langs_for(lang)), []).append(lang)
        name = "target"
        if self.transfer["mode"] == "few_shot" and groups:
            english = (self.transfer["train_lang"],)
            stages.append(Stage("target", "target", self.english_target_key, start, self.target, english,
                                target_freezing, self.english_transfer, selection=self.selection_for("target"),
                                dev_langs=english))
            start, name = ("target", self.english_target_key), "few_shot"
        for train_langs, eval_langs in groups.items():
            key = self.target_key(list(train_langs))
            stages.append(Stage(name, "target", key, start, self.target_training_task, train_langs,
                                target_freezing, self.transfer, selection=self.selection_for("target"),
                                dev_langs=self.dev_langs or train_langs))
            stages.append(Stage("evaluate", "target", key, ("target", key), self.target, train_langs,
                                target_freezing, self.transfer, tuple(eval_langs)))
        return stages

    def data_needs(self) -> list[tuple[dict[str, Any], str, str]]:
        """Every (task, language, split) the cell's stages read, once each."""
        needs = [need for stage in self.stages() for need in stage.data_needs()]
        unique = {(task["name"], task.get("train_split"), lang, split): (task, lang, split)
                  for task, lang, split in needs}
        return list(unique.values())

    def target_key(self, train_langs: list[str]) -> str:
        start = self.english_target_key if self.transfer["mode"] == "few_shot" else self.pretrained_start
        return self._target_key(start, self.target_training_task, self.transfer, train_langs)

    def _target_key(self, start: Any, task: dict[str, Any], transfer: dict[str, Any], train_langs: list[str]) -> str:
        selection = self.selection_for("target")
        dev_langs = self.dev_langs or tuple(train_langs)
        return content_key({"stage": "target", "start": start, "task": task_key_view(task),
                            "transfer": transfer, "train_langs": train_langs,
                            "data": reads_fingerprint(task, train_langs, dev_langs, selection),
                            "freezing": self.freezing_for("target"), "selection": selection,
                            "seed": self.seed, "training": self.training})

    @property
    def evaluated_key(self) -> str:
        """The model a target without a training stage scores: the stored target model it is
        given (`scored`), the ITT model, or the pretrained one."""
        if self.scored:
            return self.scored["key"]
        return self.itt_key or content_key({"stage": "pretrained", "start": self.pretrained_start})

    def scored_key(self, lang: str) -> str:
        """The key of the model whose scores in `lang` a record holds."""
        if not task_type(self.target).trains:
            return self.evaluated_key
        return self.target_key(self.train_langs_for(lang))

    def result_key(self, target_key: str, lang: str) -> str:
        """What a record scores: the target model, the language and its test files (and those
        of the languages it is scored against), and the evaluation settings
        (`xitt.core.keys.evaluation_settings`); for a target that trains nothing, its task
        settings too (no target model's key holds them)."""
        test = self.target["test_split"]
        unit = task_type(self.target)
        read = unit.evaluation_languages(self.target, [lang])
        return content_key({"stage": "evaluate", "target": target_key, "lang": lang,
                            "data": split_fingerprints(self.target, [(read_lang, test) for read_lang in read]),
                            "evaluation": evaluation_settings(self.trainer, self.target),
                            **({} if unit.trains else {"task": task_key_view(self.target)})})

    @property
    def cell_key(self) -> str:
        """The cell's identity, which names its records' folder: every setting that shapes its
        models (the trainer's included: records of two gradient clippings never share a
        folder), none of the languages it is scored in; and the stored target model a target that
        trains nothing scores, when it is given one (absent otherwise, so other keys are as before)."""
        return content_key({"cell": model_key_view(self.model), "itt": self.itt and task_key_view(self.itt),
                            "target": task_key_view(self.target), "transfer": self.transfer,
                            "freezing": self.freezing, "selection": self.selection, "seed": self.keyed_seed,
                            "training": self.training, **({"scored": self.scored} if self.scored else {})})

    @property
    def freezing_name(self) -> str:
        """`none`, `embeddings`, `probe` or `bottom_k<k>`."""
        mode = self.freezing["mode"]
        return f"{mode}{self.freezing['k']}" if mode == "bottom_k" else mode

    @property
    def transfer_name(self) -> str:
        """The transfer mode, with k and the sample seed for few-shot (`few_shot-k8-s1`)."""
        return transfer_name(self.transfer)

    @property
    def scored_model(self) -> str | None:
        """The stored target model scored (`scored`) as a record names it: `<stage>:<the task it
        was fine-tuned on>`, with its transfer when not zero-shot (`target:demo`,
        `few_shot:demo/few_shot-k8-s1`); None for the cell's own encoder."""
        if not self.scored:
            return None
        mode = self.scored["transfer"]["mode"]
        return (f"{self.scored['stage']}:{self.scored['task']}"
                f"{'' if mode == 'zero_shot' else '/' + transfer_name(self.scored['transfer'])}")

    @property
    def name(self) -> str:
        target = self.target["name"]
        if self.scored_model:  # `demo_retrieval-of-target-demo`
            target += "-of-" + self.scored_model.replace(":", "-").replace("/", "-")
        return (f"{self.model['family']}-{self.model['size']}_itt-{self.itt_name}_{target}"
                f"_{self.transfer_name}_{self.freezing_name}_{f'seed{self.seed}' if self.seed_matters else 'noseed'}")

    @property
    def tags(self) -> list[str]:
        return [f"model={self.model['family']}", f"size={self.model['size']}", f"itt={self.itt_name}",
                f"target={self.target['name']}", f"transfer={self.transfer_name}",
                f"freezing={self.freezing_name}", f"selection={self.selection['target']}", f"seed={self.seed}",
                *([f"scored={self.scored_model}"] if self.scored_model else []),
                *(f"training={label if len(label) < 55 else content_key(label)[:8]}"  # W&B tags: <= 64 chars
                  for label in [training_label(self.trainer)] if label)]
