"""A cell of the grid: the resolved axes of one job and the keys of the artifacts it needs.

    itt key    = hash(model, size, itt task + hparams, freezing during ITT, seed)
    target key = hash(itt key or pretrained model, target task + hparams, transfer mode,
                      training language(s), freezing, seed)
    result key = hash(target key, evaluation language, evaluation settings)
"""

from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig, MissingMandatoryValue, OmegaConf

from xitt import XittError
from xitt.keys import content_key

TRANSFER_MODES = ("zero_shot",)
# Settings that change how fast a stage runs but not what it learns stay out of the keys.
NOT_IN_KEYS = ("eval_batch_size",)


def resolve_model(cfg: DictConfig) -> dict[str, Any]:
    """The family's declaration with the chosen size filled in; fails at once, listing
    the family's sizes, when the size is not one of them."""
    family = OmegaConf.to_container(cfg.model, resolve=False)
    sizes = family.pop("sizes")
    size = cfg.size.name or family["default_size"]
    if size not in sizes:
        raise XittError(
            f"Model family '{family['family']}' has no size '{size}'. Its sizes are: "
            f"{', '.join(sizes)}. Pick one with `size=<name>` (or `model={family['family']}_<size>`)."
        )
    try:
        chosen = OmegaConf.to_container(cfg.model.sizes[size], resolve=True)
    except MissingMandatoryValue:
        raise XittError(
            f"Model family '{family['family']}' needs `model.name_or_path=<hub id or local folder>`."
        ) from None
    resolved = {key: value for key, value in family.items() if key != "name_or_path"}
    resolved.update(size=size, **chosen)
    return resolved


def _task(node: DictConfig) -> dict[str, Any]:
    return OmegaConf.to_container(node, resolve=True)


def _key_view(task: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in task.items() if name not in NOT_IN_KEYS}


@dataclass
class Cell:
    model: dict[str, Any]
    itt: dict[str, Any] | None
    target: dict[str, Any]
    transfer: dict[str, Any]
    freezing: dict[str, Any]
    seed: int
    eval_langs: list[str]
    precision: str
    config: dict[str, Any] = field(repr=False)

    @classmethod
    def from_config(cls, cfg: DictConfig) -> "Cell":
        model = resolve_model(cfg)
        itt = None if cfg.itt.name == "none" else _task(cfg.itt)
        target = _task(cfg.target)
        transfer = _task(cfg.transfer)
        if transfer["mode"] not in TRANSFER_MODES:
            raise XittError(f"Transfer mode '{transfer['mode']}' is not supported; use one of {', '.join(TRANSFER_MODES)}.")
        langs = cfg.target_lang.langs
        eval_langs = list(target['languages']) if langs == "all" else list(langs)
        unknown = [lang for lang in eval_langs if lang not in list(target['languages'])]
        if unknown:
            raise XittError(
                f"Target task '{target['name']}' has no language {', '.join(unknown)}. Its languages "
                f"are: {', '.join(list(target['languages']))}; choose with `target_lang.langs=[...]` or `target_lang=all`."
            )
        return cls(model=model, itt=itt, target=target, transfer=transfer, freezing=_task(cfg.freezing),
                   seed=int(cfg.seed), eval_langs=eval_langs, precision=str(cfg.trainer.precision),
                   config=OmegaConf.to_container(cfg, resolve=True))

    @property
    def itt_name(self) -> str:
        return self.itt["name"] if self.itt else "none"

    def freezing_for(self, stage: str) -> dict[str, Any]:
        if stage in self.freezing["stages"]:
            return {"mode": self.freezing["mode"], "k": self.freezing["k"]}
        return {"mode": "none", "k": 0}

    @property
    def itt_key(self) -> str | None:
        if self.itt is None:
            return None
        return content_key({"stage": "itt", "model": self.model, "task": _key_view(self.itt),
                            "freezing": self.freezing_for("itt"), "seed": self.seed, "precision": self.precision})

    def train_langs_for(self, lang: str) -> list[str]:
        """The language(s) the target model that is evaluated on `lang` is trained on."""
        return [self.transfer["train_lang"]]

    def target_key(self, train_langs: list[str]) -> str:
        start = self.itt_key or {"pretrained": self.model, "seed": self.seed}
        return content_key({"stage": "target", "start": start, "task": _key_view(self.target),
                            "transfer": self.transfer, "train_langs": train_langs,
                            "freezing": self.freezing_for("target"), "seed": self.seed, "precision": self.precision})

    def result_key(self, target_key: str, lang: str) -> str:
        return content_key({"stage": "evaluate", "target": target_key, "lang": lang,
                            "split": self.target["test_split"], "max_length": self.target["hparams"]["max_length"]})

    @property
    def cell_key(self) -> str:
        return content_key({"cell": self.model, "itt": self.itt, "target": _key_view(self.target),
                            "transfer": self.transfer, "freezing": self.freezing, "seed": self.seed,
                            "precision": self.precision})

    @property
    def freezing_name(self) -> str:
        """`none`, `embeddings`, `probe` or `bottom_k<k>`."""
        mode = self.freezing["mode"]
        return f"{mode}{self.freezing['k']}" if mode == "bottom_k" else mode

    @property
    def name(self) -> str:
        return (f"{self.model['family']}-{self.model['size']}_itt-{self.itt_name}_{self.target['name']}"
                f"_{self.transfer['mode']}_{self.freezing_name}_seed{self.seed}")

    @property
    def tags(self) -> list[str]:
        return [f"model={self.model['family']}", f"size={self.model['size']}", f"itt={self.itt_name}",
                f"target={self.target['name']}", f"transfer={self.transfer['mode']}",
                f"freezing={self.freezing_name}", f"seed={self.seed}"]
