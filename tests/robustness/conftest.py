"""The robustness suite's fixtures: figures each test measures. The long run is kept out of the
default suite by tests/conftest.py (`pytest -m robustness_long tests/robustness` runs it)."""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import asdict, dataclass, field

import pytest

from tests.robustness import figures as table


@dataclass
class Figures:
    """What one test tried and what went wrong, kept in `.cache/robustness/` (not pytest's cache,
    which CI turns off) for `python -m tests.robustness.figures` (the README's table)."""

    row: str
    tried: int = 0
    wrongly_accepted: int = 0
    crashes: int = 0
    lost: int | None = None
    duplicates: int | None = None
    notes: list[str] = field(default_factory=list)


@pytest.fixture
def figures(request: pytest.FixtureRequest):
    marker = request.node.get_closest_marker("figures")
    assert marker is not None, "a robustness test names its row: @pytest.mark.figures(ROW)"
    row = marker.args[0]
    assert row in table.ROWS, f"unknown row {row!r}"
    recorded = Figures(row)
    yield recorded
    table.FIGURES_DIR.mkdir(parents=True, exist_ok=True)
    path = table.FIGURES_DIR / (re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.nodeid) + ".json")
    entry = {**asdict(recorded), "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
    tmp = path.with_suffix(".tmp")  # xdist workers write side by side; readers never see half a file
    tmp.write_text(json.dumps(entry))
    tmp.replace(path)
