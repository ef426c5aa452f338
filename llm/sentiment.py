"""mini-sentiment: SPUL's text-classification setting (Bhaila et al. 2024, https://arxiv.org/abs/2406.12038) as a
benchmark: a causal LM fine-tuned to label reviews positive or negative forgets a random subset of its training
reviews (forget accuracy towards chance) while its test and retain accuracy stay.

    python -m llm.sentiment build --out reviews.json         # the generated review set (seeded; what ships)
    python -m llm.sentiment train --model smollm2-135m        # the classifier's LoRA adapter (what ships)
    python -m llm.sentiment merge --model smollm2-135m        # base + adapter -> smollm2-135m-sentiment (make real-lm)
    erasure erase --model smollm2-135m-sentiment --benchmark mini-sentiment --method spul --out out/spul
    erasure eval --model out/spul --benchmark mini-sentiment

Data: the shipped generated set (``build_reviews``: reviews of invented places and products, each with its own
name, occasion and two judged aspects, balanced labels, no real text), or local SST-2-style files (``--data DIR``
with ``train`` and ``test`` (or ``dev``) as .tsv with a ``sentence<TAB>label`` header, or .json / .jsonl rows with
``sentence`` or ``text`` and ``label``). Each review is a QA row whose answer is its label word and whose
``choices`` are both label words; accuracy picks the choice the model gives the lower NLL, and answer accuracy (the
official SPUL code's) counts the greedy answers whose first word is the label, so an answer outside both labels
("neutral") counts as wrong there and not in the choice. The forget set is a seeded random ``forget_ratio`` of the
training reviews.
"""

from __future__ import annotations

import csv
import json
import logging
import random
import time
from pathlib import Path
from typing import Any, Sequence

from erasure.files import report_json
from erasure.modality import AuditPlan, Option

logger = logging.getLogger(__name__)

LABELS = ("negative", "positive")
QUESTION = "Review: {text}\nIs this review positive or negative?"
DEFAULT_DATA = ("llm", "mini-sentiment/reviews.json")  # (package, file under its weights/)
CLASSIFIER = "smollm2-135m-sentiment"

_KINDS = {  # what is reviewed -> the aspects a review of it talks about
    "bistro": ("food", "service", "wine list"), "hotel": ("room", "front desk", "breakfast"),
    "bakery": ("bread", "pastries", "staff"), "blender": ("motor", "lid", "jug"),
    "headphones": ("sound", "battery", "fit"), "novel": ("plot", "ending", "characters"),
    "ferry line": ("crossing", "crew", "cabins"), "gym": ("equipment", "trainers", "changing rooms"),
    "laptop": ("screen", "keyboard", "battery"), "campsite": ("pitches", "showers", "view"),
    "barber": ("haircut", "prices", "chat"), "tent": ("zips", "poles", "fabric"),
    "podcast": ("host", "guests", "sound quality"), "cinema": ("seats", "screen", "popcorn"),
    "kettle": ("handle", "switch", "spout"), "museum": ("exhibits", "guides", "cafe"),
    "vacuum cleaner": ("suction", "hose", "filter"), "board game": ("rules", "pieces", "artwork"),
    "dentist": ("dentist", "reception", "waiting room"), "bike shop": ("mechanic", "repair", "prices"),
}
_ONE = ["Bel", "Cor", "Dun", "Fen", "Gar", "Hal", "Kes", "Lom", "Mar", "Nor", "Pel", "Quin", "Ros", "Sal", "Tam",
        "Vel", "Wyn", "Zar", "Brin", "Cal", "Dra", "Ely", "Fal", "Gil"]
_TWO = ["ado", "ara", "ton", "wick", "more", "ley", "ridge", "vane", "holm", "ford", "ish", "ette", "bury", "mont",
        "sea", "dell"]
_WHEN = ["in March", "last winter", "on my birthday", "over a long weekend", "after work on a Friday",
         "during the school holidays", "in the autumn", "two weeks ago", "on a rainy Sunday", "at Easter"]
_GOOD = ["{a} {v} superb", "{a} {v} better than I expected", "{a} {v} a real highlight", "{a} {v} excellent",
         "{a} impressed all of us", "{a} {v} first rate", "{a} {v} a delight", "{a} won me over"]
_BAD = ["{a} {v} dreadful", "{a} {v} far worse than I expected", "{a} {v} a real low point", "{a} {v} awful",
        "{a} annoyed all of us", "{a} {v} second rate", "{a} {v} a disappointment", "{a} put me off"]
_ENDS = {(1, "place"): ["I would happily go back.", "We will be back."], (0, "place"): ["I will not be going back.",
                                                                                        "Never again."],
         (1, "thing"): ["I would buy it again.", "I have already told my friends."],
         (0, "thing"): ["I want my money back.", "I have already asked for a refund."]}
_ENDS_ANY = {1: ["Highly recommended.", "Five stars from me.", "Worth every penny."],
             0: ["Avoid it.", "One star from me.", "A waste of money."]}
_PLACES = {"bistro", "hotel", "bakery", "ferry line", "gym", "campsite", "barber", "cinema", "museum", "dentist",
           "bike shop"}
_OPENERS = {"place": ["We went to the {n} {k} {when}.", "I visited the {n} {k} {when}.",
                      "A friend recommended the {n} {k}, so I went {when}."],
            "thing": ["I bought the {n} {k} {when}.", "I tried the {n} {k} {when}.",
                      "A friend recommended the {n} {k}, so I got one {when}."]}


def _be(aspect: str) -> str:
    return "were" if aspect.endswith("s") else "was"


def build_reviews(n_train: int = 200, n_test: int = 100, seed: int = 0) -> dict:
    """A generated review set: {"train": [...], "test": [...]} of {"sentence", "label"} (0 negative, 1 positive),
    balanced. Every review names its own invented place or product (no name repeats), with its own occasion and
    two judged aspects, so a review can be told apart from the others by more than its wording, as real reviews
    can."""
    rng = random.Random(seed)
    names = [a + b for a in _ONE for b in _TWO]
    if n_train + n_test > len(names):
        raise ValueError(f"build_reviews makes at most {len(names)} reviews, asked for {n_train + n_test}")
    rng.shuffle(names)
    out: dict[str, list[dict]] = {"train": [], "test": []}
    for split, n in (("train", n_train), ("test", n_test)):
        for i in range(n):
            label = i % 2
            kind = rng.choice(sorted(_KINDS))
            a1, a2 = rng.sample(_KINDS[kind], 2)
            j1, j2 = rng.sample(_GOOD if label else _BAD, 2)
            where = "place" if kind in _PLACES else "thing"
            opener = rng.choice(_OPENERS[where]).format(n=names.pop(), k=kind, when=rng.choice(_WHEN))
            body = f"{j1.format(a='The ' + a1, v=_be(a1))} and {j2.format(a='the ' + a2, v=_be(a2))}."
            end = rng.choice(_ENDS[label, where] + _ENDS_ANY[label])
            out[split].append({"sentence": f"{opener} {body} {end}", "label": label})
        rng.shuffle(out[split])
    return out


def load_examples(path: str | Path) -> list[dict]:
    """Labelled sentences from an SST-2-style .tsv (``sentence<TAB>label`` header) or .json / .jsonl file of rows
    with ``sentence`` (or ``text``) and ``label`` (0/1 or a label word)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"sentiment data file {path} does not exist")
    if path.suffix == ".tsv":
        with path.open(newline="") as f:
            raw = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    elif path.suffix == ".jsonl":
        raw = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    elif path.suffix == ".json":
        raw = json.loads(path.read_text())
    else:
        raise ValueError(f"{path}: sentiment data must be .tsv, .json or .jsonl")
    rows = []
    for i, r in enumerate(raw):
        text = r.get("sentence", r.get("text"))
        label = r.get("label")
        if isinstance(label, str) and label in LABELS:
            label = LABELS.index(label)
        try:
            label = int(label)
        except (TypeError, ValueError):
            label = None
        if not text or label not in (0, 1):
            raise ValueError(f"{path} row {i + 1}: needs a sentence (or text) and a label 0/1 or "
                             f"{'/'.join(LABELS)}, got {r}")
        rows.append({"sentence": str(text).strip(), "label": label})
    return rows


def load_data(data: str | None = None) -> dict:
    """{"train", "test"} examples: the shipped generated set, a JSON file of that shape, or a folder with train
    and test (or dev) files in one of ``load_examples``' formats."""
    from erasure.models import package_weights

    path = Path(data) if data else package_weights(DEFAULT_DATA[0]) / DEFAULT_DATA[1]
    if path.is_dir():
        found = {}
        for split, names in (("train", ("train",)), ("test", ("test", "dev"))):
            files = [path / f"{n}{ext}" for n in names for ext in (".tsv", ".jsonl", ".json")]
            hit = next((f for f in files if f.is_file()), None)
            if hit is None:
                raise FileNotFoundError(f"sentiment data folder {path} has no {split} file "
                                        f"({', '.join(f.name for f in files)})")
            found[split] = load_examples(hit)
        return found
    if not path.is_file():
        raise FileNotFoundError(f"sentiment data {path} does not exist (python -m llm.sentiment build writes one)")
    d = json.loads(path.read_text())
    if not isinstance(d, dict) or not {"train", "test"} <= set(d):
        raise ValueError(f"{path}: a sentiment data file holds {{'train': [...], 'test': [...]}}")
    return d


def as_rows(examples: Sequence[dict]) -> list[dict]:
    """Examples -> QA rows: the review as the question, its label word as the answer, both words as choices."""
    return [{"question": QUESTION.format(text=e["sentence"]), "answer": LABELS[e["label"]], "choices": list(LABELS),
             "label": e["label"]} for e in examples]


def split_forget(data: dict, forget_ratio: float = 0.1, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """(forget rows, retain rows): a random ``forget_ratio`` of the training reviews (drawn with ``seed``; the
    benchmark always uses 0, so erase and eval agree), and the rest."""
    if not 0 < forget_ratio < 1:
        raise ValueError(f"forget_ratio must lie in (0, 1), got {forget_ratio}")
    rows = as_rows(data["train"])
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    k = max(1, round(forget_ratio * len(rows)))
    chosen = set(order[:k])
    return [rows[i] for i in sorted(chosen)], [r for i, r in enumerate(rows) if i not in chosen]


def classify(adapter: Any, rows: Sequence[dict], batch_size: int = 16) -> list[int]:
    """Index of the choice each row's answer is most likely to be (lowest summed answer NLL)."""
    import torch  # here: the CLI's parser imports this module without torch

    preds = []
    for start in range(0, len(rows), batch_size):
        chunk = rows[start:start + batch_size]
        flat = [{**r, "answer": c} for r in chunk for c in r["choices"]]
        with torch.no_grad():
            nll, _ = adapter.per_example_nll(adapter.collate(flat))
        i = 0
        for r in chunk:
            n = len(r["choices"])
            preds.append(int(torch.argmin(nll[i:i + n])))
            i += n
    return preds


def accuracy(adapter: Any, rows: Sequence[dict]) -> dict:
    """``{"agg_value": share classified right, "value_by_index": 0/1 per row}``."""
    if not rows:
        return {"agg_value": None, "value_by_index": []}
    hits = [int(p == r["choices"].index(r["answer"])) for p, r in zip(classify(adapter, rows), rows)]
    return {"agg_value": sum(hits) / len(hits), "value_by_index": hits}


def answer_accuracy(adapter: Any, rows: Sequence[dict]) -> dict:
    """``{"agg_value": share of greedy answers whose first word is the row's label, "value_by_index": 0/1 per
    row}``: the official SPUL code's accuracy (its predicted token against the label over the whole vocabulary)."""
    from evals.rwku import normalise

    if not rows:
        return {"agg_value": None, "value_by_index": []}
    answers = adapter.generate(rows, max_new_tokens=4)
    hits = [int(normalise(a).split()[:1] == normalise(r["answer"]).split()) for a, r in zip(answers, rows)]
    return {"agg_value": sum(hits) / len(hits), "value_by_index": hits}


_DATA = Option(("--data",), "sentiment data: a folder with train and test (or dev) .tsv/.json/.jsonl files in "
                            "SST-2's format, or a JSON file {train, test} (default: the shipped generated reviews)")
_RATIO = Option(("--forget-ratio",), "share of the training reviews to forget (default 0.1)", type=float)


class MiniSentimentBenchmark:
    """Forget a random subset of a sentiment classifier's training reviews (SPUL's classification setting)."""

    name = "mini-sentiment"
    modality = "llm"
    target = "forget_ratio"
    summary_keys = ("forget_acc", "retain_acc", "test_acc", "chance", "seconds")
    utility_keys = ("retain_acc", "test_acc")
    options = {"erase": (_DATA, _RATIO), "eval": (_DATA, _RATIO), "audit": (_DATA, _RATIO)}

    def erase_data(self, adapter: Any, *, data: str | None = None,
                   forget_ratio: float | None = None) -> tuple[list, list]:
        """(forget rows, retain rows): the chosen training reviews and the other training reviews."""
        return split_forget(load_data(data), forget_ratio or 0.1)

    def evaluate(self, adapter: Any, *, model: str, out: str | None = None, seed: int = 0, data: str | None = None,
                 forget_ratio: float | None = None) -> dict:
        """Accuracy on the forget, retain and test reviews (the label words scored against each other, and the greedy
        answer's, ``answer_acc``), and chance (1 / number of labels).

        Args:
            adapter: the classifier's ``CausalLMAdapter`` (with its soft prompt, if any).
            model: its name or folder (recorded).
            out: output folder (``eval.json``; nothing written when None).
            seed: unused (the forget reviews are fixed by ``forget_ratio``; scoring draws nothing).
            data: sentiment data (``load_data``).
            forget_ratio: share of training reviews forgotten (0.1).
        """
        t0 = time.time()
        d = load_data(data)
        forget, retain = split_forget(d, forget_ratio or 0.1)
        test = as_rows(d["test"])
        adapter.model.eval()
        record = {"model": model, "forget_acc": accuracy(adapter, forget)["agg_value"],
                  "retain_acc": accuracy(adapter, retain)["agg_value"],
                  "test_acc": accuracy(adapter, test)["agg_value"], "chance": 1 / len(LABELS),
                  "answer_acc": {name: answer_accuracy(adapter, rows)["agg_value"]
                                 for name, rows in (("forget", forget), ("retain", retain), ("test", test))},
                  "n": {"forget": len(forget), "retain": len(retain), "test": len(d["test"])},
                  "seconds": round(time.time() - t0, 1)}
        if out:
            Path(out).mkdir(parents=True, exist_ok=True)
            (Path(out) / "eval.json").write_text(report_json(record))
        return record

    def prepare_audit(self, adapter: Any, *, original: Any = None, seed: int = 0, n: int | None = None,
                      data: str | None = None, forget_ratio: float | None = None) -> AuditPlan:
        """The forget reviews (first ``n``) with their true labels as the answers attacks push towards, judged by
        the label word appearing in the answer."""
        from evals.judges import probe_matcher

        forget, _ = split_forget(load_data(data), forget_ratio or 0.1)
        rows = [{**r, "answers": [r["answer"]]} for r in forget][: n or None]
        return AuditPlan(rows=rows, judge=probe_matcher(), context={},
                         eval_options={"data": data, "forget_ratio": forget_ratio})


MINI_SENTIMENT = MiniSentimentBenchmark()


# ---------------------------------------------------------------------------------------------- the classifier
def train_classifier(base: str = "smollm2-135m", epochs: float = 2.0, batch: int = 16, lr: float = 5e-4,
                     rank: int = 8, seed: int = 0, data: str | None = None, root: Path | None = None) -> dict:
    """LoRA-fine-tune ``base`` on every training review (the forget ones included: what is forgotten later must
    have been learned) and save the adapter under the package's weights (``<base>-sentiment``)."""
    from llm.tofu_finetune import train_derived

    return train_derived(base, "-sentiment", as_rows(load_data(data)["train"]), "llm.sentiment", epochs, batch, lr,
                         rank, seed, root)


def merge_classifier(base: str = "smollm2-135m", force: bool = False) -> Path:
    """Base + the shipped classifier adapter -> the cached model ``<base>-sentiment``."""
    from llm.tofu_finetune import merge_derived

    return merge_derived(base, "-sentiment", "llm.sentiment", force)


def main(argv: list[str] | None = None) -> None:
    from llm.tofu_finetune import lora_commands, run_lora_command

    p, sub = lora_commands("python -m llm.sentiment", __doc__, epochs=2.0, lr=5e-4, rank=8)
    b = sub.add_parser("build", help="write the generated review set")
    b.add_argument("--out", required=True)
    b.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.command == "build":
        from erasure.files import atomic_write_text

        print(atomic_write_text(args.out, json.dumps(build_reviews(seed=args.seed), indent=1), overwrite=False))
    else:
        run_lora_command(args, train_classifier, merge_classifier)


if __name__ == "__main__":
    main()
