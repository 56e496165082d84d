"""The README's table of the security and robustness suite matches the suite."""

from __future__ import annotations

import re

from tests.robustness import figures


def _table() -> dict[str, list[str]]:
    text = (figures.ROOT / "README.md").read_text()
    section = text[text.index(figures.BEGIN) : text.index(figures.END)]
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in section.splitlines() if line.startswith("| ")]
    return {row[0]: row[1:] for row in rows[1:]}  # without the header


def test_the_readme_table_has_a_measured_row_for_each_part_of_the_suite():
    table = _table()
    assert list(table) == list(figures.ROWS), "README is stale: python -m tests.robustness.figures --write-readme"
    for name, cells in table.items():
        assert cells[0] != "not run", f"{name}: run it, then python -m tests.robustness.figures --write-readme"
        assert cells[1:3] == ["0", "0"], f"{name}: wrongly accepted and crashes must be 0, not {cells[1:3]}"
        assert cells[3] in ("0", "—"), f"{name}: lost must be 0, not {cells[3]}"


def test_its_deterministic_counts_are_the_suites():
    table = _table()
    for name, tried in figures.deterministic_tried().items():
        shown = int(re.match(r"[\d,]+", table[name][0]).group().replace(",", ""))
        assert shown == tried, f"{name}: README says {shown}, the suite tries {tried}: rerun and --write-readme"
