"""A certification run: an emulator (its own, or one already running), the device's identity,
the device (a program started with `--run`, or an external one), then each check of the
profile in the catalogue's order, each with its timeout, a progress line as it goes, and the
faults it added cleared after it. The device program is restarted only where a check needs it
(a fresh start for provisioning checks) or when it is gone (it exited, or gave up after a
permanent refusal)."""

from __future__ import annotations

import random
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from .. import __version__
from ..errors import ConfigError, HarnessError
from . import catalogue
from .context import Context, Settings
from .device import DeviceProgram, DeviceUnderTest, ExternalDevice, create_identity
from .lab import OwnEmulator, running_lab
from .model import Check, CheckError, CheckResult, DeviceFailure, Result, Verdict
from .profiles import Profile, load
from .publish import publish
from .report import Report

FEATURES = ("telemetry", "c2d", "twin", "methods")


@dataclass
class RunOptions:
    device_id: str
    module_id: str | None = None  # the edge profile: the device under test is this module of the edge device (device_id: its id)
    auth: str = "sas"  # sas | x509
    provisioning: str = "none"  # dps | none
    run: str | None = None  # the device program (a shell command); None: an external device
    profile: str = "basic"  # basic | resilience | full | a TOML file
    checks: list[str] = field(default_factory=list)  # only these (--check)
    methods: list[str] = field(default_factory=list)
    without: list[str] = field(default_factory=list)  # features the device does not support
    telemetry_interval: float | None = None
    duration: float = 0.0
    timeouts: dict[str, float] = field(default_factory=dict)  # per check, over the profile's
    # The emulator: its own (a fresh data folder unless data_dir) or the running one (use_running).
    use_running: bool = False
    data_dir: str | None = None
    bind: str = "127.0.0.1"
    host: str | None = None
    mqtt_port: int = 8883
    https_port: int = 443
    # The edge gateway (profiles with edge.* checks): its address and MQTT port.
    edge_bind: str = "127.0.0.2"
    edge_mqtt_port: int = 8883
    work_dir: str | None = None
    connect_timeout: float | None = None  # how long to wait for the first connection (connect.connects)
    publish: bool = True  # the report to the emulator (kept in its data folder, shown by its explorer)


def emit_stdout(line: str) -> None:
    print(line, flush=True)


class Runner:
    def __init__(self, options: RunOptions, *, out: Callable[[str], None] = emit_stdout) -> None:
        self.options = options
        self.out = out
        self.profile = self._profile()
        self.settings = self._settings()

    def _profile(self) -> Profile:
        o = self.options
        if o.auth not in ("sas", "x509"):
            raise ConfigError(f"--auth must be sas or x509, not {o.auth!r}")
        if o.provisioning not in ("dps", "none"):
            raise ConfigError(f"--provisioning must be dps or none, not {o.provisioning!r}")
        unknown = [f for f in o.without if f not in FEATURES]
        if unknown:
            raise ConfigError(f"--without: {', '.join(unknown)} (features: {', '.join(FEATURES)})")
        profile = load(o.profile)
        if o.checks:
            profile = profile.only(o.checks)
        profile.timeouts.update(o.timeouts)
        if o.connect_timeout is not None:
            profile.timeouts["connect.connects"] = profile.timeouts["edge.connects"] = o.connect_timeout
        return profile

    def _settings(self) -> Settings:
        o, dev = self.options, self.profile.device
        interval = o.telemetry_interval if o.telemetry_interval is not None else float(dev.get("telemetry_interval", 5.0))
        settings = Settings(
            methods=list(o.methods or dev.get("methods", [])),
            unsupported=set(o.without or dev.get("without", [])),
            provisioning=o.provisioning,
            auth=o.auth,
            telemetry_interval=interval,
            duration=o.duration,
            gateway=any("edge" in catalogue.get(c).needs for c in self.profile.checks),
        )
        if settings.gateway and o.provisioning == "dps":
            raise ConfigError("the edge checks take a device created as the gateway's child: not with --provisioning dps")
        if o.module_id:
            if not settings.gateway or o.auth != "sas":
                raise ConfigError("--module-id: a module of the edge device, through the gateway (the edge profile) with SAS")
            settings.module_id = o.module_id
            settings.unsupported.add("c2d")  # IoT Hub sends no cloud-to-device messages to modules
        return settings

    # ---- the run -------------------------------------------------------------------------------

    def run(self) -> Report:
        o = self.options
        own: OwnEmulator | None = None
        tmp = None
        if o.work_dir:
            work = Path(o.work_dir)
        else:
            tmp = tempfile.TemporaryDirectory(prefix="azure-iot-certify-work-")
            work = Path(tmp.name)
        started = time.time()
        device: DeviceUnderTest | None = None
        try:
            if o.use_running:
                lab = running_lab(o.data_dir)
            else:
                own = OwnEmulator(data_dir=o.data_dir, bind=o.bind, host=o.host, mqtt_port=o.mqtt_port, https_port=o.https_port,
                                  edge_bind=o.edge_bind if self.settings.gateway else None, edge_mqtt_port=o.edge_mqtt_port)
                lab = own.start()
            self.out(f"emulator: mqtts://{lab.address}:{lab.mqtt_port} (hub {lab.hub_host}), CA {lab.ca_file}")
            if o.module_id and (lab.edge or {}).get("deviceId") != o.device_id:
                raise ConfigError(f"--module-id: --device-id must be the emulator's edge device ({(lab.edge or {}).get('deviceId')})")
            lab.capture_payloads(True)
            self._try(lab.clear_faults)
            self._try(lab.clear_trace)
            identity = create_identity(lab, o.device_id, auth=o.auth, provisioning=o.provisioning, work=work,
                                       methods=self.settings.methods, telemetry_interval=self.settings.telemetry_interval,
                                       gateway=self.settings.gateway, module_id=o.module_id)
            via = f", through the edge gateway {lab.edge['host']}" if self.settings.gateway and lab.edge else ""
            self.out(f"device {o.device_id}: {o.auth}, provisioning {o.provisioning}{via}; settings in {work / 'device.env'}")
            device = DeviceProgram(identity, o.run, work, self.out) if o.run else ExternalDevice(identity, self.out)
            device.start()
            ctx = Context(lab, device, self.settings, self.out)
            results = self._checks(ctx)
            device_log = device.output_tail(40)
            report = Report(
                device_id=o.device_id, auth=o.auth, provisioning=o.provisioning, profile=self.profile.name,
                command=o.run, started=started, finished=time.time(), version=__version__, results=results, device_log=device_log,
            )
            if o.publish and (o.use_running or o.data_dir):  # an emulator that outlives the run keeps it
                publish(lab, report, self.out)
        finally:
            if device is not None:
                device.stop()
            if own is not None:
                own.stop()
            if tmp is not None:
                tmp.cleanup()
        self.out(report.summary_line())
        return report

    @staticmethod
    def _try(call: Callable[[], Any]) -> None:
        try:
            call()
        except CheckError:
            pass  # an emulator without the fault/trace API: the checks that need it say so

    def _checks(self, ctx: Context) -> list[CheckResult]:
        results = []
        ids = self.profile.checks
        width = len(str(len(ids)))
        for n, check_id in enumerate(ids, 1):
            check = catalogue.get(check_id)
            timeout = self.profile.timeout(check_id)
            self.out(f"[{n:>{width}}/{len(ids)}] {check_id} … (timeout {timeout:g} s)")
            result = self._one(ctx, check, timeout, last=n == len(ids))
            results.append(result)
            mark = "" if result.mandatory else " (optional)"
            self.out(f"[{n:>{width}}/{len(ids)}] {check_id} {result.result.value}{mark} in {result.elapsed:.1f} s: {result.message}")
        return results

    def _skip_reason(self, check: Check) -> str | None:
        s = self.settings
        if check.feature in s.unsupported:
            return f"the device does not support {check.feature} (--without {check.feature})"
        if "dps" in check.needs and s.provisioning != "dps":
            return "needs --provisioning dps"
        if "duration" in check.needs and s.duration <= 0:
            return "needs --duration"
        return None

    def _one(self, ctx: Context, check: Check, timeout: float, last: bool = False) -> CheckResult:
        started, t0 = time.time(), time.monotonic()
        mandatory = self.profile.mandatory(check.id)
        skip = self._skip_reason(check)
        if skip is not None:
            return CheckResult(check, mandatory, Result.SKIP, skip, started, 0.0, timeout)
        ctx.begin_check(timeout)
        try:
            verdict = check.run(ctx)
        except DeviceFailure as exc:
            verdict = Verdict(Result.FAIL, str(exc), exc.evidence)
        except CheckError as exc:
            verdict = Verdict(Result.ERROR, str(exc))
        except (HarnessError, OSError) as exc:
            verdict = Verdict(Result.ERROR, f"{type(exc).__name__}: {exc}")
        except Exception as exc:  # a bug in the harness: ERROR, with where it happened
            where = traceback.extract_tb(exc.__traceback__)[-1]
            verdict = Verdict(Result.ERROR, f"{type(exc).__name__}: {exc} ({Path(where.filename).name}:{where.lineno})")
        finally:
            ctx.end_check()
        if not last:
            self._recover(ctx, check, verdict)
        return CheckResult(check, mandatory, verdict.result, verdict.message, started, time.monotonic() - t0, timeout, verdict.evidence)

    def _recover(self, ctx: Context, check: Check, verdict: Verdict) -> None:
        """Make sure the next check finds the device connected: restart a program that exited,
        or that is still out after a check that may leave it so."""
        device = ctx.device
        if isinstance(device, DeviceProgram) and device.exited is not None:
            verdict.evidence.notes.append(f"the device program exited with code {device.exited}; restarted")
            device.restart()
            return
        if verdict.result is Result.PASS and not check.restart_after:
            return
        if not ctx.accepted():  # never connected: nothing to get back to
            return
        if ctx.wait(lambda: ctx.online(), timeout=15) is None and isinstance(device, DeviceProgram):
            device.restart()
            ctx.wait(lambda: ctx.online(), timeout=15)


def run(options: RunOptions, out: Callable[[str], None] = emit_stdout) -> Report:
    return Runner(options, out=out).run()


def free_loopback_address() -> str:
    """A random 127.x.y.z, for a run on the standard ports next to others."""
    return f"127.{random.randint(1, 254)}.{random.randint(0, 255)}.{random.randint(1, 254)}"


def print_catalogue(stream: TextIO = sys.stdout, fmt: str = "markdown") -> None:
    from .report import catalogue_markdown

    stream.write(catalogue_markdown())


