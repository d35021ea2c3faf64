"""Scores for extractive QA: exact match and token F1, as SQuAD v1.1 and MLQA define them.

Torch-free on purpose: the same functions score predictions at evaluation time and
recompute F1 from saved predictions in the report.

Definition (SQuAD v1.1, Rajpurkar et al. 2016; MLQA, Lewis et al. 2020). A prediction and
each gold answer are normalised, then:

* exact match is 1 when the normalised strings are equal, else 0;
* F1 splits both normalised strings into tokens and treats them as bags:
  overlap = the size of the multiset intersection, precision = overlap / predicted tokens,
  recall = overlap / gold tokens, F1 = 2PR / (P + R), and 0 when the overlap is 0 (so, as in
  SQuAD v1.1 and MLQA's evaluation, two answers that both normalise to nothing have exact
  match 1 but F1 0; SQuAD v2.0's script, and torchmetrics' `SQuAD` which follows it, give
  that case F1 1, the one difference tests/test_metric_crosscheck.py finds);
* an example's score is the maximum over its gold answers (F1 and exact match maxed
  separately), and a data set's score is the mean over examples, times 100.

Normalisation, in this order: lowercase; delete punctuation; replace articles by a space;
split into tokens; join the tokens with single spaces.

* `lang=None` is SQuAD v1.1 as published: punctuation is ASCII `string.punctuation`,
  articles are English `a an the`, tokens are whitespace-separated.
* `lang="<code>"` is MLQA's language-aware normalisation: punctuation is every character
  whose Unicode category starts with P, plus `string.punctuation` (which adds the ASCII
  symbols `$+<=>^`|~`); articles are removed as whole words per language; Chinese is
  tokenised per character (see `_tokens`). The article lists are those of MLQA's released
  evaluation: en `a an the`; es `un una unos unas el la los las`; de `ein eine einen einem
  eines einer der die das den dem des`; vi `của là cái chiếc những` (MLQA's list, which
  also holds the copula `là` and the possessive `của`); ar: every occurrence of `ال` is
  replaced by a space. MLQA's paper describes this as stripping the definite-article
  prefix, but its released evaluation (which published MLQA/XTREME numbers use) replaces
  the two letters wherever they occur, also inside words; we follow the released behaviour
  so that scores stay comparable. hi and zh have no articles.
* Languages that MLQA does not cover but XQuAD does (el ro ru th tr) get whitespace tokens
  and no article removal: no published list exists for them. Thai is written without
  spaces between words, so its whitespace tokens are whole phrases and its F1 is close to
  its exact match; that is a known property of this metric, not a bug here.
"""

import re
import string
import unicodedata
from collections import Counter
from collections.abc import Sequence

from xitt import XittError

_SQUAD_ARTICLES = re.compile(r"\b(a|an|the)\b")

# Whole-word article patterns; `\b` is Unicode-aware for str patterns, so it works on
# Vietnamese and German letters.
_ARTICLES: dict[str, re.Pattern | None] = {
    "en": re.compile(r"\b(a|an|the)\b"),
    "es": re.compile(r"\b(un|una|unos|unas|el|la|los|las)\b"),
    "de": re.compile(r"\b(ein|eine|einen|einem|eines|einer|der|die|das|den|dem|des)\b"),
    "vi": re.compile(r"\b(của|là|cái|chiếc|những)\b"),
    "ar": re.compile("ال"),
    "hi": None,
    "zh": None,
    "el": None,
    "ro": None,
    "ru": None,
    "th": None,
    "tr": None,
}
LANGUAGES = tuple(sorted(_ARTICLES))

# The CJK Unified Ideographs range MLQA splits into single characters. Characters outside
# it (Latin words, digits, other scripts) stay in whitespace-separated runs.
_CJK = re.compile("[\u4e00-\u9fa5]")
_CHARACTER_LANGS = {"zh"}


def _is_punctuation(char: str, unicode_punctuation: bool) -> bool:
    if char in string.punctuation:
        return True
    return unicode_punctuation and unicodedata.category(char).startswith("P")


def _tokens(text: str, lang: str | None) -> list[str]:
    """Whitespace tokens; for Chinese, every CJK character is a token of its own and runs of
    other characters between them are split on whitespace ("2008年北京" -> 2008 年 北 京)."""
    if lang not in _CHARACTER_LANGS:
        return text.split()
    tokens, run = [], []
    for char in text:
        if _CJK.match(char):
            tokens.extend("".join(run).split())
            run = []
            tokens.append(char)
        else:
            run.append(char)
    tokens.extend("".join(run).split())
    return tokens


def _check_lang(lang: str | None) -> None:
    if lang is not None and lang not in _ARTICLES:
        raise XittError(f"QA scoring does not know the language {lang!r}. It knows {', '.join(LANGUAGES)} "
                        f"(MLQA's rules, plus XQuAD's languages with no article list), or lang=None for "
                        f"SQuAD v1.1's English rules. Add the language's articles and tokenisation to "
                        f"xitt.metrics.qa._ARTICLES, or score it with lang=None.")


def normalized_tokens(text: str, lang: str | None = None) -> list[str]:
    """The tokens of `text` after the normalisation described in the module docstring."""
    _check_lang(lang)
    text = text.lower()
    text = "".join(char for char in text if not _is_punctuation(char, unicode_punctuation=lang is not None))
    articles = _SQUAD_ARTICLES if lang is None else _ARTICLES[lang]
    if articles is not None:
        text = articles.sub(" ", text)
    return _tokens(text, lang)


def normalize_answer(text: str, lang: str | None = None) -> str:
    """The normalised answer string (its tokens joined by single spaces)."""
    return " ".join(normalized_tokens(text, lang))


def _f1(pred_tokens: list[str], gold_tokens: list[str]) -> float:
    overlap = sum((Counter(pred_tokens) & Counter(gold_tokens)).values())
    if overlap == 0:
        return 0.0
    precision, recall = overlap / len(pred_tokens), overlap / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def qa_example_scores(pred: str, golds: Sequence[str], lang: str | None = None) -> tuple[float, float]:
    """(F1, exact match) of one prediction, each in 0-1 and maxed over the gold answers."""
    if isinstance(golds, str) or not golds:
        raise XittError(f"QA scoring needs a non-empty list of gold answers per question, got {golds!r}. "
                        f"Pass the answers as a list of strings, e.g. example['answers']['text'].")
    pred_tokens = normalized_tokens(pred, lang)
    best_f1 = best_em = 0.0
    for gold in golds:
        gold_tokens = normalized_tokens(gold, lang)
        best_f1 = max(best_f1, _f1(pred_tokens, gold_tokens))
        best_em = max(best_em, float(pred_tokens == gold_tokens))
    return best_f1, best_em


def qa_scores(predictions: Sequence[str], golds: Sequence[Sequence[str]], lang: str | None = None) -> dict[str, float]:
    """Mean F1 and exact match (0-100) over questions."""
    if len(predictions) != len(golds):
        raise XittError(f"There are {len(predictions)} predictions but {len(golds)} questions with gold answers. "
                        f"Give one predicted answer string per question, in the same order (\"\" for none).")
    if not predictions:
        return {"f1": 0.0, "exact_match": 0.0}
    scores = [qa_example_scores(pred, gold, lang) for pred, gold in zip(predictions, golds)]
    return {"f1": 100.0 * sum(f1 for f1, _ in scores) / len(scores),
            "exact_match": 100.0 * sum(em for _, em in scores) / len(scores)}
