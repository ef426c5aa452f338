"""Mini-canvas (procedural UnlearnCanvas stand-in), the real UnlearnCanvas loader, and training of the
embedded default models."""
