"""Imports run one way (DESIGN.md, decision 11): `cli` → `clients`, `conformance`, `certify` → `running` →
`emulator`, `certs` → `config`, `errors`. Checked by reading the package's sources with `ast`,
never by importing them, so that a function-level or type-only import counts as much as one at
the top of a module."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

PACKAGE = "azure_iot_harness"
PACKAGE_DIR = Path(__file__).resolve().parents[1] / PACKAGE


@dataclass(frozen=True)
class Rule:
    importers: str  # a module and everything below it ("" : every module)
    forbidden: tuple[str, ...]  # what they must not import (a module and everything below it)
    why: str
    exempt: tuple[str, ...] = ()


_ABOVE_RUNNING = ("clients", "conformance", "certify", "cli")
RULES = (
    Rule("", ("cli",), "nothing imports the command line", exempt=("__main__",)),  # `python -m`'s entry point
    Rule("emulator", ("running", *_ABOVE_RUNNING), "the emulator knows nothing of its clients"),
    Rule("running", _ABOVE_RUNNING, "the client side of a running emulator is below the programs that use it"),
    Rule("clients", ("conformance", "certify", "cli"), "the client programs are below the conformance suite and certify"),
    Rule("conformance", ("certify",), "the conformance suite and certify stand side by side"),
    Rule("certify", ("conformance", "cli"), "certify stands beside the conformance suite, below the command line"),
    Rule("certs", ("emulator", "running", *_ABOVE_RUNNING), "the development PKI imports nothing above it"),
    Rule("config", ("certs", "emulator", "running", *_ABOVE_RUNNING), "settings import nothing above them"),
    Rule("errors", ("config", "certs", "emulator", "running", *_ABOVE_RUNNING), "the error hierarchy imports nothing"),
)


def _within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def modules(root: Path) -> dict[str, Path]:
    """Every module of the package at `root` (a folder named for the package), by dotted name."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = [root.name, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def imports(name: str, path: Path, known: set[str]) -> list[tuple[str, int]]:
    """(imported module, line) for every import statement in the module, wherever it stands;
    `from m import x` imports m.x when that is one of the `known` modules, else m."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            subs = {f"{module}.{alias.name}" for alias in node.names} & known
            found += [(sub, node.lineno) for sub in sorted(subs)] or [(module, node.lineno)]
    return found


def violations(root: Path, rules: tuple[Rule, ...] = RULES) -> list[str]:
    """One line per import that runs against a rule (the first rule it breaks). A module may
    always import its own area (`cli` may import a `cli.x`, say)."""
    pkg = root.name
    found: dict[tuple[str, int, str], str] = {}
    known = modules(root)
    for name, path in known.items():
        where = str(path.relative_to(root.parent))
        for rule in rules:
            importers = f"{pkg}.{rule.importers}" if rule.importers else pkg
            if not _within(name, importers) or any(_within(name, f"{pkg}.{e}") for e in rule.exempt):
                continue
            for imported, line in imports(name, path, set(known)):
                for area in (f"{pkg}.{f}" for f in rule.forbidden):
                    if _within(imported, area) and not _within(name, area):
                        found.setdefault((where, line, imported), f"{name} imports {imported}: {rule.why}")
    return [f"{where}:{line}: {text}" for (where, line, _), text in sorted(found.items())]


def test_the_package_imports_run_one_way() -> None:
    assert modules(PACKAGE_DIR), f"no modules found under {PACKAGE_DIR}"
    assert violations(PACKAGE_DIR) == []


def _tree(root: Path, files: dict[str, str]) -> Path:
    pkg = root / PACKAGE
    for rel, text in files.items():
        path = pkg / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return pkg


def test_bad_imports_are_reported(tmp_path: Path) -> None:
    pkg = _tree(
        tmp_path,
        {
            "__init__.py": "",
            "__main__.py": "from .cli import main\n",  # the entry point may
            "errors.py": "",
            "config.py": "from .errors import HarnessError\n",
            "cli.py": "from .running import endpoints\nfrom . import clients\n",
            "certs/__init__.py": "from ..config import Config\n",
            "certs/pki.py": "import azure_iot_harness.running.service\n",
            "emulator/__init__.py": "",
            "emulator/app.py": "from ..config import ENDPOINTS_FILE\n\n\ndef f():\n    from ..conformance import suite\n",
            "emulator/mqtt/listener.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ...clients.link import MqttLink\n",
            "running/__init__.py": "",
            "running/endpoints.py": "from ..emulator import app\nfrom ..certs import pki\n",
            "running/service.py": "from .. import cli\n",
            "clients/__init__.py": "from ..running.errors import CommandError\n",
            "clients/link.py": "from ..conformance.suite import cases\n",
            "conformance/__init__.py": "",
            "conformance/suite.py": "from ..clients import link\nfrom ..running import service\n",
            "certify/__init__.py": "",
            "certify/runner.py": "from ..clients import link\nfrom ..conformance import suite\n",
            "clients/device.py": "from ..certify import runner\n",
        },
    )
    found = violations(pkg)
    assert [line.split(": ", 1)[1].split(":")[0] for line in found] == [
        "azure_iot_harness.certify.runner imports azure_iot_harness.conformance.suite",
        "azure_iot_harness.certs.pki imports azure_iot_harness.running.service",
        "azure_iot_harness.clients.device imports azure_iot_harness.certify.runner",
        "azure_iot_harness.clients.link imports azure_iot_harness.conformance.suite",
        "azure_iot_harness.emulator.app imports azure_iot_harness.conformance.suite",
        "azure_iot_harness.emulator.mqtt.listener imports azure_iot_harness.clients.link",
        "azure_iot_harness.running.service imports azure_iot_harness.cli",
    ]
    assert "azure_iot_harness/running/service.py:1: " in found[-1] and "nothing imports the command line" in found[-1]
