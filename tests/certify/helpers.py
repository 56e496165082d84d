"""Running certify in the tests: its own emulator on ephemeral ports, the device as a program,
short timeouts set here (the checks wait for conditions, never for fixed times)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from azure_iot_harness.certify import Report, RunOptions, run
from azure_iot_harness.certify.device import python_command
from azure_iot_harness.certify.runner import free_loopback_address

DEVICES = Path(__file__).parent / "devices"
# Seconds per check: enough for a device on a loaded CI machine, short enough to keep the runs quick.
TIMEOUTS = {
    "connect.connects": 15, "telemetry.publishes": 8, "twin.get": 8, "twin.desired": 10, "twin.reported": 8, "c2d.receive": 8,
    "methods.answer": 6, "methods.unknown": 6, "resilience.reconnect-delay": 15, "telemetry.resend-dup": 20,
    "telemetry.no-loss": 20, "c2d.queued": 25, "twin.reconcile": 25, "twin.throttled": 15, "credentials.token-renewal": 20,
    "resilience.azure-faults": 60, "resilience.dead-link": 30, "resilience.backoff": 45, "resilience.connack-timeout": 40,
    "resilience.takeover": 12, "credentials.permanent-refusal": 12, "provisioning.registers": 20,
    "provisioning.retry-after": 30, "provisioning.backoff": 40, "provisioning.reprovision": 40, "provisioning.follows-hub": 40,
    "edge.connects": 15,
    "edge.store-and-forward": 20,
}  # fmt: skip
DEVICE_FLAGS = ("--keep-alive", "4")  # so that a dead link is noticed within seconds


def reference_command(*flags: str) -> str:
    return python_command("-m", "azure_iot_harness", "client", "reference-device", *DEVICE_FLAGS, *flags)


def broken_command(name: str, *flags: str) -> str:
    return python_command(str(DEVICES / f"{name}.py"), *DEVICE_FLAGS, *flags)


def certify(command: str, device_id: str, *, lines: list[str] | None = None, **options: Any) -> Report:
    opts: dict[str, Any] = {
        "device_id": device_id, "run": command, "methods": ["reboot"], "telemetry_interval": 1.0, "mqtt_port": 0,
        "https_port": 0, "timeouts": dict(TIMEOUTS), "edge_bind": free_loopback_address(), "edge_mqtt_port": 0, **options,
    }  # fmt: skip
    out = lines if lines is not None else []
    return run(RunOptions(**opts), out=out.append)


def results(report: Report) -> dict[str, str]:
    return {r.check.id: r.result.value for r in report.results}


def explain(report: Report) -> str:
    return report.summary() + "\n" + "\n".join(
        f"{r.check.id}: {line}" for r in report.results if r.result.value in ("FAIL", "ERROR") for line in r.evidence.excerpt()[:12]
    ) + "\ndevice output:\n" + "\n".join(report.device_log[-15:])


