"""The reports of a run: JUnit XML (for CI), JSON (for machines), one self-contained HTML page
(for people: the summary matrix, then each check with its evidence), and the check catalogue as
a Markdown table (the README's is generated from it)."""

from __future__ import annotations

import html
import json
import time
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import catalogue, profiles
from .model import CheckResult, Result


@dataclass
class Report:
    device_id: str
    auth: str
    provisioning: str
    profile: str
    command: str | None
    started: float
    finished: float
    version: str
    results: list[CheckResult] = field(default_factory=list)
    device_log: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """No mandatory check failed or errored."""
        return self.exit_code == 0

    @property
    def exit_code(self) -> int:
        """0: every mandatory check passed (or was skipped); 1: a mandatory check failed; 2: none
        failed but a mandatory check could not be judged (ERROR)."""
        if any(r.blocking for r in self.results):
            return 1
        if any(r.mandatory and r.result is Result.ERROR for r in self.results):
            return 2
        return 0

    def by_result(self, result: Result) -> list[str]:
        return [r.check.id for r in self.results if r.result is result]

    @property
    def failed(self) -> list[str]:
        return self.by_result(Result.FAIL)

    def result(self, check_id: str) -> CheckResult:
        return next(r for r in self.results if r.check.id == check_id)

    def counts(self) -> dict[str, int]:
        c = Counter(r.result.value for r in self.results)
        return {r.value: c.get(r.value, 0) for r in Result}

    def summary_line(self) -> str:
        counts = ", ".join(f"{n} {k}" for k, n in self.counts().items() if n)
        verdict = {0: "CERTIFIED", 1: "NOT CERTIFIED", 2: "INCOMPLETE"}[self.exit_code]
        return f"{verdict}: {self.device_id}, profile {self.profile}: {counts} in {self.finished - self.started:.1f} s"

    def summary(self) -> str:
        lines = [self.summary_line()]
        lines += [f"  {r.result.value:<18} {r.check.id}: {r.message}" for r in self.results if r.result not in (Result.PASS, Result.SKIP)]
        return "\n".join(lines)

    # ---- JSON ----------------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {
            "tool": f"azure-iot-harness {self.version}",
            "device": {"deviceId": self.device_id, "auth": self.auth, "provisioning": self.provisioning, "command": self.command},
            "profile": self.profile,
            "started": _iso(self.started),
            "finished": _iso(self.finished),
            "exitCode": self.exit_code,
            "counts": self.counts(),
            "checks": [r.to_json() for r in self.results],
            "deviceLog": self.device_log,
        }

    def write_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_json(), indent=2) + "\n")

    # ---- JUnit XML -----------------------------------------------------------------------------

    def to_junit(self) -> str:
        suite = ET.Element("testsuite", {
            "name": f"azure-iot-harness certify ({self.profile})",
            "tests": str(len(self.results)),
            "failures": str(sum(1 for r in self.results if r.result is Result.FAIL)),
            "errors": str(sum(1 for r in self.results if r.result is Result.ERROR)),
            "skipped": str(sum(1 for r in self.results if r.result is Result.SKIP)),
            "time": f"{self.finished - self.started:.3f}",
            "timestamp": _iso(self.started),
        })  # fmt: skip
        props = ET.SubElement(suite, "properties")
        for name, value in (("deviceId", self.device_id), ("auth", self.auth), ("provisioning", self.provisioning)):
            ET.SubElement(props, "property", {"name": name, "value": value})
        for r in self.results:
            case = ET.SubElement(suite, "testcase", {"classname": f"certify.{r.check.group}", "name": r.check.id, "time": f"{r.elapsed:.3f}"})
            detail = "\n".join([r.check.rule, f"source: {r.check.source}", *_evidence_lines(r)])
            tag = {Result.FAIL: "failure", Result.ERROR: "error", Result.SKIP: "skipped"}.get(r.result)
            if tag is not None:
                kind = "mandatory" if r.mandatory else "optional"
                el = ET.SubElement(case, tag, {"message": f"{r.result.value} ({kind}): {r.message}"})
                if tag != "skipped":
                    el.text = detail
            else:
                ET.SubElement(case, "system-out").text = f"{r.result.value}: {r.message}\n{detail}"
        return ET.tostring(suite, encoding="unicode", xml_declaration=True) + "\n"

    def write_junit(self, path: str | Path) -> None:
        Path(path).write_text(self.to_junit())

    # ---- HTML ----------------------------------------------------------------------------------

    def to_html(self) -> str:
        e = html.escape
        rows = []
        for r in self.results:
            rows.append(
                f"<tr class='{r.result.value}'><td><a href='#{e(r.check.id)}'>{e(r.check.id)}</a></td><td>{e(r.check.title)}</td>"
                f"<td>{'mandatory' if r.mandatory else 'optional'}</td><td class='res'>{r.result.value}</td><td>{r.elapsed:.1f} s</td>"
                f"<td>{e(r.message)}</td></tr>"
            )
        sections = []
        for r in self.results:
            ev = r.evidence
            timings = "".join(f"<li>{e(k)}: {v:.3f} s</li>" for k, v in ev.timings.items())
            notes = "".join(f"<li>{e(n)}</li>" for n in ev.notes)
            trace = e("\n".join(ev.excerpt())) or "(no trace events)"
            sections.append(
                f"<section id='{e(r.check.id)}' class='{r.result.value}'><h2>{e(r.check.id)} — {r.result.value}</h2>"
                f"<p><b>Rule:</b> {e(r.check.rule)}<br><b>Source:</b> {e(r.check.source)}<br>"
                f"<b>{'Mandatory' if r.mandatory else 'Optional'}</b> in profile {e(self.profile)}; timeout {r.timeout:g} s; "
                f"took {r.elapsed:.2f} s</p><p><b>Result:</b> {e(r.message)}</p>"
                + (f"<p><b>Timings</b></p><ul>{timings}</ul>" if timings else "")
                + (f"<p><b>Notes</b></p><ul>{notes}</ul>" if notes else "")
                + f"<p><b>Trace excerpt</b></p><pre>{trace}</pre></section>"
            )
        counts = " · ".join(f"{n} {k}" for k, n in self.counts().items() if n)
        log = e("\n".join(self.device_log)) or "(none)"
        return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Certification of {e(self.device_id)}</title>
<style>
body{{font-family:system-ui,sans-serif;margin:2em;max-width:80em}} table{{border-collapse:collapse;width:100%}}
td,th{{border:1px solid #ccc;padding:.3em .5em;text-align:left;vertical-align:top}} pre{{background:#f6f6f6;padding:.5em;overflow:auto;font-size:85%}}
.PASS .res{{background:#c8f0c8}} .PASS_WITH_WARNINGS .res{{background:#f0f0a0}} .FAIL .res{{background:#f4b4b4}}
.ERROR .res{{background:#f0c890}} .SKIP .res{{background:#ddd}} section{{border-top:1px solid #ccc;margin-top:1em}}
section.FAIL h2{{color:#a00}} section.ERROR h2{{color:#a60}}
</style></head><body>
<h1>{e(self.summary_line())}</h1>
<p>Device <b>{e(self.device_id)}</b> ({e(self.auth)}, provisioning {e(self.provisioning)}); profile <b>{e(self.profile)}</b>;
command <code>{e(self.command or "external device")}</code>; {e(_iso(self.started))} to {e(_iso(self.finished))};
azure-iot-harness {e(self.version)}. {e(counts)}. Exit code {self.exit_code}.</p>
<table><tr><th>Check</th><th>What</th><th>Profile</th><th>Result</th><th>Time</th><th>Why</th></tr>
{''.join(rows)}
</table>
{''.join(sections)}
<section><h2>Device output (last lines)</h2><pre>{log}</pre></section>
</body></html>
"""

    def write_html(self, path: str | Path) -> None:
        Path(path).write_text(self.to_html())


def _evidence_lines(r: CheckResult) -> list[str]:
    ev = r.evidence
    out = [f"timing {k}: {v:.3f} s" for k, v in ev.timings.items()] + [f"note: {n}" for n in ev.notes]
    return out + ["trace:", *("  " + line for line in ev.excerpt())] if ev.events else out


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def catalogue_markdown() -> str:
    """The check catalogue: one row per check in run order, with the profiles it is in."""
    names = list(profiles.BUILT_IN)
    head = f"| # | Check | Rule | Source | {' | '.join(names)} |\n|{'---|' * (4 + len(names))}\n"
    rows = []
    for n, check in enumerate(catalogue.CHECKS, 1):
        marks = []
        for _name, ids in profiles.BUILT_IN.items():
            if check.id not in ids:
                marks.append("–")
            else:
                marks.append("optional" if check.id in profiles.OPTIONAL else "mandatory")
        note = ""
        if check.feature:
            note = f" *(feature: {check.feature})*"
        rows.append(f"| {n} | `{check.id}` | {check.rule}{note} | {check.source} | {' | '.join(marks)} |")
    return head + "\n".join(rows) + "\n"
