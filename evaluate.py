"""Turn results into the answer, evaluate a stored target model on more languages, or score
the encoder of any stored model (ITT or target) with a retrieval task.

    python evaluate.py report=outputs/multirun/<sweep> [report=<another sweep>]
    python evaluate.py ckpt=outputs/store/target/<key> target_lang.langs=[de,fr]
    python evaluate.py ckpt=outputs/store/itt/<key> target=xnli_nearest target_lang.langs=[de,fr]
    python evaluate.py ckpt=outputs/store/target/<key> target=demo_retrieval
"""

import sys

import hydra
from omegaconf import DictConfig

from xitt import XittError
from xitt.evaluation import evaluate_checkpoint, path_arguments, report


@hydra.main(version_base="1.3", config_path="conf", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    if not (cfg.ckpt or cfg.report):
        sys.exit("xitt: evaluate.py needs `report=<results or sweep folder>` or `ckpt=<target artifact folder>`.")
    if cfg.get("target") is not None and not cfg.ckpt:
        sys.exit("xitt: `target=` names the retrieval task that scores the encoder of a stored model: it goes "
                 "with `ckpt=<store>/itt/<key>` or `ckpt=<store>/target/<key>`.")
    try:
        if cfg.ckpt:
            evaluate_checkpoint(cfg)
        if cfg.report:
            report(cfg)
    except XittError as error:
        sys.exit(f"xitt: {error}")


if __name__ == "__main__":
    sys.argv = path_arguments(sys.argv)
    main()
