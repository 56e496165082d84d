"""The event loop an emulator makes for itself: uvloop when installed (a dependency on CPython
outside Windows), asyncio's when asked; never the loop policy of the process that loads it."""

from __future__ import annotations

import asyncio

import pytest
import uvloop

from azure_iot_harness.config import Config
from azure_iot_harness.emulator.app import EmulatorThread
from azure_iot_harness.emulator.loops import loop_factory, loop_name
from azure_iot_harness.errors import ConfigError

from ..helpers import https, sas_device, wait_for


@pytest.mark.parametrize(("choice", "expected"), [("auto", "uvloop"), ("uvloop", "uvloop"), ("asyncio", "asyncio")])
def test_a_device_publishes_and_the_service_reads_on_either_loop(choice: str, expected: str) -> None:
    policy = asyncio.get_event_loop_policy()
    thread = EmulatorThread(Config(in_memory=True, mqtt_port=0, https_port=0, event_loop=choice))
    with thread as emu:
        assert loop_name(thread.loop) == expected
        dev = sas_device(emu)
        assert dev.connect() == 0
        try:
            mids = [dev.publish("devices/device1/messages/events/a=1", f"m{i}") for i in range(50)]
            wait_for(lambda: set(mids) <= set(dev.acked), 10)
        finally:
            dev.close()
        status, _, body = https(emu, "GET", "/_emulator/telemetry?limit=100")
        assert status == 200 and [m["body"] for m in body["messages"]] == [f"m{i}" for i in range(50)]
        assert body["messages"][0]["properties"] == {"a": "1"}
    assert asyncio.get_event_loop_policy() is policy  # the caller's choice stays the caller's


def test_the_loop_factory_never_sets_the_policy() -> None:
    policy = asyncio.get_event_loop_policy()
    loop = loop_factory("auto")()
    try:
        assert isinstance(loop, uvloop.Loop)
        assert asyncio.get_event_loop_policy() is policy and not isinstance(policy, uvloop.EventLoopPolicy)
    finally:
        loop.close()


def test_an_unknown_event_loop_is_refused() -> None:
    with pytest.raises(ConfigError, match="event_loop must be one of auto, uvloop, asyncio"):
        Config(event_loop="trio").validate()
    with pytest.raises(ConfigError, match="event_loop must be one of"):
        loop_factory("trio")
