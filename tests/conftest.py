"""Shared fixtures: a fresh in-memory emulator on ephemeral ports for each test."""

from __future__ import annotations

import pytest

from azure_iot_harness.emulator.app import Emulator, EmulatorThread


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
