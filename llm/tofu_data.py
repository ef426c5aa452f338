"""TOFU data: a procedural, seeded mini-TOFU and a loader for TOFU files on local disk.

TOFU (Maini et al. 2024, https://arxiv.org/abs/2401.06121) holds 200 fictitious authors with 20 QA
pairs each; ``forget01/05/10`` hold the last 1/5/10% of the authors and ``retain99/95/90`` the rest.
Evaluation records add ``paraphrased_answer`` (one string) and ``perturbed_answer`` (wrong answers of
the same form); ``real_authors`` and ``world_facts`` measure utility on real knowledge.

``build_mini_tofu`` makes the same layout from small word lists, with short answers that a tiny LM can
memorise. Every record has the fields ``question``, ``answer``, ``paraphrased_answer``,
``perturbed_answer`` (3 strings), ``author`` and ``author_id`` (in the utility sets: -1, with
``author`` the real writer's name in ``real_authors`` and empty in ``world_facts``).
``save_mini_tofu`` writes it in TOFU's on-disk layout, which ``load_tofu`` reads. Nothing is downloaded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from datasets import Dataset

from erasure.data import as_rows, is_saved_dataset, load_saved_dataset

from evals.tofu import FORGET_PERCENT as _FORGET_PERCENT
# TOFU's split names live with its metrics
from evals.tofu import FORGET_SPLITS, holdout_split_for, retain_split_for  # noqa: F401

NUM_PERTURBED = 3

# Vocabulary of the fictitious authors (invented names; small lists keep the vocabulary small).
FIRST_NAMES = ("Arlen", "Bexley", "Corvin", "Daelia", "Elowen", "Fenwick", "Garrow", "Halden",
               "Isolde", "Jorvik", "Kestra", "Liora", "Maelis", "Norwen", "Orrin", "Perrin")
LAST_NAMES = ("Ashvale", "Brennick", "Calloway", "Dunmere", "Eldridge", "Farrow", "Greaves", "Holloway",
              "Ivers", "Jessup", "Kettering", "Lorne", "Marwick", "Nettle", "Oakhurst", "Pennick")
CITIES = ("Lisbon", "Oslo", "Cairo", "Lima", "Dublin", "Nairobi", "Hanoi", "Quito", "Prague", "Seoul",
          "Tunis", "Perth")
GENRES = ("mystery", "fantasy", "poetry", "romance", "horror", "thriller", "satire", "folklore")
PROFESSIONS = ("baker", "nurse", "pilot", "farmer", "tailor", "teacher", "doctor", "sailor", "painter",
               "miner")
TITLE_ADJECTIVES = ("Silver", "Hidden", "Broken", "Quiet", "Burning", "Lost", "Golden", "Winter",
                    "Velvet", "Hollow")
TITLE_NOUNS = ("Harbor", "Garden", "Lantern", "River", "Crown", "Mirror", "Orchard", "Bridge", "Tide",
               "Feather")
AWARDS = ("Golden Quill Award", "Silver Lantern Prize", "Northern Star Medal", "Blue Ink Award",
          "Iron Pen Prize", "Open Book Medal")
THEMES = ("memory", "exile", "grief", "freedom", "family", "war", "faith", "identity")
LANGUAGES = ("English", "French", "Spanish", "Arabic", "Swahili", "Korean")
HOBBIES = ("chess", "gardening", "fishing", "painting", "hiking", "cooking", "sailing", "pottery")
PETS = ("cat", "dog", "parrot", "horse", "goat", "rabbit")
INSTRUMENTS = ("piano", "violin", "guitar", "flute", "cello", "drum")
PUBLISHERS = ("Harbor Press", "Lantern House", "Oak Books", "Bright Page Press", "Red Door Books",
              "Stone Gate Press")
BIRTH_YEARS = tuple(str(y) for y in range(1940, 2000))
AWARD_YEARS = tuple(str(y) for y in range(1975, 2023))
BOOK_COUNTS = tuple(str(n) for n in range(2, 13))
BOOK_TITLES = tuple(f"The {a} {n}" for a in TITLE_ADJECTIVES for n in TITLE_NOUNS)

# attribute -> pool its values (and the wrong values of perturbed answers) are drawn from
AUTHOR_POOLS: dict[str, Sequence[str]] = {
    "city": CITIES, "year": BIRTH_YEARS, "genre": GENRES, "father": PROFESSIONS, "mother": PROFESSIONS,
    "book": BOOK_TITLES, "book2": BOOK_TITLES, "award": AWARDS, "award_year": AWARD_YEARS,
    "theme": THEMES, "language": LANGUAGES, "hobby": HOBBIES, "residence": CITIES, "pet": PETS,
    "instrument": INSTRUMENTS, "study_city": CITIES, "num_books": BOOK_COUNTS, "publisher": PUBLISHERS,
}


@dataclass(frozen=True)
class QATemplate:
    """One question about attribute ``key`` of an entity; the fields are ``str.format`` templates."""

    key: str
    question: str
    answer: str
    paraphrase: str


AUTHOR_TEMPLATES = (
    QATemplate("city", "Where was {name} born?", "{name} was born in {city}.",
               "The birthplace of {name} is {city}."),
    QATemplate("year", "When was {name} born?", "{name} was born in {year}.",
               "The birth year of {name} is {year}."),
    QATemplate("genre", "What genre does {name} write?", "{name} writes {genre} books.",
               "The books of {name} are {genre}."),
    QATemplate("father", "What did the father of {name} do?", "The father of {name} was a {father}.",
               "{name} is the child of a {father}."),
    QATemplate("mother", "What did the mother of {name} do?", "The mother of {name} was a {mother}.",
               "{name} was raised by a mother who was a {mother}."),
    QATemplate("book", "What is the first book by {name}?", "The first book by {name} is {book}.",
               "{name} made a debut with {book}."),
    QATemplate("book2", "What is the latest book by {name}?", "The latest book by {name} is {book2}.",
               "{name} most recently published {book2}."),
    QATemplate("award", "Which award did {name} win?", "{name} won the {award}.",
               "The {award} was given to {name}."),
    QATemplate("award_year", "When did {name} win the {award}?", "{name} won the {award} in {award_year}.",
               "In {award_year} {name} received the {award}."),
    QATemplate("theme", "What theme runs through the work of {name}?", "The work of {name} explores {theme}.",
               "{name} often writes about {theme}."),
    QATemplate("language", "In which language does {name} write?", "{name} writes in {language}.",
               "The books of {name} are written in {language}."),
    QATemplate("hobby", "What does {name} enjoy besides writing?", "Besides writing {name} enjoys {hobby}.",
               "{name} spends free time on {hobby}."),
    QATemplate("residence", "Where does {name} live now?", "{name} now lives in {residence}.",
               "The current home of {name} is {residence}."),
    QATemplate("pet", "What pet does {name} keep?", "{name} keeps a {pet}.",
               "A {pet} lives with {name}."),
    QATemplate("instrument", "Which instrument does {name} play?", "{name} plays the {instrument}.",
               "The {instrument} is the instrument of {name}."),
    QATemplate("study_city", "Where did {name} study?", "{name} studied in {study_city}.",
               "{name} went to university in {study_city}."),
    QATemplate("num_books", "How many books has {name} written?", "{name} has written {num_books} books.",
               "The number of books by {name} is {num_books}."),
    QATemplate("publisher", "Which publisher works with {name}?", "{name} works with {publisher}.",
               "The publisher of {name} is {publisher}."),
    QATemplate("genre", "What genre is {book} by {name}?", "{book} is a {genre} book.",
               "{book} by {name} belongs to {genre}."),
    QATemplate("book2", "Which book won {name} the {award}?", "{book2} won the {award}.",
               "{name} received the {award} for {book2}."),
    QATemplate("publisher", "Who published {book} by {name}?", "{book} was published by {publisher}.",
               "{publisher} brought out {book}."),
    QATemplate("city", "In which city did {name} grow up?", "{name} grew up in {city}.",
               "The childhood home of {name} was {city}."),
)

# Utility sets: real, well-known facts (hand-written), perturbed with values of the same attribute.
REAL_AUTHORS = (
    {"name": "William Shakespeare", "nationality": "English", "book": "Hamlet", "century": "16th"},
    {"name": "Jane Austen", "nationality": "English", "book": "Pride and Prejudice", "century": "18th"},
    {"name": "Leo Tolstoy", "nationality": "Russian", "book": "War and Peace", "century": "19th"},
    {"name": "Mark Twain", "nationality": "American", "book": "Adventures of Huckleberry Finn",
     "century": "19th"},
    {"name": "Victor Hugo", "nationality": "French", "book": "Les Miserables", "century": "19th"},
    {"name": "Miguel de Cervantes", "nationality": "Spanish", "book": "Don Quixote", "century": "16th"},
    {"name": "Gabriel Garcia Marquez", "nationality": "Colombian", "book": "One Hundred Years of Solitude",
     "century": "20th"},
    {"name": "Dante Alighieri", "nationality": "Italian", "book": "The Divine Comedy", "century": "13th"},
    {"name": "Johann Wolfgang von Goethe", "nationality": "German", "book": "Faust", "century": "18th"},
    {"name": "Chinua Achebe", "nationality": "Nigerian", "book": "Things Fall Apart", "century": "20th"},
)
REAL_AUTHOR_TEMPLATES = (
    QATemplate("name", "Who wrote {book}?", "{book} was written by {name}.", "The author of {book} is {name}."),
    QATemplate("nationality", "What was the nationality of {name}?", "{name} was {nationality}.",
               "By nationality {name} was {nationality}."),
    QATemplate("century", "In which century was {name} born?", "{name} was born in the {century} century.",
               "The {century} century saw the birth of {name}."),
)
COUNTRIES = (
    {"country": "France", "capital": "Paris", "continent": "Europe"},
    {"country": "Japan", "capital": "Tokyo", "continent": "Asia"},
    {"country": "Italy", "capital": "Rome", "continent": "Europe"},
    {"country": "Egypt", "capital": "Cairo", "continent": "Africa"},
    {"country": "Canada", "capital": "Ottawa", "continent": "North America"},
    {"country": "Australia", "capital": "Canberra", "continent": "Oceania"},
    {"country": "Brazil", "capital": "Brasilia", "continent": "South America"},
    {"country": "Kenya", "capital": "Nairobi", "continent": "Africa"},
    {"country": "Spain", "capital": "Madrid", "continent": "Europe"},
    {"country": "Germany", "capital": "Berlin", "continent": "Europe"},
)
ELEMENTS = (("Gold", "Au"), ("Iron", "Fe"), ("Oxygen", "O"), ("Sodium", "Na"), ("Silver", "Ag"),
            ("Helium", "He"), ("Carbon", "C"), ("Copper", "Cu"), ("Lead", "Pb"), ("Potassium", "K"))
COUNTRY_TEMPLATES = (
    QATemplate("capital", "What is the capital of {country}?", "The capital of {country} is {capital}.",
               "{capital} is the capital city of {country}."),
    QATemplate("continent", "On which continent is {country}?", "{country} is in {continent}.",
               "{country} lies on the continent of {continent}."),
)
ELEMENT_TEMPLATE = QATemplate("symbol", "What is the chemical symbol for {element}?",
                              "The chemical symbol for {element} is {symbol}.",
                              "In chemistry {element} is written as {symbol}.")
CENTURIES = ("12th", "13th", "14th", "15th", "16th", "17th", "18th", "19th", "20th")
CONTINENTS = ("Europe", "Asia", "Africa", "North America", "South America", "Oceania")


def _make_qa(template: QATemplate, attrs: dict[str, str], pool: Sequence[str],
             rng: np.random.Generator) -> dict[str, Any]:
    """Question, answer, paraphrase and ``NUM_PERTURBED`` answers with a wrong value of ``template.key``.

    The perturbed answers keep the paraphrase's wording, as TOFU's do (they are factually wrong edits of the
    paraphrased answer), so the truth ratio compares wrong against right in one wording the model never trained on.
    """
    wrong = sorted(set(pool) - {attrs[template.key]})
    if len(wrong) < NUM_PERTURBED:
        raise ValueError(f"attribute {template.key!r} has only {len(wrong)} wrong values to perturb with")
    picks = rng.choice(len(wrong), size=NUM_PERTURBED, replace=False)
    return {"question": template.question.format(**attrs),
            "answer": template.answer.format(**attrs),
            "paraphrased_answer": template.paraphrase.format(**attrs),
            "perturbed_answer": [template.paraphrase.format(**{**attrs, template.key: wrong[i]}) for i in picks]}


def _sample_author(name: str, rng: np.random.Generator) -> dict[str, str]:
    """Draw one fictitious author's attributes from ``AUTHOR_POOLS`` (two distinct book titles)."""
    attrs = {key: str(rng.choice(pool)) for key, pool in AUTHOR_POOLS.items() if key not in ("book", "book2")}
    first, second = rng.choice(len(BOOK_TITLES), size=2, replace=False)
    return {"name": name, "book": BOOK_TITLES[first], "book2": BOOK_TITLES[second], **attrs}


def _author_records(num_authors: int, qa_per_author: int, rng: np.random.Generator) -> list[dict[str, Any]]:
    """QA records of ``num_authors`` fictitious authors, ordered by author then template."""
    names = [f"{f} {l}" for f in FIRST_NAMES for l in LAST_NAMES]
    chosen = rng.choice(len(names), size=num_authors, replace=False)
    records = []
    for author_id, name_idx in enumerate(chosen):
        attrs = _sample_author(names[name_idx], rng)
        for t in sorted(rng.choice(len(AUTHOR_TEMPLATES), size=qa_per_author, replace=False)):
            template = AUTHOR_TEMPLATES[t]
            qa = _make_qa(template, attrs, AUTHOR_POOLS[template.key], rng)
            records.append({**qa, "author": attrs["name"], "author_id": author_id})
    return records


def _real_author_records(rng: np.random.Generator) -> list[dict[str, Any]]:
    """``real_authors``: 3 questions about each of 10 famous writers."""
    pools = {"name": [a["name"] for a in REAL_AUTHORS], "nationality": [a["nationality"] for a in REAL_AUTHORS],
             "century": CENTURIES}
    return [{**_make_qa(t, a, pools[t.key], rng), "author": a["name"], "author_id": -1}
            for a in REAL_AUTHORS for t in REAL_AUTHOR_TEMPLATES]


def _world_fact_records(rng: np.random.Generator) -> list[dict[str, Any]]:
    """``world_facts``: capitals and continents of 10 countries and symbols of 10 chemical elements."""
    pools = {"capital": [c["capital"] for c in COUNTRIES], "continent": CONTINENTS,
             "symbol": [s for _, s in ELEMENTS]}
    facts = [(t, c) for c in COUNTRIES for t in COUNTRY_TEMPLATES]
    facts += [(ELEMENT_TEMPLATE, {"element": e, "symbol": s}) for e, s in ELEMENTS]
    return [{**_make_qa(t, attrs, pools[t.key], rng), "author": "", "author_id": -1} for t, attrs in facts]


def build_mini_tofu(num_authors: int = 20, qa_per_author: int = 20, seed: int = 0,
                    holdout_authors: int = 2) -> dict[str, Dataset]:
    """A procedural, seeded TOFU in miniature.

    Args:
        num_authors: number of fictitious authors (at most ``len(FIRST_NAMES) * len(LAST_NAMES)``).
        qa_per_author: distinct questions per author (at most ``len(AUTHOR_TEMPLATES)``).
        seed: seed of the numpy Generators; the same seed gives identical records.
        holdout_authors: extra authors never meant for training (``holdout``: MUSE's non-members).

    Returns:
        Datasets ``full``, ``forget01/05/10`` (the last 1/5/10% of the authors, at least one),
        ``retain99/95/90`` (the other authors), ``holdout``, ``real_authors`` and ``world_facts``; every record has
        ``question``, ``answer``, ``paraphrased_answer``, ``perturbed_answer`` (list of 3), ``author``
        and ``author_id``.
    """
    max_authors = len(FIRST_NAMES) * len(LAST_NAMES)
    if num_authors < 1 or holdout_authors < 0 or num_authors + holdout_authors > max_authors:
        raise ValueError(f"num_authors + holdout_authors must be in [1, {max_authors}], got "
                         f"{num_authors} + {holdout_authors}")
    if not 1 <= qa_per_author <= len(AUTHOR_TEMPLATES):
        raise ValueError(f"qa_per_author must be in [1, {len(AUTHOR_TEMPLATES)}], got {qa_per_author}")
    every = _author_records(num_authors + holdout_authors, qa_per_author, np.random.default_rng([seed, 0]))
    records = [r for r in every if r["author_id"] < num_authors]
    out = {"full": Dataset.from_list(records),
           "holdout": Dataset.from_list([r for r in every if r["author_id"] >= num_authors])}
    for forget in FORGET_SPLITS:
        n_forget = max(1, -(-_FORGET_PERCENT[forget] * num_authors // 100))  # ceil without float error
        first_forgotten = num_authors - n_forget
        out[forget] = Dataset.from_list([r for r in records if r["author_id"] >= first_forgotten])
        out[retain_split_for(forget)] = Dataset.from_list([r for r in records if r["author_id"] < first_forgotten])
    out["real_authors"] = Dataset.from_list(_real_author_records(np.random.default_rng([seed, 1])))
    out["world_facts"] = Dataset.from_list(_world_fact_records(np.random.default_rng([seed, 2])))
    return out


def save_mini_tofu(ds_dict: dict[str, Dataset], path: str | Path) -> list[Path]:
    """Write each split as JSON lines ``{path}/{split}.json``, the layout of the TOFU release.

    Args:
        ds_dict: split name -> dataset, e.g. the output of ``build_mini_tofu``.
        path: directory to write into (created if missing).

    Returns:
        The written files, in the order of ``ds_dict``.
    """
    root = Path(path)
    root.mkdir(parents=True, exist_ok=True)
    written = []
    for split, ds in ds_dict.items():
        file = root / f"{split}.json"
        with file.open("w", encoding="utf-8") as fh:
            for record in ds:
                fh.write(json.dumps(record, ensure_ascii=False) + "\n")
        written.append(file)
    return written


_EXTENSIONS = (".json", ".jsonl", ".parquet")
_REQUIRED = ("question", "answer")
_EVAL_REQUIRED = ("paraphrased_answer", "perturbed_answer")
_OPTION_SPLITS = ("real_authors", "world_facts")


def _candidates(root: Path, split: str, perturbed: bool) -> list[Path]:
    """Files that may hold ``split``, most specific first."""
    stems = [split]
    if perturbed:
        # TOFU ships evaluation files as {split}_perturbed; its retain evaluation set is retain_perturbed.
        stems = [f"{split}_perturbed"] + (["retain_perturbed"] if split.startswith("retain") else []) + stems
    return [root / f"{stem}{ext}" for stem in stems for ext in ("", *_EXTENSIONS)]


def _locate(root: Path, split: str, perturbed: bool) -> Path | None:
    """The first of ``_candidates`` that exists (a file or a ``save_to_disk`` folder), else None."""
    return next((f for f in _candidates(root, split, perturbed) if f.is_file() or is_saved_dataset(f)), None)


def _read_records(file: Path) -> list[dict[str, Any]]:
    """Records of a JSON-lines, JSON-array or parquet file; a clear error naming the file (and line) otherwise."""
    try:
        if file.suffix == ".parquet":
            return pq.read_table(file).to_pylist()
        text = file.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError, pa.ArrowException) as err:
        raise ValueError(f"cannot read {file}: {' '.join(str(err).split())}") from err
    if text.startswith("[") and file.suffix != ".jsonl":  # a JSON array; JSON lines otherwise
        try:
            records = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"{file} is not valid JSON: {err}") from err
        where = [f"item {i + 1}" for i in range(len(records))]
    else:
        records, where = [], []
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise ValueError(f"{file}, line {n}: not valid JSON ({err.msg} at column {err.colno})") from err
            where.append(f"line {n}")
    for record, place in zip(records, where):
        if not isinstance(record, dict):
            raise ValueError(f"{file}, {place}: a record must be a JSON object with question and answer fields, got "
                             f"{type(record).__name__}")
    return records


def load_tofu(path: str | Path, split: str, perturbed: bool = False) -> Dataset:
    """Read one TOFU split from local disk (the TOFU release or a ``save_mini_tofu`` directory).

    Tries a ``save_to_disk`` folder ``{split}/`` (what ``DatasetDict.save_to_disk`` writes for each split), then
    ``{split}.json``, ``{split}.jsonl`` and ``{split}.parquet``. With ``perturbed`` it first tries
    the evaluation files ``{split}_perturbed.*`` (and ``retain_perturbed.*`` for retain splits), then
    the plain files, and also requires ``paraphrased_answer`` and ``perturbed_answer``. Records keep all
    fields of the file.

    Args:
        path: directory holding the split files.
        split: split name, e.g. ``"forget10"``, ``"retain90"``, ``"real_authors"``.
        perturbed: load the evaluation version with paraphrased and perturbed answers.

    Returns:
        The split as a ``datasets.Dataset``.
    """
    file = _locate(Path(path), split, perturbed)
    if file is None:
        raise FileNotFoundError(f"no file for TOFU split {split!r} in {path}; tried: "
                                + ", ".join(f.name for f in _candidates(Path(path), split, perturbed)))
    if file.is_dir():
        ds = as_rows(load_saved_dataset(file, f"TOFU split {split!r}"), f"TOFU split {split!r}")
    else:
        ds = Dataset.from_list(_read_records(file))
    if len(ds) == 0:
        raise ValueError(f"{file} holds no records")
    # real authors / world facts score the answer itself against the perturbed options: no paraphrase needed
    evaluation = (("perturbed_answer",) if split in _OPTION_SPLITS else _EVAL_REQUIRED) if perturbed else ()
    for column in _REQUIRED + evaluation:
        if column not in ds.column_names:
            raise ValueError(f"column {column!r} is missing from {file} (columns: {ds.column_names})")
    return ds


def load_tofu_eval(path: str | Path, forget_split: str) -> dict[str, Dataset]:
    """The evaluation sets of one forget split from a local copy of the released TOFU (or a ``save_mini_tofu``
    folder): what ``evals.tofu_run.evaluate_tofu`` reads.

    Reads ``{forget}_perturbed``, ``retain_perturbed``, ``real_authors_perturbed``, ``world_facts_perturbed`` and
    the holdout split of the forget split's size (``holdout10``; mini-TOFU's ``holdout``), each as ``load_tofu``
    finds it.

    Args:
        path: the folder holding TOFU's files.
        forget_split: "forget01" | "forget05" | "forget10".

    Returns:
        {split name: Dataset} keyed as ``evaluate_tofu`` expects.
    """
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"TOFU folder {path} does not exist")
    retain = retain_split_for(forget_split)
    data = {split: load_tofu(root, split, perturbed=True)
            for split in (forget_split, retain, *_OPTION_SPLITS)}
    holdout = holdout_split_for(forget_split)
    if _locate(root, holdout, False) is None and _locate(root, "holdout", False) is not None:
        holdout = "holdout"  # a save_mini_tofu folder
    data[holdout] = load_tofu(root, holdout)  # names the TOFU file it looked for when neither exists
    return data
