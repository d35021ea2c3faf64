"""Fill the Hugging Face caches with every model and data set a config or a whole grid
needs, on a machine with network (a cluster's login node), so that the same sweep then
runs on compute nodes without it (`HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1`).

    python -m xitt.prepare model=xlmr_base,mt5_small itt=none,mnli target=xnli
    python -m xitt.prepare experiment=size_sweep_xnli --dry-run     # list, download nothing

The overrides are those of the sweep, read exactly as `python train.py -m` reads them
(`xitt.grid_expand`: comma lists, `hydra.sweeper.params` of experiment configs), and each
cell's needs are the ones its run checks before training (`Cell.data_needs`,
`xitt.core.sources.data_parts`), so prepare fetches what the run will look for. Models are
fetched with only their config, tokenizer and safetensors weights; data sets are loaded
split by split with `datasets.load_dataset`, which downloads and prepares them in the cache.
Local files and folders are not downloaded, only checked.
"""

import argparse
import dataclasses
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from xitt import XittError
from xitt.core.cell import Cell, is_local_path
from xitt.core.sources import FilePart, HubPart, data_parts
from xitt.grid_expand import expand_grid

# Files of a model repository that loading an encoder and its tokenizer reads; weights
# only as safetensors (see `model_files`).
MODEL_FILE_SUFFIXES = (".json", ".safetensors", ".model", ".txt")


@dataclass
class GridAssets:
    """What the cells of a grid read: hub models, hub data sets (with their splits),
    local model folders and local files; and the cells that do not compose into a run."""

    cells: int = 0
    hub_models: list[str] = field(default_factory=list)
    local_models: list[str] = field(default_factory=list)
    hub_datasets: dict = field(default_factory=dict)  # HubPart without split -> its splits
    local_files: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def missing_local(self) -> list[str]:
        """Local folders and files that are not on this machine."""
        missing = [f"local model folder {path} (no config.json)" for path in self.local_models
                   if not Path(path, "config.json").is_file()]
        return missing + [f"local file {path}" for path in self.local_files if not Path(path).is_file()]


def _add(items: list, item) -> None:
    if item not in items:
        items.append(item)


def grid_assets(overrides: Iterable[str]) -> GridAssets:
    """The assets of every cell of the grid the overrides describe."""
    assets = GridAssets()
    failing: dict[str, list[str]] = {}  # one entry per distinct reason, with its cells
    for cell_overrides, cfg in expand_grid(list(overrides)):
        assets.cells += 1
        try:
            cell = Cell.from_config(cfg)
            if cell.model["source"] == "hub":
                name = str(cell.model["name_or_path"])
                _add(assets.local_models if is_local_path(name) else assets.hub_models, name)
            for task, lang, split in cell.data_needs():
                for part in data_parts(task, lang, split):
                    if isinstance(part, HubPart):
                        dataset = dataclasses.replace(part, split=None)
                        _add(assets.hub_datasets.setdefault(dataset, []), part.split)
                    elif isinstance(part, FilePart):
                        for path in part.files:
                            _add(assets.local_files, str(path))
        except XittError as error:
            failing.setdefault(str(error), []).append(" ".join(cell_overrides) or "(defaults)")
    assets.problems = [f"{len(cells)} cell(s) ({'; '.join(cells[:3])}{'; ...' if len(cells) > 3 else ''}): {reason}"
                       for reason, cells in failing.items()]
    return assets


def model_files(repo_id: str) -> list[str]:
    """The files of a hub model to fetch: its top-level config, tokenizer and safetensors
    files. A repository without safetensors weights gets its PyTorch weights instead
    (transformers loads them with `weights_only`), with a note, since there is no other way
    to load it."""
    from huggingface_hub import HfApi

    files = [sibling.rfilename for sibling in HfApi().model_info(repo_id).siblings or []]
    top_level = [name for name in files if "/" not in name]
    wanted = [name for name in top_level if name.endswith(MODEL_FILE_SUFFIXES)]
    if not any(name.endswith(".safetensors") for name in wanted):
        weights = [name for name in top_level if name.startswith("pytorch_model") and name.endswith(".bin")]
        print(f"  note: {repo_id} has no safetensors weights; fetching {', '.join(weights) or 'none'} instead",
              flush=True)
        wanted += weights
    return wanted


def describe(assets: GridAssets) -> str:
    """The listing `--dry-run` prints (and a real run prints before it starts)."""
    lines = [f"{assets.cells} cells need:" if assets.cells != 1 else "1 cell needs:"]
    lines += [f"  model {name}" for name in assets.hub_models]
    lines += [f"  {dataset.dataset}: {', '.join(splits)}" for dataset, splits in assets.hub_datasets.items()]
    lines += [f"  local model folder {path}" for path in assets.local_models]
    lines += [f"  local file {path}" for path in assets.local_files]
    if not (assets.hub_models or assets.hub_datasets or assets.local_models or assets.local_files):
        lines.append("  nothing from the hub or disk (demo tasks and models built from scratch)")
    return "\n".join(lines)


def download(assets: GridAssets) -> None:
    """Fetch every hub model and data set into the Hugging Face caches, with progress."""
    import datasets
    from huggingface_hub import snapshot_download

    total = len(assets.hub_models) + sum(len(splits) for splits in assets.hub_datasets.values())
    step = 0
    for repo_id in assets.hub_models:
        step += 1
        print(f"[{step}/{total}] model {repo_id}", flush=True)
        snapshot_download(repo_id, allow_patterns=model_files(repo_id))
    for dataset, splits in assets.hub_datasets.items():
        for split in splits:
            step += 1
            print(f"[{step}/{total}] {dataset.dataset} split {split}", flush=True)
            datasets.load_dataset(dataset.path, dataset.name, split=split, revision=dataset.revision,
                                  data_dir=dataset.data_dir)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m xitt.prepare",
        description="Download every model and data set a config or sweep needs into the Hugging Face "
                    "caches (run on a machine with network), so that the sweep runs offline.")
    parser.add_argument("overrides", nargs="*", help="the sweep's overrides, as for `python train.py -m`")
    parser.add_argument("--dry-run", action="store_true", help="list what is needed; download nothing")
    parser.add_argument("-m", "--multirun", action="store_true",
                        help="accepted for symmetry with train.py: sweeps are always expanded")
    args = parser.parse_args(argv)
    try:
        assets = grid_assets(args.overrides)
        print(describe(assets), flush=True)
        if not args.dry_run:
            from huggingface_hub import constants

            if (assets.hub_models or assets.hub_datasets) and constants.HF_HUB_OFFLINE:
                raise XittError("HF_HUB_OFFLINE=1 is set, so nothing can be downloaded. Run prepare on a "
                                "machine with network, without HF_HUB_OFFLINE / HF_DATASETS_OFFLINE.")
            download(assets)
    except XittError as error:
        print(f"\nxitt: {error}", file=sys.stderr)
        return 1
    problems = assets.problems + [f"missing {item}" for item in assets.missing_local()]
    for problem in problems:
        print(f"PROBLEM {problem}", file=sys.stderr)
    if problems:
        print(f"\nxitt: {len(problems)} problem(s) above: the grid would stop on them; fix them before "
              f"running it.", file=sys.stderr)
        return 1
    if not args.dry_run:
        print("Done: the caches hold everything this grid reads from the hub. Run the same overrides "
              "with HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1.", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
