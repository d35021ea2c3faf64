"""`model=<family>_<size>` shorthands, synthesised from the family files.

A family file (`conf/model/xlmr.yaml`) declares its sizes; this config source offers
`model/xlmr_base`, `model/xlmr_large`, ... as configs equal to `model=xlmr size=base`, so
that a grid over (family, size) pairs reads `model=xlmr_base,mt5_large` without one file
per pair. It is on the search path through `hydra.searchpath` in `conf/train.yaml`.
"""


from hydra.core.object_type import ObjectType
from hydra.plugins.config_source import ConfigLoadError, ConfigResult, ConfigSource
from omegaconf import OmegaConf

from xitt import CONF_DIR

# The families of each model folder, with the file names and times they were read from.
_FAMILIES: dict[str, tuple[tuple, dict[str, list[str]]]] = {}


class ShorthandConfigSource(ConfigSource):
    @staticmethod
    def scheme() -> str:
        return "xitt-shorthand"

    def _families(self) -> dict[str, list[str]]:
        """Each family file's sizes. Hydra asks for them twice per composed config; they are
        read again only when a family file changes (reading them all took a third of the
        time of a compose)."""
        paths = sorted((CONF_DIR / self.path).glob("*.yaml"))
        signature = tuple((path.name, path.stat().st_mtime_ns) for path in paths)
        if _FAMILIES.get(self.path, (None,))[0] != signature:
            families = {}
            for path in paths:
                declared = OmegaConf.load(path)
                if "sizes" in declared and path.stem != "hf":
                    families[path.stem] = list(declared.sizes)
            _FAMILIES[self.path] = (signature, families)
        return _FAMILIES[self.path][1]

    def _shorthands(self) -> dict[str, tuple[str, str]]:
        return {f"{family}_{size}": (family, size)
                for family, sizes in self._families().items() for size in sizes}

    def _name(self, config_path: str) -> str:
        return config_path.removesuffix(".yaml").removeprefix(f"{self.path}/")

    def available(self) -> bool:
        return (CONF_DIR / self.path).is_dir()

    def is_group(self, config_path: str) -> bool:
        return config_path in ("", self.path)

    def is_config(self, config_path: str) -> bool:
        return config_path.startswith(f"{self.path}/") and self._name(config_path) in self._shorthands()

    def list(self, config_path: str, results_filter: ObjectType | None) -> list[str]:
        if config_path == "":
            return [self.path] if results_filter in (None, ObjectType.GROUP) else []
        if config_path == self.path and results_filter in (None, ObjectType.CONFIG):
            return sorted(self._shorthands())
        return []

    def load_config(self, config_path: str) -> ConfigResult:
        shorthand = self._shorthands().get(self._name(config_path))
        if shorthand is None:
            raise ConfigLoadError(f"No shorthand config {config_path}")
        family, size = shorthand
        # Global package, so that the size override is read as the top-level `size` group.
        # `shorthand_size` lets the cell refuse a contradicting `size=` (xitt.core.cell).
        config = OmegaConf.create({"defaults": [f"/{self.path}/{family}@{self.path}",
                                                {"override /size": size}, "_self_"],
                                   self.path: {"shorthand_size": size}})
        return ConfigResult(config=config, path=f"{self.scheme()}://{self.path}", provider="xitt",
                            header={"package": "_global_"})
