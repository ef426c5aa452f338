"""Diffusion adapter over diffusers components, sampling, ESD, and the tiny pipeline builder."""

from diffusion.adapter import DiffusionAdapter, DiffusionBatch
from diffusion.concepts import ConceptSet
from diffusion.pipeline import T2IPipeline

__all__ = ["DiffusionAdapter", "DiffusionBatch", "ConceptSet", "T2IPipeline"]
