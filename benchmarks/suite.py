"""Wall time of a pytest run with `-n 2`. There is no conformance suite yet (issue 7), so this
times the project's own test suite and says so."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

from .context import Context
from .report import Row, Section
from .stats import Samples

SUITE_TIMEOUT = 1800


def run(ctx: Context) -> Section:
    section = Section("Test suite")
    root = Path(__file__).parent.parent
    wall = Samples()
    summary = ""
    for rep in range(ctx.options.suite_repeat):
        t0 = time.perf_counter()
        out = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-n", "2", "-p", "no:cacheprovider"],
            capture_output=True, text=True, cwd=root, timeout=SUITE_TIMEOUT,
        )  # fmt: skip
        wall.add(time.perf_counter() - t0)
        lines = [ln for ln in out.stdout.splitlines() if re.search(r"\d+ (passed|failed)", ln)]
        summary = lines[-1].strip("= ") if lines else f"exit {out.returncode}"
        failed = [ln.split(" ", 1)[1].split(" - ")[0] for ln in out.stdout.splitlines() if ln.startswith(("FAILED ", "ERROR "))]
        if failed:
            summary += "; " + ", ".join(failed)
        ctx.log(f"suite #{rep + 1}: {wall.values[-1]:.1f} s ({summary})")
    # The goal (≤ 60 s) is the conformance suite's: this row is for information until it exists.
    row = Row("Project test suite, `pytest -n 2`", "s wall", wall, note=summary)
    section.rows.append(row)
    section.not_measured.append("conformance suite wall time (no conformance suite yet, issue 7; goal ≤ 60 s)")
    return section
