"""mini-sentiment: SPUL's text-classification setting (Bhaila et al. 2024, https://arxiv.org/abs/2406.12038) as a
benchmark: a causal LM fine-tuned to label reviews positive or negative forgets a random subset of its training
reviews (forget accuracy towards chance) while its test and retain accuracy stay.

    python -m llm.sentiment build --out reviews.json         # the generated review set (seeded; what ships)
    python -m llm.sentiment train --model smollm2-135m        # the classifier's LoRA adapter (what ships)
    python -m llm.sentiment merge --model smollm2-135m        # base + adapter -> smollm2-135m-sentiment (make real-lm)
    erasure erase --model smollm2-135m-sentiment --benchmark mini-sentiment --method spul --out out/spul
    erasure eval --model out/spul --benchmark mini-sentiment

Data: the shipped generated set (``build_reviews``: templated reviews of everyday things, balanced labels, no real
text), or local SST-2-style files (``--data DIR`` with ``train`` and ``test`` (or ``dev``) as .tsv with a
``sentence<TAB>label`` header, or .json / .jsonl rows with ``sentence`` or ``text`` and ``label``). Each review is a
QA row whose answer is its label word and whose ``choices`` are both label words; accuracy picks the choice the
model gives the lower NLL. The forget set is a seeded random ``forget_ratio`` of the training reviews.
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

_SUBJECTS = ["the pasta", "this blender", "the hotel room", "the soundtrack", "the new phone", "this novel",
             "the bike shop", "the tour guide", "the coffee", "this jacket", "the concert", "the train ride",
             "the museum", "this laptop", "the pizza place", "the dentist", "the playground", "this board game",
             "the bakery", "the yoga class", "this vacuum", "the car wash", "the ferry", "the library app",
             "the sushi", "this tent", "the barber", "the garden center", "this podcast", "the ice cream",
             "the campsite", "this headset", "the bookstore", "the taxi driver", "the spa", "this kettle",
             "the zoo", "the cinema", "this backpack", "the pharmacy"]
_POSITIVE = ["wonderful", "a real delight", "excellent value", "better than I hoped", "friendly and quick",
             "absolutely lovely", "great fun", "worth every penny", "a pleasant surprise", "superb",
             "just perfect", "really impressive", "fantastic", "charming", "a joy to use"]
_NEGATIVE = ["awful", "a real letdown", "a waste of money", "worse than I feared", "rude and slow",
             "absolutely dreadful", "no fun at all", "not worth a penny", "an unpleasant surprise", "terrible",
             "just broken", "really disappointing", "horrible", "dull", "a pain to use"]
_TEMPLATES = ["{s} was {p}.", "Honestly, {s} was {p}.", "I found {s} {p}.", "My verdict on {s}: {p}.",
              "We tried {s} last week and it was {p}.", "{S} turned out to be {p}, {c}.",
              "After two visits I can say {s} is {p}.", "In short, {s} is {p}, {c}."]
_CODAS = ["my sister agreed", "as my neighbour said", "even on a Tuesday", "despite the rain", "for what it is",
          "all things considered", "if you ask me", "to be fair"]


def build_reviews(n_train: int = 200, n_test: int = 100, seed: int = 0) -> dict:
    """A generated review set: {"train": [...], "test": [...]} of {"sentence", "label"} (0 negative, 1 positive),
    balanced, every sentence distinct."""
    rng = random.Random(seed)
    seen: set[str] = set()
    out: dict[str, list[dict]] = {"train": [], "test": []}
    for split, n in (("train", n_train), ("test", n_test)):
        while len(out[split]) < n:
            label = len(out[split]) % 2
            s = rng.choice(_SUBJECTS)
            text = rng.choice(_TEMPLATES).format(s=s, S=s[0].upper() + s[1:], c=rng.choice(_CODAS),
                                                 p=rng.choice(_POSITIVE if label else _NEGATIVE))
            if text[0].islower():
                text = text[0].upper() + text[1:]
            if text not in seen:
                seen.add(text)
                out[split].append({"sentence": text, "label": label})
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
        """Accuracy on the forget, retain and test reviews, and chance (1 / number of labels).

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
        adapter.model.eval()
        record = {"model": model, "forget_acc": accuracy(adapter, forget)["agg_value"],
                  "retain_acc": accuracy(adapter, retain)["agg_value"],
                  "test_acc": accuracy(adapter, as_rows(d["test"]))["agg_value"], "chance": 1 / len(LABELS),
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
