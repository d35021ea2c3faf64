"""Train and evaluate one cell of the study, or a grid of them with `-m`.

    python train.py                                   # the offline demo cell
    python train.py -m model=tiny size=s,m itt=none,demo
    python train.py -m model=xlmr_base,xlmr_large itt=imdb,none
"""

import sys

import hydra
from omegaconf import DictConfig

from xitt.stages.grid import grid_exit_status, run_job


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> None:
    run_job(cfg)


if __name__ == "__main__":
    main()
    sys.exit(grid_exit_status())
