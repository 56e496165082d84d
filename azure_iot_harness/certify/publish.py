"""After a run, its report goes to the emulator it ran against (`POST
/_emulator/certification/reports`): kept in that emulator's data folder, listed and shown by its
explorer page. A run on a throw-away emulator (no --data-dir) keeps its report to itself: there is
no one to show it to. An emulator that cannot take the report costs a line, never the run."""

from __future__ import annotations

import http.client
import json
from collections.abc import Callable

from .lab import Lab
from .report import Report

PATH = "/_emulator/certification/reports"


def publish(lab: Lab, report: Report, out: Callable[[str], None]) -> str | None:
    """Post the report (JSON, HTML and JUnit) to the lab's emulator; where it can be seen (the
    explorer's page of it, else its API path), or None when the emulator did not take it."""
    body = {"report": report.to_json(), "html": report.to_html(), "junit": report.to_junit()}
    try:
        answer = lab.hub.call("POST", PATH, body, timeout=60)
    except (OSError, http.client.HTTPException) as exc:
        out(f"report not stored in the emulator: {exc}")
        return None
    if answer.status == 404:
        out("report not stored in the emulator: it predates certification reports (no /_emulator/certification)")
        return None
    if answer.status != 201:
        out(f"report not stored in the emulator: {answer.status} {answer.raw.decode(errors='replace')[:300]}")
        return None
    report_id = json.loads(answer.raw)["id"]
    explorer = lab.info.get("explorer") or {}
    where = f"{explorer['url']}certification/{report_id}" if explorer.get("url") else f"{PATH}/{report_id}"
    hint = ""
    if lab.emulator is not None and lab.info.get("dataDir"):  # certify's own emulator: gone after the run
        hint = f" (`azure-iot-harness serve --data-dir {lab.info['dataDir']}` shows it in the explorer)"
    out(f"report stored in the emulator: {where}{hint}")
    return where
