"""Identity changes while connected to the hub, over MQTT and WebSocket: a deleted, disabled or
expired identity loses its connection at once and cannot come back; a parent change leaves a
direct connection alone (scopes matter only through a gateway). The same at the edge is tested
in tests/emulator/edge (issue 13, section 1)."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import pytest

from azure_iot_harness.emulator.app import Emulator
from azure_iot_harness.emulator.protocol import sas
from tests.helpers import wait_for
from tests.robustness.clients import TRANSPORTS, Attempt, Credentials, running

HUB = "localhost"
API = "?api-version=2021-04-12"
_ids = itertools.count(1)


@dataclass(frozen=True)
class Case:
    name: str
    module: bool  # the connected identity is a module of the device
    change: Callable[[Emulator, str], Awaitable[object]]  # (emulator, device id)
    closes: bool  # the live connection must end
    reconnect: int  # CONNACK for the same credentials afterwards
    ttl: int = 3600  # of the connection's SAS token


async def _disable(emu: Emulator, device_id: str) -> None:
    doc = emu.registry.get(device_id)
    await emu.registry.put_device({**doc, "status": "disabled"}, if_match="*")


async def _reparent(emu: Emulator, device_id: str) -> None:
    doc = emu.registry.get(device_id)
    await emu.registry.put_device({**doc, "parentScopes": ["ms-azure-iot-edge://another-gw-1"]}, if_match="*")


async def _nothing(emu: Emulator, device_id: str) -> None:
    """The token's expiry is the change."""


CASES = [
    Case("device deleted", False, lambda emu, d: emu.registry.delete(d), True, 5),
    Case("device disabled", False, _disable, True, 3),
    Case("SAS token expired", False, _nothing, True, 5, ttl=2),
    Case("module deleted", True, lambda emu, d: emu.registry.delete(d, "m"), True, 5),
    Case("device of the module deleted", True, lambda emu, d: emu.registry.delete(d), True, 5),
    Case("device disabled, its module connected", True, _disable, True, 3),
    Case("device moved to another parent (connected directly)", False, _reparent, False, 0),
]


@pytest.fixture(scope="module")
def thread():
    with running() as thread:
        yield thread


@pytest.mark.figures("identity changes while connected, hub")
@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_identity_change_while_connected(thread, transport, case, figures):
    emu = thread.emulator
    device_id = f"life-{next(_ids)}"
    key = sas.new_key()
    auth = {"type": "sas", "symmetricKey": {"primaryKey": key, "secondaryKey": key}}
    thread.call(emu.registry.put_device({"deviceId": device_id, "authentication": auth}, if_match=None))
    identity, resource = device_id, f"{HUB}/devices/{device_id}"
    if case.module:
        thread.call(emu.registry.put_module(device_id, {"moduleId": "m", "authentication": auth}, if_match=None))
        identity, resource = f"{device_id}/m", f"{resource}/modules/m"
    creds = Credentials(identity, f"{HUB}/{identity}/{API}", sas.generate(resource, key, ttl=case.ttl))
    topic = f"devices/{device_id}/" + ("modules/m/" if case.module else "") + "messages/events/"
    with contextlib.closing(Attempt(emu, transport, creds)) as live:
        assert live.code == 0
        figures.tried += 1
        thread.call(_run(case.change(emu, device_id)))
        if case.closes:
            live.until(live.closed.is_set)
            # The registry follows once the emulator has finished closing its side.
            wait_for(lambda: not emu.registry.is_connected(device_id, "m" if case.module else None))
        else:
            mid = live.client.publish(topic, b"still connected", qos=1).mid
            live.until(lambda: mid in live.acked or live.closed.is_set())
            assert mid in live.acked, "the connection should have stayed"
    with contextlib.closing(Attempt(emu, transport, creds)) as again:
        figures.wrongly_accepted += case.reconnect != 0 and again.code == 0
        assert again.code == case.reconnect


async def _run(awaitable: Awaitable[object]) -> None:
    await awaitable
