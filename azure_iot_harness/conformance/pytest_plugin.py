"""The pytest plugin (entry point `pytest11: azure_iot_harness`): an in-memory emulator per
worker, handed to each test with its state reset, and the helpers a test needs around it.

Shape borrowed from pytest-httpserver: a session-scoped factory starts the emulator once per
xdist worker; the function-scoped fixture resets it (same ports, same CA) before handing it
over; errors logged inside the emulator while a test runs fail that test. Every name starts
with `azure_iot_` so the plugin never shadows a project's own `emulator` fixtures.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ..config import Config
from ..emulator.app import Emulator, EmulatorThread
from ..errors import ConfigError
from .credentials import DeviceCredentials, write_cert
from .service import HubService

STANDARD_PORTS_MARK = "azure_iot_standard_ports"
_ERRORS_KEY = pytest.StashKey["_ErrorRecorder"]()


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("azure-iot", "azure-iot-harness emulator")
    g.addoption(
        "--azure-iot-setting", action="append", default=[], metavar="NAME=VALUE",
        help="an emulator setting (a Config field, e.g. c2d_lock_seconds=5); repeatable",
    )
    g.addoption(
        "--azure-iot-standard-ports", action="store_true",
        help="give every test the emulator on 8883/443 of a per-worker loopback address (for the official SDKs)",
    )
    g.addoption(
        "--azure-iot-allow-emulator-errors", action="store_true",
        help="do not fail tests when the emulator logs an error while they run",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", f"{STANDARD_PORTS_MARK}: this test's azure_iot_emulator listens on 8883/443 of its own loopback address"
    )


# ---- errors inside the emulator ---------------------------------------------------------------------


class _ErrorRecorder(logging.Handler):
    """ERROR records from the emulator's loggers (and unhandled errors on its loop) during one test."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[str] = []
        self._lock_ = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        text = f"{record.name}: {record.getMessage()}"
        if record.exc_info and record.exc_info[1] is not None:
            text += f" ({type(record.exc_info[1]).__name__}: {record.exc_info[1]})"
        with self._lock_:
            self.records.append(text)

    def loop_error(self, loop: Any, context: dict) -> None:
        exc = context.get("exception")
        with self._lock_:
            self.records.append(f"event loop: {context.get('message')}" + (f" ({type(exc).__name__}: {exc})" if exc else ""))


class EmulatorErrors(AssertionError):
    """Raised in the test during which the emulator logged errors."""


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    result = yield  # a failing test keeps its own failure
    recorder = item.stash.get(_ERRORS_KEY, None)
    if recorder is not None and recorder.records:
        raise EmulatorErrors("the emulator logged errors during this test:\n  " + "\n  ".join(recorder.records))
    return result


# ---- the emulators ------------------------------------------------------------------------------------


def free_loopback_address() -> str:
    """A random 127.x.y.z: listeners on the standard ports (or an edge) get their own address, so
    parallel workers and runs never collide."""
    return f"127.{random.randint(1, 254)}.{random.randint(0, 255)}.{random.randint(1, 254)}"


class EmulatorFactory:
    """Starts at most one emulator of each kind (ephemeral or standard ports, with or without an
    IoT Edge gateway) per session; under xdist each worker has its own session, hence its own emulators."""

    def __init__(self, settings: dict[str, Any]) -> None:
        self.settings = settings
        self._threads: dict[tuple[bool, bool], EmulatorThread] = {}
        self._used: set[tuple[bool, bool]] = set()

    def get(self, *, standard_ports: bool = False, edge: bool = False) -> EmulatorThread:
        """The emulator of this kind, reset if a previous test used it. With `edge`, an edgeHub
        listens on a random loopback address: on 8883 with `standard_ports`, else an ephemeral port."""
        kind = (standard_ports, edge)
        thread = self._threads.get(kind)
        if thread is None:
            thread = self._start_standard(edge) if standard_ports else self._start_ephemeral(edge)
            self._threads[kind] = thread
        elif kind in self._used:
            thread.call(thread.emulator.reset(), timeout=60)
        self._used.add(kind)
        return thread

    def _start(self, **ports: Any) -> EmulatorThread:
        config = Config().with_overrides(**{**self.settings, "in_memory": True, **ports})
        thread = EmulatorThread(config)
        thread.start()
        return thread

    def _start_ephemeral(self, edge: bool) -> EmulatorThread:
        if not edge:
            return self._start(mqtt_port=0, https_port=0)
        return self._retry(lambda: self._start(mqtt_port=0, https_port=0, **self._edge(0)))

    def _start_standard(self, edge: bool) -> EmulatorThread:
        # 8883/443 on a random 127.x.y.z whose host name is that address: workers never collide.
        def attempt() -> EmulatorThread:
            address = free_loopback_address()
            return self._start(bind=address, host=address, mqtt_port=8883, https_port=443, **(self._edge(8883) if edge else {}))

        return self._retry(attempt)

    @staticmethod
    def _edge(port: int) -> dict[str, Any]:
        return {"edge": True, "edge_bind": free_loopback_address(), "edge_host": "", "edge_mqtt_port": port}

    @staticmethod
    def _retry(attempt: Any) -> EmulatorThread:
        last: Exception | None = None
        for _ in range(20):
            try:
                return attempt()
            except ConfigError as exc:  # address taken by a parallel worker or run: draw another
                last = exc
        raise ConfigError(f"no free loopback address for the emulator's listeners: {last}")

    def stop(self) -> None:
        for thread in self._threads.values():
            thread.stop()
        self._threads.clear()


def _parse_settings(items: list[str]) -> dict[str, Any]:
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep:
            raise pytest.UsageError(f"--azure-iot-setting wants NAME=VALUE, not {item!r}")
        out[name.strip()] = value.strip()
    return out


@pytest.fixture(scope="session")
def azure_iot_settings(pytestconfig: pytest.Config) -> dict[str, Any]:
    """Config overrides for the session's emulators; override this fixture to change them."""
    return _parse_settings(pytestconfig.getoption("azure_iot_setting") or [])


@pytest.fixture(scope="session")
def azure_iot_emulator_factory(azure_iot_settings: dict[str, Any]) -> Iterator[EmulatorFactory]:
    factory = EmulatorFactory(dict(azure_iot_settings))
    yield factory
    factory.stop()


@pytest.fixture
def azure_iot_standard_ports(request: pytest.FixtureRequest) -> bool:
    """Whether this test's emulator uses 8883/443 (marker or --azure-iot-standard-ports)."""
    return bool(request.node.get_closest_marker(STANDARD_PORTS_MARK) or request.config.getoption("azure_iot_standard_ports"))


@pytest.fixture
def azure_iot_emulator_thread(
    request: pytest.FixtureRequest, azure_iot_emulator_factory: EmulatorFactory, azure_iot_standard_ports: bool
) -> Iterator[EmulatorThread]:
    thread = azure_iot_emulator_factory.get(standard_ports=azure_iot_standard_ports)
    if request.config.getoption("azure_iot_allow_emulator_errors"):
        yield thread
        return
    recorder = _ErrorRecorder()
    logger = logging.getLogger("azure_iot_harness")
    logger.addHandler(recorder)
    thread.loop.call_soon_threadsafe(thread.loop.set_exception_handler, recorder.loop_error)
    request.node.stash[_ERRORS_KEY] = recorder
    try:
        yield thread
    finally:
        logger.removeHandler(recorder)
        thread.loop.call_soon_threadsafe(thread.loop.set_exception_handler, None)


@pytest.fixture
def azure_iot_emulator(azure_iot_emulator_thread: EmulatorThread) -> Emulator:
    """The worker's in-memory emulator with a fresh state."""
    return azure_iot_emulator_thread.emulator


@pytest.fixture
def azure_iot_ca_file(azure_iot_emulator: Emulator) -> Path:
    """The development root CA (PEM) that clients trust."""
    return azure_iot_emulator.ca_file


@pytest.fixture
def azure_iot_pki(azure_iot_emulator: Emulator):
    """The emulator's development PKI (`DevPKI`): `issue_device_cert(cn)`, `root_pem`, `device_ca_pem`."""
    return azure_iot_emulator.pki


@pytest.fixture
def azure_iot_service(azure_iot_emulator: Emulator) -> HubService:
    """Service-side helper over the emulator's REST APIs (identities, twins, methods, enrollments,
    telemetry with near-miss assertions, C2D)."""
    return HubService(
        hub_connection_string=azure_iot_emulator.connection_string(policy="iothubowner"),
        dps_connection_string=azure_iot_emulator.dps_connection_string(),
        id_scope=azure_iot_emulator.config.dps_id_scope,
        ca_file=str(azure_iot_emulator.ca_file),
    )


class CaCertificates:
    """The CA certificates of the emulator's hub (or, `dps=True`, its DPS), as the management
    plane manages them: upload (optionally verified), proof of possession, delete, list."""

    def __init__(self, thread: EmulatorThread) -> None:
        self.thread, self.emulator = thread, thread.emulator

    def upload(self, name: str, certificate: str | bytes, *, verified: bool = False, dps: bool = False) -> dict:
        return dict(self.thread.call(self.emulator.upload_ca(name, certificate, verified=verified, dps=dps)))

    def verification_code(self, name: str, *, dps: bool = False) -> str:
        return str(self.thread.call(self.emulator.ca_verification_code(name, dps=dps)))

    def verify(self, name: str, certificate: str | bytes, *, dps: bool = False) -> dict:
        return dict(self.thread.call(self.emulator.verify_ca(name, certificate, dps=dps)))

    def delete(self, name: str, *, dps: bool = False) -> None:
        self.thread.call(self.emulator.delete_ca(name, dps=dps))

    def list(self, *, dps: bool = False) -> list[dict]:
        return self.emulator.ca_certificates(dps=dps).list()


@pytest.fixture
def azure_iot_ca(azure_iot_emulator_thread: EmulatorThread) -> CaCertificates:
    """`azure_iot_ca.upload("root", pem, verified=True)`, `.verification_code(name)`,
    `.verify(name, pem)`, `.delete(name)`, `.list()` (each with `dps=True` for DPS's)."""
    return CaCertificates(azure_iot_emulator_thread)


class DeviceFactory:
    """Creates devices through the service API and returns their credentials."""

    def __init__(self, emulator: Emulator, service: HubService, folder: Path) -> None:
        self.emulator, self.service, self.folder = emulator, service, folder
        self._chain: tuple[Any, Any] | None = None  # (root, intermediate) of x509_chain devices

    def _creds(self, device_id: str, **kw: Any) -> DeviceCredentials:
        emu = self.emulator
        return DeviceCredentials(device_id=device_id, host=emu.host, mqtt_address=emu.config.bind, mqtt_port=emu.mqtt_port, ca_file=str(emu.ca_file), **kw)

    def sas(self, device_id: str) -> DeviceCredentials:
        doc = self.service.create_device(device_id)
        return self._creds(device_id, key=doc["authentication"]["symmetricKey"]["primaryKey"])

    def x509(self, device_id: str) -> DeviceCredentials:
        """A device registered by the thumbprint of a certificate from the development device CA."""
        cert = self.emulator.pki.issue_device_cert(device_id)
        self.service.create_device(device_id, thumbprint=cert.sha1_thumbprint)
        cert_file, key_file = write_cert(self.folder, device_id, cert.cert_pem, cert.key_pem)
        return self._creds(device_id, cert_file=cert_file, key_file=key_file)

    def x509_chain(self, device_id: str) -> DeviceCredentials:
        """A certificateAuthority device whose certificate file holds its certificate, an
        intermediate and a root of the test's own (the root uploaded to the hub, verified)."""
        from ..certs.chain import issue

        if self._chain is None:
            root = issue("azure-iot-harness test root", ca=True)
            self.service.upload_verified_ca("azure-iot-harness-test-root", root.cert_pem)
            self._chain = root, issue("azure-iot-harness test intermediate", root, ca=True)
        leaf = issue(device_id, self._chain[1], ca=False)
        self.service.create_device(device_id, ca_signed=True)
        cert_file, key_file = write_cert(self.folder, device_id, leaf.full_chain_pem, leaf.key_pem)
        return self._creds(device_id, cert_file=cert_file, key_file=key_file)


@pytest.fixture
def azure_iot_devices(azure_iot_emulator: Emulator, azure_iot_service: HubService, tmp_path: Path) -> DeviceFactory:
    """`azure_iot_devices.sas("id")` / `.x509("id")` / `.x509_chain("id")`: new devices and their credentials."""
    return DeviceFactory(azure_iot_emulator, azure_iot_service, tmp_path / "azure-iot-certs")


@pytest.fixture
def azure_iot_device(azure_iot_devices: DeviceFactory) -> DeviceCredentials:
    """A new SAS device named `test-device`."""
    return azure_iot_devices.sas("test-device")


@pytest.fixture
def azure_iot_x509_device(azure_iot_devices: DeviceFactory) -> DeviceCredentials:
    """A new X.509 device named `test-x509-device`, with its certificate and key files."""
    return azure_iot_devices.x509("test-x509-device")
