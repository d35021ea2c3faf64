"""Language groups: the coarse categories the ITT gain is summarised over.

Whether intermediate-task training helps may depend less on the individual language than
on how much pretraining text the model saw for it and on its script.  The report
therefore pools the per-language gains into groups of two kinds: *resource level*
(high / medium / low, in the spirit of the XTREME and Joshi et al. 2020 groupings) and
*script*.  The table is deliberately small and editable: a language that is not in it
(for example a synthetic demo language) falls into the group ``"other"``.
"""

from __future__ import annotations

from typing import NamedTuple

OTHER = "other"


class LanguageGroups(NamedTuple):
    resource: str
    script: str


_RESOURCE_LEVELS = {
    "high": "en de fr es it pt nl ru zh ja ar ko pl sv",
    "medium": "bg el tr vi th hi id fa he hu fi cs ro uk ca ms bn ta et da no",
    "low": "sw ur yo qu jv my te ml mr kk ka tl af eu ne si ha am",
}

_SCRIPTS = {
    "Latin": "en de fr es it pt nl pl sv tr vi id hu fi cs ro ca ms et da no "
    "sw yo qu jv tl af eu ha",
    "Cyrillic": "ru bg uk kk",
    "Arabic": "ar ur fa",
    "Devanagari": "hi mr ne",
    "Han": "zh",
    "Japanese": "ja",
    "Hangul": "ko",
    "Greek": "el",
    "Thai": "th",
    "Hebrew": "he",
    "Bengali": "bn",
    "Tamil": "ta",
    "Telugu": "te",
    "Malayalam": "ml",
    "Georgian": "ka",
    "Myanmar": "my",
    "Sinhala": "si",
    "Ethiopic": "am",
}


def _invert(groups: dict[str, str]) -> dict[str, str]:
    return {code: group for group, codes in groups.items() for code in codes.split()}


RESOURCE_LEVEL = _invert(_RESOURCE_LEVELS)
SCRIPT = _invert(_SCRIPTS)


def base_language(lang: str) -> str:
    """The ISO 639-1 part of a language tag: ``"zh-CN"`` and ``"zh_cn"`` both give ``"zh"``."""
    return str(lang).replace("_", "-").split("-")[0].lower()


def language_groups(lang: str) -> LanguageGroups:
    """Resource level and script of a language code; ``"other"`` for codes not in the table."""
    code = base_language(lang)
    return LanguageGroups(RESOURCE_LEVEL.get(code, OTHER), SCRIPT.get(code, OTHER))
