"""Experiment-script helpers (the scripts themselves run minutes; their pure parts are tested here)."""

from __future__ import annotations

import pytest

from experiments.advunlearn_vs_esd import MARKERS, write_readme


def test_readme_table_block_is_replaced_and_missing_markers_are_an_error(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{MARKERS[0]}\nold table\n{MARKERS[1]}\noutro\n")
    write_readme(readme, "| new |")
    assert readme.read_text() == f"intro\n{MARKERS[0]}\n| new |\n{MARKERS[1]}\noutro\n"
    bare = tmp_path / "BARE.md"
    bare.write_text("no markers here\n")
    with pytest.raises(ValueError, match="advunlearn-table"):
        write_readme(bare, "| new |")


def test_style_routes_rejects_an_object_and_reads_the_shipped_model():
    from experiments.style_routes import WORDINGS, style_routes

    with pytest.raises(ValueError, match="not a mini-canvas style"):
        style_routes("mini-canvas", "Star")
    routes = style_routes("mini-canvas", "Neon", n=3)
    assert set(routes) == set(WORDINGS)
    assert routes["name"]["style"] == 1.0  # the shipped model draws Neon from its name (3 of 3 objects)
    assert routes["style words only"]["example"] == "bright night Circle image."
