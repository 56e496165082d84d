"""The pytest feature (entry point `pytest11: azure_iot_harness_certify`): a firmware repository
certifies its device in its own CI with one test.

    def test_firmware_is_certified(azure_iot_certify):
        report = azure_iot_certify(run="./build/device", device_id="fw-ci", methods=["reboot"])
        assert report.passed, report.summary()

`azure_iot_certify(**options)` runs `certify` with its own emulator (ephemeral ports on
127.0.0.1, the edge profile's gateway on an ephemeral port of another loopback address, unless
`standard_ports=True`, which gives it 8883/443 on a loopback address of its own, for devices that
cannot change port) and returns the `Report`. Options are
`RunOptions` fields; the command-line options below give defaults, and `--azure-iot-certify-reports
DIR` writes each run's JUnit, JSON and HTML there.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ..errors import ConfigError
from .report import Report
from .runner import RunOptions, free_loopback_address, run


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("azure-iot-certify", "azure-iot-harness certify")
    g.addoption("--azure-iot-certify-run", metavar="COMMAND", help="default device program for azure_iot_certify (its run=)")
    g.addoption("--azure-iot-certify-profile", metavar="NAME|FILE", help="default profile (basic, resilience, full or a TOML file)")
    g.addoption("--azure-iot-certify-reports", metavar="DIR", help="write each run's JUnit XML, JSON and HTML into DIR")


@pytest.fixture
def azure_iot_certify(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[..., Report]]:
    """`certify(**RunOptions fields, standard_ports=False) -> Report`; progress lines go to the
    `azure_iot_harness.certify` logger (pytest shows them with the test's output)."""
    config = request.config
    log = logging.getLogger("azure_iot_harness.certify")

    def certify(*, standard_ports: bool = False, **options: Any) -> Report:
        options.setdefault("device_id", re.sub(r"[^A-Za-z0-9-]", "-", request.node.name)[:100])
        default_run = config.getoption("azure_iot_certify_run")
        if default_run and "run" not in options:
            options["run"] = default_run
        if not options.get("run"):
            raise ConfigError("azure_iot_certify needs run= (or --azure-iot-certify-run): the device program to start")
        profile = config.getoption("azure_iot_certify_profile")
        if profile and "profile" not in options:
            options["profile"] = profile
        options.setdefault("work_dir", str(tmp_path / f"certify-{options['device_id']}"))
        report = _run(options, standard_ports, log.info)
        folder = config.getoption("azure_iot_certify_reports")
        if folder:
            out = Path(folder)
            out.mkdir(parents=True, exist_ok=True)
            stem = out / f"certify-{options['device_id']}"
            report.write_junit(stem.with_suffix(".xml"))
            report.write_json(stem.with_suffix(".json"))
            report.write_html(stem.with_suffix(".html"))
        return report

    yield certify


def _run(options: dict[str, Any], standard_ports: bool, out: Callable[[str], None]) -> Report:
    if not standard_ports:
        # The edge profile's gateway too: an ephemeral port on a loopback address of its own.
        edge = {"edge_bind": free_loopback_address(), "edge_mqtt_port": 0}
        return run(RunOptions(**{"mqtt_port": 0, "https_port": 0, **edge, **options}), out)
    last: Exception | None = None
    for _ in range(20):  # 8883/443 on a random loopback address: parallel runs never collide
        address = free_loopback_address()
        try:
            ports = {"bind": address, "host": address, "mqtt_port": 8883, "https_port": 443, "edge_bind": free_loopback_address()}
            return run(RunOptions(**{**ports, **options}), out)
        except ConfigError as exc:
            if "cannot bind" not in str(exc):
                raise
            last = exc
    raise ConfigError(f"no free loopback address for the standard ports: {last}")
