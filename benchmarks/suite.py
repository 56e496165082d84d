"""Wall time of the conformance suite against the in-process emulator with `-n 2`
(`azure-iot-harness conformance -n 2`, run in a scratch folder for its report files). Where the
conformance checks are not installed, the project's own test suite is timed instead and
labelled as such."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
import time
from pathlib import Path

from .context import Context
from .report import Row, Section
from .stats import Samples

SUITE_TIMEOUT = 1800
GOAL_SECONDS = 30  # issue 18's goal for `conformance -n 2`
ROOT = Path(__file__).parent.parent


def run(ctx: Context) -> Section:
    section = Section("Test suite")
    conformance = importlib.util.find_spec("azure_iot_harness.conformance.checks") is not None
    if conformance:
        cmd = [sys.executable, "-m", "azure_iot_harness", "conformance", "-n", "2"]
        name = "Conformance suite, `azure-iot-harness conformance -n 2`"
    else:
        cmd = [sys.executable, "-m", "pytest", "-q", "-n", "2", "-p", "no:cacheprovider"]
        name = "Project test suite, `pytest -n 2` (no conformance suite installed)"
        section.not_measured.append("conformance suite wall time (its checks are not installed)")
    wall = Samples()
    summary = ""
    for rep in range(ctx.options.suite_repeat):
        cwd = ctx.workdir / f"suite-{rep}"
        cwd.mkdir()
        t0 = time.perf_counter()
        out = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd if conformance else ROOT, timeout=SUITE_TIMEOUT)
        wall.add(time.perf_counter() - t0)
        summary = _summary(out)
        ctx.log(f"suite #{rep + 1}: {wall.values[-1]:.1f} s ({summary})")
    row = Row(name, "s wall", wall, goal=f"≤ {GOAL_SECONDS} s", note=summary)
    row.met = (wall.median is not None and wall.median <= GOAL_SECONDS) if conformance else None
    section.rows.append(row)
    return section


def _summary(out: subprocess.CompletedProcess) -> str:
    lines = [ln for ln in out.stdout.splitlines() if re.search(r"\d+ (passed|failed|skipped)", ln)]
    summary = re.sub(r" in [\d.]+s.*", "", lines[-1].strip("= ")) if lines else f"exit {out.returncode}"
    failed = [ln.split(" ", 1)[1].split(" - ")[0] for ln in out.stdout.splitlines() if ln.startswith(("FAILED ", "ERROR "))]
    return summary + ("; " + ", ".join(failed) if failed else "")
