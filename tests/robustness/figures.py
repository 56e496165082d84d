"""The README's table of the security and robustness suite, made from a run.

Each test of tests/robustness records what it tried and what went wrong in .cache/robustness/
(tests/robustness/conftest.py); this module adds them up per row:

    .venv/bin/python -m pytest -p no:randomly tests/robustness            # the default slice
    .venv/bin/python -m pytest -p no:randomly -m robustness_long tests/robustness   # the long run
    .venv/bin/python -m tests.robustness.figures [--write-readme]

tests/robustness/test_figures.py checks that the README's table has these rows and that its
deterministic counts (cases in the tables below, packets of the seeded slice) match the suite.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FIGURES_DIR = ROOT / ".cache" / "robustness"
BEGIN = "<!-- robustness-figures:begin (python -m tests.robustness.figures --write-readme) -->"
END = "<!-- robustness-figures:end -->"

# Row -> the tests behind it.
ROWS: dict[str, str] = {
    "impersonation at the hub, MQTT and WebSocket": "test_impersonation.py",
    "impersonation at the edge, MQTT": "test_impersonation.py",
    "identity changes while connected, hub": "test_lifecycle.py",
    "malformed MQTT packets (corpus)": "test_malformed_mqtt.py",
    "random MQTT packets, seeded slice": "test_malformed_mqtt.py",
    "random MQTT packets, long run": "test_malformed_mqtt.py (-m robustness_long)",
    "kill -9 of serve under QoS 1 load": "test_crash_recovery.py",
    "kill -9 of serve --edge under QoS 1 load": "test_crash_recovery.py",
}

# What "cases tried" counts in each row.
UNITS: dict[str, str] = {
    "kill -9 of serve under QoS 1 load": "acknowledged messages",
    "kill -9 of serve --edge under QoS 1 load": "acknowledged messages",
    "random MQTT packets, seeded slice": "packets",
    "random MQTT packets, long run": "packets",
}


def deterministic_tried() -> dict[str, int]:
    """Rows whose case count follows from the suite itself, not from a run."""
    from tests.robustness import test_impersonation, test_lifecycle, test_malformed_mqtt

    return {
        "impersonation at the hub, MQTT and WebSocket": (len(test_impersonation.HUB_CASES) + len(test_impersonation.ACTS)) * 2,
        "impersonation at the edge, MQTT": len(test_impersonation.EDGE_CASES),
        "identity changes while connected, hub": len(test_lifecycle.CASES) * 2,
        "malformed MQTT packets (corpus)": len(test_malformed_mqtt.CORPUS),
        "random MQTT packets, seeded slice": test_malformed_mqtt.SLICE_PACKETS,
    }


def measured(cache_dir: Path = FIGURES_DIR) -> dict[str, dict]:
    """Per row: the sums of what its tests recorded, and when the latest of them ran."""
    rows: dict[str, dict] = {}
    for path in sorted(cache_dir.glob("*.json")):
        entry = json.loads(path.read_text())
        if entry.get("row") not in ROWS:
            continue
        row = rows.setdefault(entry["row"], {"tried": 0, "wrongly_accepted": 0, "crashes": 0, "lost": None, "duplicates": None, "when": "", "notes": []})
        for name in ("tried", "wrongly_accepted", "crashes"):
            row[name] += entry[name]
        for name in ("lost", "duplicates"):
            if entry.get(name) is not None:
                row[name] = (row[name] or 0) + entry[name]
        row["when"] = max(row["when"], entry["when"])
        row["notes"] += entry.get("notes", [])
    return rows


def render(rows: dict[str, dict]) -> str:
    lines = [
        BEGIN,
        "",
        "| Suite row | Cases tried | Wrongly accepted | Crashes | Lost | Duplicates | Measured |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in ROWS:
        row = rows.get(name)
        if row is None:
            lines.append(f"| {name} | not run | | | | | |")
            continue
        unit = f" {UNITS[name]}" if name in UNITS else ""
        cells = [
            f"{row['tried']:,}{unit}",
            str(row["wrongly_accepted"]),
            str(row["crashes"]),
            "—" if row["lost"] is None else str(row["lost"]),
            "—" if row["duplicates"] is None else str(row["duplicates"]),
            row["when"][:10],
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    notes = [n for name in ROWS for n in (rows.get(name) or {}).get("notes", [])]
    if notes:
        lines += [""] + [f"- {n}" for n in notes]
    return "\n".join([*lines, "", END])


def main(argv: list[str]) -> int:
    section = render(measured())
    if "--write-readme" not in argv:
        print(section)
        return 0
    readme = ROOT / "README.md"
    text = readme.read_text()
    start, end = text.index(BEGIN), text.index(END) + len(END)
    readme.write_text(text[:start] + section + text[end:])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
