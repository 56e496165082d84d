"""The support matrix: what the emulator does of Azure, as data (support-matrix.toml).

`python -m azure_iot_harness.support` prints the README's "Differences from Azure" section;
`--write-readme` replaces it in README.md between its markers.
"""

from __future__ import annotations

import sys
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

STATUSES = ("supported", "partial", "not supported")
BEGIN = "<!-- support-matrix:begin (generated from azure_iot_harness/support-matrix.toml) -->"
END = "<!-- support-matrix:end -->"


@dataclass(frozen=True)
class Feature:
    area: str
    name: str
    status: str
    note: str


def load() -> list[Feature]:
    data = tomllib.loads(resources.files(__package__).joinpath("support-matrix.toml").read_text())
    features = [Feature(**f) for f in data["feature"]]
    for f in features:
        if f.status not in STATUSES:
            raise ValueError(f"{f.name}: status {f.status!r} is not one of {STATUSES}")
    return features


def render(features: list[Feature]) -> str:
    lines = [BEGIN, "", "| Area | Feature | Status | Notes |", "|---|---|---|---|"]
    for f in features:
        cells = (f.area, f.name, f.status, f.note)
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    lines += ["", END]
    return "\n".join(lines)


def replace_in(text: str, section: str) -> str:
    start, end = text.index(BEGIN), text.index(END) + len(END)
    return text[:start] + section + text[end:]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    section = render(load())
    if argv == ["--write-readme"]:
        readme = Path(__file__).resolve().parent.parent / "README.md"
        readme.write_text(replace_in(readme.read_text(), section))
    else:
        print(section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
