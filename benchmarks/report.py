"""Rows of results, the printed table (Markdown, so the README can carry it) and the JSON file."""

from __future__ import annotations

from dataclasses import dataclass, field

from .stats import Samples, cell, fmt, ratio


@dataclass
class Row:
    name: str
    unit: str
    emulator: Samples | None
    against: str = ""  # what it is compared with, "" for none
    theirs: Samples | None = None
    goal: str = ""
    met: bool | None = None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        return ratio(self.emulator, self.theirs)

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "unit": self.unit,
            "emulator": self.emulator.to_json() if self.emulator else None,
            "against": self.against or None,
            "theirs": self.theirs.to_json() if self.theirs else None,
            "ratio": self.ratio,
            "goal": self.goal or None,
            "met": self.met,
            "note": self.note or None,
        }


@dataclass
class Section:
    title: str
    rows: list[Row] = field(default_factory=list)
    not_measured: list[str] = field(default_factory=list)
    busy_before: float | None = None  # percent of the machine's CPU others used just before


HEADER = "| Measurement | Unit | Emulator | Compared with | Theirs | Ratio | Goal | Met |"


def render(sections: list[Section]) -> str:
    out = [HEADER, "|---|---|---|---|---|---|---|---|"]
    for sec in sections:
        for row in sec.rows:
            met = {True: "yes", False: "**no**", None: ""}[row.met]
            r = row.ratio
            name = row.name + (f" ({row.note})" if row.note else "")
            out.append(
                f"| {name} | {row.unit} | {cell(row.emulator)} | {row.against or '–'} | {cell(row.theirs)} | "
                f"{fmt(r) + '×' if r is not None else '–'} | {row.goal or '–'} | {met} |"
            )
        for what in sec.not_measured:
            out.append(f"| {sec.title}: {what} | | not measured | | | | | |")
    return "\n".join(out)
