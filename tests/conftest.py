"""Shared fixtures: a fresh in-memory emulator on ephemeral ports for each test."""

from __future__ import annotations

import pytest

from azure_iot_harness.emulator.app import Emulator, EmulatorThread

# A separate project that uses only the installed plugin; tests/conformance runs it on its own.
collect_ignore = ["example_project"]


@pytest.fixture
def emulator_thread():
    thread = EmulatorThread(in_memory=True, mqtt_port=0, https_port=0)
    thread.start()
    try:
        yield thread
    finally:
        thread.stop()


@pytest.fixture
def emulator(emulator_thread: EmulatorThread) -> Emulator:
    return emulator_thread.emulator


def free_loopback_address() -> str:
    """A random 127.x.y.z: tests that need the standard ports (8883/443, the only ones the Python
    device SDK can use) each get their own address, so parallel workers and runs never collide."""
    import random

    return f"127.{random.randint(1, 254)}.{random.randint(0, 255)}.{random.randint(1, 254)}"


@pytest.fixture
def standard_ports_emulator():
    """An emulator on 8883 and 443 of its own loopback address, whose host name is that address."""
    from azure_iot_harness.errors import ConfigError

    last: Exception | None = None
    for _ in range(20):
        address = free_loopback_address()
        thread = EmulatorThread(in_memory=True, bind=address, host=address, mqtt_port=8883, https_port=443)
        try:
            thread.start()
        except ConfigError as exc:  # address taken by a parallel test: draw another
            last = exc
            continue
        try:
            yield thread.emulator
        finally:
            thread.stop()
        return
    raise RuntimeError(f"no free loopback address for the standard ports: {last}")


@pytest.fixture
def served(tmp_path, monkeypatch):
    """`azure-iot-harness serve` as a subprocess on 8883/443 of a random loopback address, with
    SSL_CERT_FILE and REQUESTS_CA_BUNDLE pointing at its CA, as the README tells users to."""
    from tests.cli_helpers import Serve

    for _ in range(5):
        address = free_loopback_address()
        serve = Serve(tmp_path / "data", "--bind", address, "--host", address, "--mqtt-port", "8883", "--https-port", "443")
        try:
            serve.wait_ready()
        except AssertionError:
            serve.terminate()
            if "in use" in serve.stderr.rest():  # its whole stderr: `seen` holds only lines read
                continue
            raise
        info = serve.info
        monkeypatch.setenv("SSL_CERT_FILE", info["caFile"])
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", info["caFile"])
        try:
            yield serve, info
        finally:
            serve.terminate()
        return
    pytest.fail("no free loopback address for 8883/443")
