"""A model's concept vocabulary (UnlearnCanvas-style styles x objects), stored beside it as concepts.json."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

CONCEPTS_FILE = "concepts.json"
UNLEARNCANVAS_TEMPLATE = "A {object} image in {style} style."  # UnlearnCanvas's prompts (and mini-canvas's)

# Generic retain prompts ("a photo of {object}", as AdvUnlearn's 243) for models without a concept vocabulary.
RETAIN_OBJECTS = (
    "dog cat bird horse fish tree flower house car boat bicycle chair table cup bottle apple banana clock "
    "book lamp bridge mountain river beach city street train airplane cow sheep butterfly"
).split()


def default_retain_prompts() -> list[str]:
    return [f"a photo of a {o}" for o in RETAIN_OBJECTS]


@dataclass
class ConceptSet:
    """The concept vocabulary a model was trained on (UnlearnCanvas-style styles x objects).

    Args:
        styles: style names.
        objects: object names.
        template: prompt template with ``{object}`` and ``{style}``.
    """

    styles: list[str]
    objects: list[str]
    template: str = UNLEARNCANVAS_TEMPLATE

    def domain(self, concept: str) -> str:
        """"style" or "object"; ``ValueError`` for a concept the set does not know."""
        if concept in self.styles:
            return "style"
        if concept in self.objects:
            return "object"
        raise ValueError(f"unknown concept {concept!r} for this model; styles: {', '.join(self.styles)}; "
                         f"objects: {', '.join(self.objects)}")

    def prompt(self, obj: str, style: str) -> str:
        return self.template.format(object=obj, style=style)

    def prompts_with(self, concept: str) -> list[str]:
        """Every template prompt that contains ``concept``."""
        if self.domain(concept) == "style":
            return [self.prompt(o, concept) for o in self.objects]
        return [self.prompt(concept, s) for s in self.styles]

    def prompts_without(self, concept: str) -> list[str]:
        """Every template prompt that does not contain ``concept`` (a retain set)."""
        dom = self.domain(concept)
        return [self.prompt(o, s) for s in self.styles for o in self.objects
                if (s if dom == "style" else o) != concept]

    def to_dict(self) -> dict:
        return {"styles": self.styles, "objects": self.objects, "template": self.template}

    def save(self, path: str | os.PathLike) -> None:
        (Path(path) / CONCEPTS_FILE).write_text(json.dumps(self.to_dict(), indent=2))

    @classmethod
    def load(cls, path: str | os.PathLike) -> "ConceptSet | None":
        f = Path(path) / CONCEPTS_FILE
        return cls(**json.loads(f.read_text())) if f.is_file() else None
