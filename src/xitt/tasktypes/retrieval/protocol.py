"""The retrieval protocol over one language pair's sentence embeddings (numpy only): which
sentences are scored, the development carve and the distractors, mining with a threshold
tuned on the carve, nearest-neighbour retrieval; the result is the language's predictions
file (`xitt.tasktypes.retrieval`).

Sentences are matched across the pair by id (translations share one). Aligned sides hold
the same ids (`retrieval.aligned`); BUCC's own files do not: their sentences outside the
gold pairs have ids of their own. A sentence whose text occurs twice on one side cannot be
told from its twin, so such ids are dropped from both sides and counted. Groups (XNLI: a
premise and its hypotheses) are carved whole: a share `dev_ratio` of the groups (of both
sides) is the development part (where mining tunes its threshold, never scored), the rest
the test part; within each part, `distractor_ratio` of the groups lose their English side
and as many lose the other side, so that mining must also reject sentences without a
translation. The carve and the distractors draw from `data_seed` only, so every language
and every model sees the same ones.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from xitt import XittError
from xitt.tasktypes.retrieval import MINING_F1, NEAREST_ACCURACY, settings
from xitt.tasktypes.retrieval.search import best_threshold, mine, nearest, normalise


@dataclass
class Side:
    """One side of a language pair: sentence ids, groups, texts and embeddings (one row each)."""

    lang: str
    ids: list[str]
    groups: list[str]
    texts: list[str]
    vectors: np.ndarray

    def subset(self, keep: set[str]) -> "Side":
        rows = [i for i, id_ in enumerate(self.ids) if id_ in keep]
        return Side(self.lang, [self.ids[i] for i in rows], [self.groups[i] for i in rows],
                    [self.texts[i] for i in rows], self.vectors[rows])


def duplicated_ids(side: Side) -> set[str]:
    """The ids of sentences whose text occurs more than once on the side."""
    seen: dict[str, list[str]] = {}
    for id_, text in zip(side.ids, side.texts):
        seen.setdefault(text.strip(), []).append(id_)
    return {id_ for ids in seen.values() if len(ids) > 1 for id_ in ids}


def carve(groups: list[str], ratio: float, seed: int) -> tuple[set[str], set[str]]:
    """(development groups, test groups): a fixed shuffle of the sorted groups."""
    ordered = sorted(set(groups))
    order = np.random.default_rng(seed).permutation(len(ordered))
    n_dev = round(ratio * len(ordered))
    return {ordered[i] for i in order[:n_dev]}, {ordered[i] for i in order[n_dev:]}


def distractor_groups(groups: set[str], ratio: float, seed: int) -> tuple[set[str], set[str]]:
    """(groups that keep only the scored language's side, groups that keep only English's)."""
    ordered = sorted(groups)
    order = np.random.default_rng([seed, len(ordered)]).permutation(len(ordered))
    n = round(ratio * len(ordered))
    return {ordered[i] for i in order[:n]}, {ordered[i] for i in order[n:2 * n]}


def score_language(task: Mapping[str, Any], own: Side, pivot: Side) -> dict[str, Any]:
    """The predictions file of language `own.lang` against the English (`pivot`) side."""
    chosen = settings(task)
    if not pivot.ids:
        raise XittError(f"Task '{task['name']}': {own.lang} has no English side to be paired with (the pivot "
                        f"language {pivot.lang} has no sentences). Check `{task['name']}`'s files for "
                        f"{pivot.lang}, or `pivot_lang`.")
    if chosen["aligned"] and set(own.ids) != set(pivot.ids):
        missing, extra = len(set(pivot.ids) - set(own.ids)), len(set(own.ids) - set(pivot.ids))
        raise XittError(f"Task '{task['name']}': the {own.lang} and {pivot.lang} sides do not hold the same "
                        f"sentences ({len(own.ids):,} and {len(pivot.ids):,} sentences; {missing:,} of "
                        f"{pivot.lang}'s have no {own.lang} line and {extra:,} of {own.lang}'s no {pivot.lang} "
                        f"line): the files must be aligned line by line (same order, same number of lines). "
                        f"For BUCC's own files, whose gold pairs say which sentences are translations, set "
                        f"`target.retrieval.aligned=false`.")
    dropped = duplicated_ids(own) | duplicated_ids(pivot)
    own, pivot = own.subset(set(own.ids) - dropped), pivot.subset(set(pivot.ids) - dropped)
    dev_groups, test_groups = carve(own.groups + pivot.groups, chosen["dev_ratio"], chosen["data_seed"])
    counted = (f"{len(own.ids):,} sentences" if chosen["aligned"] else
               f"{len(own.ids):,} and {len(pivot.ids):,} sentences ({len(set(own.ids) & set(pivot.ids)):,} gold pairs)")
    note = (f"retrieval against {pivot.lang}: {counted} in {len(dev_groups) + len(test_groups):,} "
            f"groups; {len(dropped):,} dropped as duplicates (a text twice on one side); development carve "
            f"{chosen['dev_ratio']:.0%} of the groups (data seed {chosen['data_seed']}), never scored")
    in_part = {part: {id_ for side in (own, pivot) for id_, group in zip(side.ids, side.groups) if group in groups}
               for part, groups in (("dev", dev_groups), ("test", test_groups))}
    if chosen["mode"] == "nearest":
        return {**_nearest(own.subset(in_part["test"]), pivot.subset(in_part["test"])), "note": note}
    tuned = _mining_part(own, pivot, in_part["dev"], dev_groups, chosen)
    if tuned["gold"] == 0:
        raise XittError(f"Task '{task['name']}': the development carve of {own.lang} holds no pair to tune the "
                        f"mining threshold on. Raise `target.retrieval.dev_ratio` or lower `distractor_ratio`.")
    threshold, dev_f1 = best_threshold(tuned["scores"], tuned["is_gold"], tuned["gold"])
    test = _mining_part(own, pivot, in_part["test"], test_groups, chosen)
    selected = test["scores"] >= threshold
    mined = dict(zip(test["source"][selected], test["target"][selected]))
    margins = dict(zip(test["source"][selected], test["scores"][selected].tolist()))
    ids = test["own"].ids
    pivot_ids = set(test["pivot"].ids)
    return {"metric": MINING_F1, "ids": ids, "gold": [id_ if id_ in pivot_ids else "" for id_ in ids],
            "pred": [mined.get(id_, "") for id_ in ids], "margin": [margins.get(id_) for id_ in ids],
            "threshold": threshold,
            "threshold_from": (f"the F1-maximising margin on the development carve ({len(tuned['own'].ids):,} and "
                               f"{len(tuned['pivot'].ids):,} sentences, {tuned['gold']:,} gold pairs: F1 "
                               f"{dev_f1:.1f}), held fixed on the test part"),
            "distractors": {"own": test["own_only"], "pivot": test["pivot_only"]},
            "note": note + f"; distractors: {chosen['distractor_ratio']:.0%} of each part's groups keep one side only"}


def _mining_part(own: Side, pivot: Side, ids: set[str], groups: set[str], chosen: Mapping[str, Any]) -> dict:
    """Mine one part (its distractor groups removed from one side each): the candidates by
    ids, their margins, which are gold, and the count of gold pairs."""
    own_only, pivot_only = distractor_groups(groups, chosen["distractor_ratio"], chosen["data_seed"])
    part_own = own.subset({id_ for id_, group in zip(own.ids, own.groups) if id_ in ids and group not in pivot_only})
    part_pivot = pivot.subset({id_ for id_, group in zip(pivot.ids, pivot.groups)
                               if id_ in ids and group not in own_only})
    both = set(part_own.ids) & set(part_pivot.ids)
    found = mine(normalise(part_own.vectors), normalise(part_pivot.vectors), k=int(chosen["margin_k"]))
    source = np.asarray(part_own.ids, dtype=object)[found.source] if len(found) else np.zeros(0, dtype=object)
    target = np.asarray(part_pivot.ids, dtype=object)[found.target] if len(found) else np.zeros(0, dtype=object)
    return {"own": part_own, "pivot": part_pivot, "source": source, "target": target, "scores": found.score,
            "is_gold": source == target, "gold": len(both),
            "own_only": len(set(part_own.ids) - both), "pivot_only": len(set(part_pivot.ids) - both)}


def _nearest(own: Side, pivot: Side) -> dict[str, Any]:
    """Each sentence's nearest English sentence (and each English sentence's nearest one),
    for the sentences that have a translation, searched among all of the other side's."""
    both = set(own.ids) & set(pivot.ids)
    x, y = normalise(own.vectors), normalise(pivot.vectors)
    scored_own = [i for i, id_ in enumerate(own.ids) if id_ in both]
    scored_pivot = [i for i, id_ in enumerate(pivot.ids) if id_ in both]
    forward = nearest(x[scored_own], y, 1)[1][:, 0]
    backward = nearest(y[scored_pivot], x, 1)[1][:, 0]
    own_ids, pivot_ids = [own.ids[i] for i in scored_own], [pivot.ids[i] for i in scored_pivot]
    return {"metric": NEAREST_ACCURACY, "ids": own_ids, "gold": own_ids, "pred": [pivot.ids[i] for i in forward],
            "reverse": {"ids": pivot_ids, "gold": pivot_ids, "pred": [own.ids[i] for i in backward]}}
