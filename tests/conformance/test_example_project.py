"""The example project (tests/example_project) passes with `pytest -n 2`, using nothing but the
installed package's fixtures."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent / "example_project"


def test_example_project_passes_in_parallel(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE_IOT_HARNESS_", "PYTEST_"))}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-n", "2", "-p", "no:cacheprovider", "--basetemp", str(tmp_path / "t")],
        cwd=PROJECT, env=env, capture_output=True, text=True, timeout=170,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "7 passed" in result.stdout, result.stdout[-2000:]


def test_readme_plugin_example_is_the_example_projects_code() -> None:
    # The README shows code that runs: each line of its plugin example is in the example project.
    readme = (PROJECT.parent.parent / "README.md").read_text()
    block = readme.split("## pytest plugin", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    sources = "\n".join(p.read_text() for p in PROJECT.glob("*.py"))
    for line in block.splitlines():
        code = line.split("  #", 1)[0].rstrip()
        assert code in sources, code
