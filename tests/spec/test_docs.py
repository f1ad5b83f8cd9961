"""The sweep-file reference is generated from the models, and every ready sweep loads."""

from __future__ import annotations

from pathlib import Path

import pytest

from sweep.spec import config
from sweep.spec import docs

REPO = Path(__file__).resolve().parents[2]
SWEEPS = sorted((REPO / "search_spaces").glob("*.yaml"))


def test_reference_page_matches_the_models():
    committed = (REPO / "docs" / "reference.md").read_text(encoding="utf-8")
    assert committed == docs.reference(), "regenerate it: python -m sweep.spec.docs > docs/reference.md"


def test_reference_lists_every_key_of_every_section():
    page = docs.reference()
    for _, model, prefix in docs.SECTIONS:
        for name in model.model_fields:
            assert f"| `{prefix}{name}` |" in page


@pytest.mark.parametrize("path", SWEEPS, ids=[p.name for p in SWEEPS])
def test_every_ready_sweep_loads_and_says_what_it_shows(path):
    loaded = config.load(path)
    assert loaded.search.trials >= 1
    assert path.read_text().startswith("# "), "each ready sweep starts with a comment header"


def test_the_shipped_csv_is_what_the_tabular_sweep_reads():
    loaded = config.load(REPO / "search_spaces" / "tabular_csv.yaml")
    csv = Path(loaded.data.source.partition(":")[2])
    assert csv.is_file() and csv.read_text().splitlines()[0].endswith(f",{loaded.data.target}")
    assert len(SWEEPS) >= 6
