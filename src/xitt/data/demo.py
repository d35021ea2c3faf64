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

Two more corpora, in the same languages, give the F1 task types a demo each:

- `ner`: sentences from templates with person, organisation and location names (one or
  two words each), tagged in IOB2; translated word by word, so the tags stay in place;
- `qa`: a context of three facts about people (where they live, whom they work for,
  what they like, when they travel) and a question about one of them, whose answer is a
  span of the context (SQuAD's shape: `answers = {text, answer_start}`).

The tokenizer of the tiny models is trained on the sentiment corpus only (its artifact key
does not say which corpus), so the words of these two are split into more sub-words.
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
    """Columns of one split in one language: (id, text, label) for the sentiment and
    polarity corpora, (id, text, group, side) for `parallel` (the sentiment sentences, for retrieval), (id, tokens, tags) for `ner`, (id, question, context, answers) for
    `qa`. Ids are shared by the translations of the same example, so test sets are
    parallel across languages."""
    if lang not in LANGUAGES:
        raise ValueError(f"the demo corpus has no language {lang!r}; it has {', '.join(LANGUAGES)}")
    if task in ("ner", "qa"):
        sizes = NER_SIZES if task == "ner" else QA_SIZES
        if split not in sizes:
            raise ValueError(f"the demo corpus has no split {split!r} for {task!r}")
        return _ner_rows(lang, split) if task == "ner" else _qa_rows(lang, split)
    if task == "parallel":  # the sentiment sentences as a parallel corpus: (id, text, group, side)
        rows = demo_rows("sentiment", lang, split)
        return {"id": rows["id"], "text": rows["text"], "group": rows["id"], "side": ["own"] * len(rows["id"])}
    if (task, split) not in SPLIT_SIZES:
        raise ValueError(f"the demo corpus has no split {split!r} for {task!r}")
    pairs = english_examples(task, split)
    return {
        "id": [f"{task}-{split}-{i}" for i in range(len(pairs))],
        "text": [translate(lang, text) for text, _ in pairs],
        "label": [label for _, label in pairs],
    }


# -- the NER and QA corpora -----------------------------------------------------------------

FIRST_NAMES = ("anna boris clara david elena felix greta hugo irene jonas karin leon maria nils olga "
               "paul rosa sven tina viktor").split()
SURNAMES = "smith berg costa dahl evans fischer garcia hansen jensen lopez moreau novak olsen petrov".split()
CITIES = "paris berlin madrid lisbon vienna prague oslo dublin rome athens warsaw riga sofia bern".split()
COMPANIES = "acme globex initech umbrella hooli vandelay stark wayne wonka cyberdyne".split()
COMPANY_KINDS = "corp bank group labs motors airlines".split()
ENTITY_TAGS = ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC")
# Sentence templates: `PER`, `ORG`, `LOC` are entity slots, every other word is tagged O.
NER_TEMPLATES = [t.split() for t in (
    "PER works for ORG in LOC",
    "PER visited LOC last week",
    "the staff of ORG met PER in LOC",
    "ORG opened a new shop in LOC",
    "yesterday PER and PER flew to LOC",
    "PER said that ORG was very good",
    "i thought the film was great and PER liked it",
    "the hotel in LOC was small but ORG paid for it",
    "our train to LOC was late",
    "PER joined ORG after a long year",
)]
WEEKDAYS = "monday tuesday wednesday thursday friday saturday sunday".split()
# QA facts: (context words with an ANSWER slot, question words); `who` is the person.
QA_RELATIONS = {
    "lives": ("{who} lives in ANSWER", "where does {who} live ?", "city"),
    "works": ("{who} works for ANSWER", "who does {who} work for ?", "company"),
    "likes": ("{who} likes the ANSWER", "what does {who} like ?", "thing"),
    "travels": ("{who} travels on ANSWER", "when does {who} travel ?", "day"),
}
NER_SIZES = {"train": 400, "validation": 200, "test": 200}
QA_SIZES = {"train": 800, "validation": 200, "test": 200}


def _entity(rng: random.Random, kind: str) -> list[str]:
    """The words of one entity name (one or two)."""
    if kind == "PER":
        return [rng.choice(FIRST_NAMES)] + ([rng.choice(SURNAMES)] if rng.random() < 0.5 else [])
    if kind == "ORG":
        return [rng.choice(COMPANIES)] + ([rng.choice(COMPANY_KINDS)] if rng.random() < 0.6 else [])
    return (["port"] if rng.random() < 0.2 else []) + [rng.choice(CITIES)]


@lru_cache(maxsize=None)
def english_ner(split: str) -> tuple[tuple[tuple[str, ...], tuple[str, ...]], ...]:
    """(words, IOB2 tags) of one split's sentences, the same on every call and machine."""
    rng = random.Random(f"xitt-demo:ner:{split}")
    sentences = []
    for _ in range(NER_SIZES[split]):
        words, tags = [], []
        for slot in rng.choice(NER_TEMPLATES):
            if slot in ("PER", "ORG", "LOC"):
                name = _entity(rng, slot)
                words += name
                tags += [f"B-{slot}"] + [f"I-{slot}"] * (len(name) - 1)
            else:
                words.append(slot)
                tags.append("O")
        sentences.append((tuple(words), tuple(tags)))
    return tuple(sentences)


def _answer_words(rng: random.Random, kind: str) -> list[str]:
    if kind == "city":
        return _entity(rng, "LOC")
    if kind == "company":
        return _entity(rng, "ORG")
    if kind == "thing":
        return [rng.choice(POSITIVE + NEUTRAL), rng.choice(NOUNS)]
    return [rng.choice(WEEKDAYS)]


@lru_cache(maxsize=None)
def english_qa(split: str) -> tuple[tuple[tuple[str, ...], tuple[str, ...], int, int], ...]:
    """(context words, question words, answer's first word, answer's word count) of one
    split's questions: three facts about three people, one asked about."""
    rng = random.Random(f"xitt-demo:qa:{split}")
    questions = []
    for _ in range(QA_SIZES[split]):
        people = rng.sample(FIRST_NAMES, 3)
        relations = rng.sample(sorted(QA_RELATIONS), 3)
        asked = rng.randrange(3)
        context: list[str] = []
        for index, (who, relation) in enumerate(zip(people, relations)):
            fact, question, kind = QA_RELATIONS[relation]
            if context:
                context.append("and")
            for word in fact.format(who=who).split():
                if word == "ANSWER":
                    answer = _answer_words(rng, kind)
                    if index == asked:
                        start, length, asked_question = len(context), len(answer), question.format(who=who)
                    context += answer
                else:
                    context.append(word)
        questions.append((tuple(context), tuple(asked_question.split()), start, length))
    return tuple(questions)


def _ner_rows(lang: str, split: str) -> dict[str, list]:
    sentences = english_ner(split)
    return {"id": [f"ner-{split}-{i}" for i in range(len(sentences))],
            "tokens": [[translate_word(lang, word) for word in words] for words, _ in sentences],
            "tags": [list(tags) for _, tags in sentences]}


def _qa_rows(lang: str, split: str) -> dict[str, list]:
    rows: dict[str, list] = {"id": [], "question": [], "context": [], "answers": []}
    for number, (context, question, start, length) in enumerate(english_qa(split)):
        words = [translate_word(lang, word) for word in context]
        answer_start = len(" ".join(words[:start])) + (1 if start else 0)
        rows["id"].append(f"qa-{split}-{number}")
        rows["question"].append(translate(lang, " ".join(question)))
        rows["context"].append(" ".join(words))
        rows["answers"].append({"text": [" ".join(words[start:start + length])], "answer_start": [answer_start]})
    return rows


def tokenizer_corpus() -> list[str]:
    """Unlabelled text in every demo language, for training the tiny models' tokenizer."""
    english = [text for split in ("train", "validation", "test")
               for text, _ in english_examples("sentiment", split)]
    english += [text for text, _ in english_examples("polarity", "train")[:1000]]
    return [translate(lang, text) for lang in LANGUAGES for text in english]
