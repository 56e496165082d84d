"""The conformance suite's pytest machinery (imported by checks/conftest.py): options, the target
fixture, the one-validation-marker rule, a progress line per check, the variant × check matrix,
and a self-contained HTML report."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .targets import SETTINGS, TARGETS, Target, azure_target, emulator_target, external_target

VALIDATION_MARKERS = ("azure_validated", "azure_unvalidated")
CHECKS_DIR = Path(__file__).parent / "checks"


@dataclass(frozen=True)
class Case:
    """One row of the matrix: a client variant, an authentication, a path to the hub."""

    variant: str
    auth: str
    path: str

    def __str__(self) -> str:
        return f"{self.variant}-{self.auth}-{self.path}"


def cases(variants: tuple[str, ...], auths: tuple[str, ...] = ("sas", "x509"), paths: tuple[str, ...] = ("direct", "dps", "edge")) -> list[Any]:
    return [pytest.param(Case(v, a, p), id=str(Case(v, a, p))) for v in variants for a in auths for p in paths]


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("conformance", "azure-iot-harness conformance suite")
    g.addoption("--target", choices=TARGETS, default="emulator", help="what the checks run against (default: emulator, in-process per worker)")
    for name, (env, text) in SETTINGS.items():
        g.addoption(f"--{name.replace('_', '-')}", dest=f"conformance_{name}", metavar="VALUE", help=f"{text} (env {env})")
    g.addoption("--conformance-html", metavar="FILE", default="conformance-report.html", help="the HTML report (default: conformance-report.html)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "azure_validated: this check's expectation was confirmed against real Azure")
    config.addinivalue_line("markers", "azure_unvalidated: this check's expectation comes from Azure's documentation and the emulator, not yet from a run against real Azure")
    config._conformance_results = {}  # type: ignore[attr-defined]  # the run's results kept on pytest's config


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    wrong = []
    for item in items:
        found = [m for m in VALIDATION_MARKERS if item.get_closest_marker(m)]
        if len(found) != 1:
            wrong.append(f"{item.nodeid}: {found or 'no marker'}")
    if wrong:
        raise pytest.UsageError(
            f"every conformance check carries exactly one of {', '.join(VALIDATION_MARKERS)}:\n  " + "\n  ".join(wrong)
        )


# DPS's retry-after on the in-process emulator: 1 s, where Azure (and `serve`) send 3. Every
# variant still gets a 202 with it and waits before polling; a registration takes 2 s less.
EMULATOR_DPS_RETRY_AFTER = 1


@pytest.fixture(scope="session")
def azure_iot_settings(azure_iot_settings: dict[str, Any]) -> dict[str, Any]:
    """The plugin's settings (`--azure-iot-setting` wins), with the suite's DPS retry-after."""
    return {"dps_retry_after": EMULATOR_DPS_RETRY_AFTER, **azure_iot_settings}


@pytest.fixture(scope="session")
def target(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Target]:
    name = pytestconfig.getoption("target")
    work = tmp_path_factory.mktemp("conformance")
    if name == "emulator":
        t = emulator_target(request.getfixturevalue("azure_iot_emulator_factory"), work)
    elif name == "external":
        t = external_target(pytestconfig, work)
    else:
        t = azure_target(pytestconfig, work)
    if t.skip_reason:
        pytest.skip(t.skip_reason)
    yield t
    if t.service is not None:
        t.service.close()  # its AMQP connections, before the emulator stops


# ---- output -----------------------------------------------------------------------------------------


def _row_and_check(nodeid: str) -> tuple[str, str]:
    name = nodeid.split("::")[-1]
    m = re.fullmatch(r"(?:test_)?([^\[]+)(?:\[(.+)\])?", name)
    check, row = (m.group(1), m.group(2) or "-") if m else (name, "-")
    return row, check


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if not (report.when == "call" or (report.when == "setup" and report.outcome != "passed") or (report.when == "teardown" and report.failed)):
        return
    config = _CONFIG.get("config")
    if config is None:
        return
    row, check = _row_and_check(report.nodeid)
    outcome = "fail" if report.failed else report.outcome.replace("skipped", "skip").replace("passed", "pass")
    reason = ""
    if report.skipped and isinstance(report.longrepr, tuple):
        reason = str(report.longrepr[2]).removeprefix("Skipped: ")
    elif report.failed:
        reason = str(report.longrepr).strip().splitlines()[-1][:300] if report.longrepr else ""
    results = config._conformance_results  # type: ignore[attr-defined]  # the run's results kept on pytest's config
    if results.get((row, check), ("pass",))[0] == "fail" and (row, check) in results:
        return
    results[(row, check)] = (outcome, reason)
    tr = config.pluginmanager.get_plugin("terminalreporter")
    if tr is not None:
        tr.ensure_newline()  # xdist's progress characters share the line
        tr.write_line(f"conformance {outcome.upper():4} {check} [{row}]" + (f" — {reason}" if reason and outcome != "pass" else ""))


_CONFIG: dict[str, pytest.Config] = {}


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    _CONFIG["config"] = session.config


def _matrix(results: dict) -> tuple[list[str], list[str]]:
    rows = sorted({r for r, _ in results})
    checks = sorted({c for _, c in results})
    return rows, checks


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    if hasattr(config, "workerinput"):
        return
    results = getattr(config, "_conformance_results", {})
    if not results:
        return
    rows, checks = _matrix(results)
    tr = terminalreporter
    tr.section(f"conformance matrix (target: {config.getoption('target')})")
    width = max(len(r) for r in rows) + 2
    tr.write_line(" " * width + "  ".join(f"{i + 1:>4}" for i in range(len(checks))))
    for row in rows:
        cells = [results.get((row, c), ("", ""))[0] or "." for c in checks]
        tr.write_line(f"{row:<{width}}" + "  ".join(f"{c:>4}" for c in cells))
    for i, c in enumerate(checks):
        tr.write_line(f"  {i + 1:>2}: {c}")
    reasons = sorted({why for (o, why) in results.values() if o == "skip" and why})
    for why in reasons[:10]:
        tr.write_line(f"skip reason: {why}")
    out = Path(config.getoption("conformance_html"))
    out.write_text(_html(config.getoption("target"), rows, checks, results))
    tr.write_line(f"HTML report: {out.resolve()}")


def _html(target: str, rows: list[str], checks: list[str], results: dict) -> str:
    colour = {"pass": "#c8f7c5", "fail": "#f7c5c5", "skip": "#eeeeee"}
    head = "".join(f"<th>{html.escape(c)}</th>" for c in checks)
    body = []
    for row in rows:
        cells = []
        for c in checks:
            outcome, why = results.get((row, c), ("", ""))
            cells.append(f'<td style="background:{colour.get(outcome, "#fff")}" title="{html.escape(why)}">{outcome or "–"}</td>')
        body.append(f"<tr><th>{html.escape(row)}</th>{''.join(cells)}</tr>")
    return (
        "<!doctype html><meta charset=utf-8><title>azure-iot-harness conformance</title>"
        "<style>body{font-family:sans-serif}td,th{border:1px solid #999;padding:3px 6px;text-align:center}table{border-collapse:collapse}</style>"
        f"<h1>Conformance: target {html.escape(target)}</h1><p>Rows: variant-auth-path; hover a cell for the reason.</p>"
        f"<table><tr><th></th>{head}</tr>{''.join(body)}</table>"
    )
