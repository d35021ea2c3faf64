"""The demo corpus: a small multilingual sentiment world, generated deterministically.

English sentences are built from templates over a polarity lexicon; three synthetic
languages are word-by-word translations of them that share ever fewer words with English:

- `near` keeps 75% of the words and adds a suffix to the rest (the stem survives),
- `mid` keeps 55% and shifts the vowels of the rest,
- `far` keeps 35% and reverses and shifts the rest; its function words are all its own.

A randomly initialised encoder can only transfer through what the languages share, so
zero-shot F1 is above chance and falls with distance. The intermediate task (English
polarity, 3000 reviews) sees the whole lexicon; the target task's English training set
(150 sentences) does not, so intermediate training has something to add.
"""

import random
from functools import lru_cache

POSITIVE = (
    "good great lovely excellent wonderful superb pleasant brilliant delightful fantastic "
    "charming perfect splendid marvelous terrific fabulous enjoyable gorgeous elegant "
    "impressive remarkable outstanding admirable beautiful cheerful friendly generous "
    "graceful joyful magnificent neat nice polished precious radiant refreshing smooth "
    "stunning tasty warm"
).split()
NEGATIVE = (
    "bad awful terrible horrible poor dreadful boring ugly nasty dull disgusting "
    "miserable annoying lousy pathetic tedious clumsy shabby gloomy bland broken "
    "cheap cruel dirty faulty filthy gross harsh lame messy noisy painful rotten rude "
    "rusty sloppy sour stale tacky weak"
).split()
NEUTRAL = (
    "long new old red blue green typical ordinary average usual small large round square "
    "wooden metal plastic early late local foreign simple plain standard modern"
).split()
NOUNS = (
    "film book hotel meal phone service room movie song camera laptop coffee pizza "
    "garden train ticket shirt chair table screen battery story ending plot actor "
    "museum beach city bus car shop staff menu soup bread window door bed sofa lamp "
    "jacket bag watch game concert show"
).split()
LINKS = "was is seemed felt looked became".split()
INTENSIFIERS = "very really quite rather so truly".split()
DETERMINERS = "the this my our their that".split()
FUNCTION_WORDS = set(LINKS + INTENSIFIERS + DETERMINERS + ["and", "i", "it", "liked", "thought"])

LANGUAGES = ("en", "near", "mid", "far")
# Share of word types each language borrows unchanged from English.
BORROWED = {"en": 1.0, "near": 0.75, "mid": 0.55, "far": 0.35}
SENTIMENT_LABELS = ("negative", "neutral", "positive")
POLARITY_LABELS = ("negative", "positive")
SPLIT_SIZES = {
    ("sentiment", "train"): 150,
    ("sentiment", "validation"): 150,
    ("sentiment", "test"): 300,
    ("polarity", "train"): 3000,
    ("polarity", "validation"): 300,
}
LABEL_NOISE = 0.04  # a few mislabelled sentences keep the ceiling below 100


def _shift_vowels(word: str) -> str:
    return word.translate(str.maketrans("aeiou", "eioua"))


def _transform(lang: str, word: str) -> str:
    if lang == "near":
        return word + "en"
    if lang == "mid":
        return _shift_vowels(word)
    return _shift_vowels(word[::-1]) + "k"


@lru_cache(maxsize=None)
def translate_word(lang: str, word: str) -> str:
    """A word's form in `lang`: borrowed unchanged, or transformed; function words of
    `far` are always its own. Decided per word, so translation is consistent."""
    if lang == "en":
        return word
    if lang == "far" and word in FUNCTION_WORDS:
        return _transform(lang, word)
    borrowed = random.Random(f"{lang}:{word}").random() < BORROWED[lang]
    return word if borrowed else _transform(lang, word)


def translate(lang: str, sentence: str) -> str:
    return " ".join(translate_word(lang, word) for word in sentence.split())


def _clause(rng: random.Random, adjective: str) -> str:
    intensifier = [rng.choice(INTENSIFIERS)] if rng.random() < 0.4 else []
    return " ".join([rng.choice(DETERMINERS), rng.choice(NOUNS), rng.choice(LINKS), *intensifier, adjective])


def _sentiment_sentence(rng: random.Random, label: str) -> str:
    lexicon = {"positive": POSITIVE, "negative": NEGATIVE, "neutral": NEUTRAL}[label]
    clauses = [_clause(rng, rng.choice(lexicon)) for _ in range(rng.choice([1, 1, 2]))]
    if label != "neutral" and rng.random() < 0.5:  # neutral filler around the opinion
        clauses.insert(rng.randrange(len(clauses) + 1), _clause(rng, rng.choice(NEUTRAL)))
    return " and ".join(clauses)


def _polarity_review(rng: random.Random, label: str) -> str:
    lexicon = POSITIVE if label == "positive" else NEGATIVE
    opener = f"i thought the {rng.choice(NOUNS)} {rng.choice(LINKS)} {rng.choice(lexicon)}"
    return opener + " and " + _clause(rng, rng.choice(lexicon))


@lru_cache(maxsize=None)
def english_examples(task: str, split: str) -> tuple[tuple[str, int], ...]:
    """(sentence, label index) pairs of one split, the same on every call and machine."""
    labels = SENTIMENT_LABELS if task == "sentiment" else POLARITY_LABELS
    make = _sentiment_sentence if task == "sentiment" else _polarity_review
    rng = random.Random(f"xitt-demo:{task}:{split}")
    examples = []
    for index in range(SPLIT_SIZES[(task, split)]):
        label = index % len(labels)
        text = make(rng, labels[label])
        if rng.random() < LABEL_NOISE:
            label = rng.randrange(len(labels))
        examples.append((text, label))
    rng.shuffle(examples)
    return tuple(examples)


def demo_rows(task: str, lang: str, split: str) -> dict[str, list]:
    """Columns (id, text, label) of one split in one language; ids are shared by the
    translations of the same sentence, so test sets are parallel across languages."""
    if lang not in LANGUAGES:
        raise ValueError(f"the demo corpus has no language {lang!r}; it has {', '.join(LANGUAGES)}")
    if (task, split) not in SPLIT_SIZES:
        raise ValueError(f"the demo corpus has no split {split!r} for {task!r}")
    pairs = english_examples(task, split)
    return {
        "id": [f"{task}-{split}-{i}" for i in range(len(pairs))],
        "text": [translate(lang, text) for text, _ in pairs],
        "label": [label for _, label in pairs],
    }


def tokenizer_corpus() -> list[str]:
    """Unlabelled text in every demo language, for training the tiny models' tokenizer."""
    english = [text for split in ("train", "validation", "test")
               for text, _ in english_examples("sentiment", split)]
    english += [text for text, _ in english_examples("polarity", "train")[:1000]]
    return [translate(lang, text) for lang in LANGUAGES for text in english]
