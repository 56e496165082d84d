"""Certification reports kept by the emulator: what `azure-iot-harness certify` posts after a run
against it, so the explorer can list the runs and show each report.

A report is certify's JSON document, with its HTML page and JUnit XML when given, stored in the
store (the data folder's SQLite file: it survives restarts; in memory for in-memory emulators).
The newest `MAX_REPORTS` are kept. The emulator checks the few fields it lists (device,
profile, times, exit code, counts) and keeps the rest as it came.
"""

from __future__ import annotations

import json
import sqlite3
import time
from typing import Any

from ..errors import ServiceError
from .protocol.errors import hub_error
from .protocol.numbers import INT64_MAX
from .store import Store

MAX_REPORTS = 500
# certify's exit codes (its --help): what each says of the device.
VERDICTS = {0: "CERTIFIED", 1: "NOT CERTIFIED", 2: "INCOMPLETE"}
FORMATS = ("html", "junit")  # besides the JSON document

_SCHEMA = """
CREATE TABLE IF NOT EXISTS certification_reports (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    summary TEXT NOT NULL,
    report TEXT NOT NULL,
    html TEXT,
    junit TEXT
);
"""


class CertificationReports:
    def __init__(self, store: Store) -> None:
        self.store = store
        store.add_schema(_SCHEMA)

    async def add(self, body: dict[str, Any]) -> dict[str, Any]:
        """Store `{"report": {...}, "html": "...", "junit": "..."}`; the new report's summary.
        A ServiceError (400 ArgumentInvalid) says what is wrong with a bad body."""
        report, extras = _checked(body)
        summary = summarize(report)
        summary["received"] = _iso(time.time())
        texts = (json.dumps(summary), json.dumps(report), extras.get("html"), extras.get("junit"))

        def insert(c: sqlite3.Connection) -> int:
            cur = c.execute("INSERT INTO certification_reports (summary, report, html, junit) VALUES (?, ?, ?, ?)", texts)
            new = int(cur.lastrowid or 0)
            c.execute("DELETE FROM certification_reports WHERE id <= ?", (new - MAX_REPORTS,))
            return new

        summary["id"] = await self.store.submit(insert)
        summary["formats"] = ["json", *extras]
        return summary

    async def list(self) -> list[dict[str, Any]]:
        """Every report's summary, newest first."""
        rows = await self.store.submit(
            lambda c: c.execute(
                "SELECT id, summary, html IS NOT NULL, junit IS NOT NULL FROM certification_reports ORDER BY id DESC"
            ).fetchall()
        )
        return [_summary_row(row) for row in rows]

    async def get(self, report_id: int) -> dict[str, Any]:
        """The JSON document as certify wrote it."""
        row = await self._one(report_id, "report")
        doc: dict[str, Any] = json.loads(row)
        return doc

    async def text(self, report_id: int, fmt: str) -> str:
        """The report's HTML page or JUnit XML (`fmt`: html or junit)."""
        if fmt not in FORMATS:
            raise hub_error("NotFound", f"no report format {fmt!r}; formats: json, {', '.join(FORMATS)}")
        text = await self._one(report_id, fmt)
        if text is None:
            raise hub_error("NotFound", f"certification report {report_id} was stored without its {fmt}")
        return str(text)

    async def delete(self, report_id: int) -> None:
        _check_id(report_id)

        def delete(c: sqlite3.Connection) -> int:
            return c.execute("DELETE FROM certification_reports WHERE id = ?", (report_id,)).rowcount

        if not await self.store.submit(delete):
            raise _not_found(report_id)

    async def _one(self, report_id: int, column: str) -> Any:
        assert column in ("report", *FORMATS)  # a column name, never the caller's text
        _check_id(report_id)
        row = await self.store.submit(
            lambda c: c.execute(f"SELECT {column} FROM certification_reports WHERE id = ?", (report_id,)).fetchone()
        )
        if row is None:
            raise _not_found(report_id)
        return row[0]


def summarize(report: dict[str, Any]) -> dict[str, Any]:
    """What the list of runs shows of a (checked) report."""
    device = report["device"]
    return {
        "deviceId": device["deviceId"],
        "auth": device.get("auth"),
        "provisioning": device.get("provisioning"),
        "profile": report["profile"],
        "started": report["started"],
        "finished": report["finished"],
        "exitCode": report["exitCode"],
        "verdict": VERDICTS[report["exitCode"]],
        "counts": report["counts"],
        "checks": len(report["checks"]),
        "tool": report.get("tool"),
    }


def _checked(body: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    unknown = sorted(set(body) - {"report", *FORMATS})
    if unknown:
        raise hub_error("ArgumentInvalid", f"unknown field(s): {', '.join(unknown)}; expected report, html, junit")
    report = body.get("report")
    if not isinstance(report, dict):
        raise hub_error("ArgumentInvalid", "report must be certify's JSON report (an object)")
    device = report.get("device")
    if not isinstance(device, dict) or not isinstance(device.get("deviceId"), str) or not device["deviceId"]:
        raise hub_error("ArgumentInvalid", "report.device.deviceId must be a non-empty string")
    for name in ("profile", "started", "finished"):
        if not isinstance(report.get(name), str):
            raise hub_error("ArgumentInvalid", f"report.{name} must be a string")
    code = report.get("exitCode")
    if not isinstance(code, int) or isinstance(code, bool) or code not in VERDICTS:
        raise hub_error("ArgumentInvalid", f"report.exitCode must be one of {', '.join(map(str, VERDICTS))}")
    counts = report.get("counts")
    if not isinstance(counts, dict) or not all(isinstance(n, int) and not isinstance(n, bool) for n in counts.values()):
        raise hub_error("ArgumentInvalid", "report.counts must map results to numbers")
    if not isinstance(report.get("checks"), list):
        raise hub_error("ArgumentInvalid", "report.checks must be a list")
    extras = {}
    for fmt in FORMATS:
        value = body.get(fmt)
        if value is not None and not isinstance(value, str):
            raise hub_error("ArgumentInvalid", f"{fmt} must be a string")
        if value is not None:
            extras[fmt] = value
    return report, extras


def _summary_row(row: tuple[Any, ...]) -> dict[str, Any]:
    report_id, summary, has_html, has_junit = row
    doc: dict[str, Any] = json.loads(summary)
    doc["id"] = report_id
    doc["formats"] = ["json", *(["html"] if has_html else []), *(["junit"] if has_junit else [])]
    return doc


def _check_id(report_id: int) -> None:
    if not 0 < report_id <= INT64_MAX:  # what SQLite can hold; a path's digits may be more
        raise _not_found(report_id)


def _not_found(report_id: int) -> ServiceError:
    return hub_error("NotFound", f"no certification report {report_id}")


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
