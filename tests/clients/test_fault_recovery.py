"""Faults from the command line (`fault add|list|clear`, `trace`) against a running `serve`, and a
real mosquitto bridge reconnecting after the hub drops it."""

from __future__ import annotations

import json

from tests.cli_helpers import run_cli
from tests.clients.helpers import data, publish_plain, ready_port, start, wait_messages
from tests.helpers import wait_for


def _cli_json_lines(*args: str) -> list[dict]:
    res = run_cli(*args)
    assert res.returncode == 0, res.stderr
    return [json.loads(line) for line in res.stdout.splitlines() if line.strip()]


def test_fault_verbs(hub):
    [fault] = _cli_json_lines("fault", "add", "refuse-connect", "--device", "nobody", "--count", "2", "--param", "code=5", *data(hub))
    assert fault["kind"] == "refuse-connect" and fault["params"] == {"code": 5} and fault["count"] == 2
    assert [f["id"] for f in _cli_json_lines("fault", "list", *data(hub))] == [fault["id"]]
    assert run_cli("fault", "clear", fault["id"], *data(hub)).returncode == 0
    assert _cli_json_lines("fault", "list", *data(hub)) == []
    bad = run_cli("fault", "add", "refuse-connect", "--param", "code=42", *data(hub))
    assert bad.returncode == 1 and "code must be one of" in bad.stderr
    assert run_cli("fault", "clear", *data(hub)).returncode == 0


def test_mosquitto_bridge_reconnects_after_a_reset(hub, mosquitto):
    bridge = start(hub, "mosquitto-bridge", "--local-port", "0")
    try:
        port = ready_port(bridge)
        [fault] = _cli_json_lines("fault", "add", "drop", "--device", "device1", "--param", "how=reset", *data(hub))
        assert fault["fired"] == 1

        def connections() -> set[int]:
            events = _cli_json_lines("trace", "--device", "device1", *data(hub))
            return {e["conn"] for e in events if e["type"] == "CONNACK" and e["return_code"] == 0}

        wait_for(lambda: len(connections()) >= 2, timeout=60, what="the bridge connected again")
        publish_plain(port, "local/telemetry/run=after-reset", "x")
        wait_messages(hub.info, "device1", 1, where={"run": "after-reset"})
    finally:
        bridge.terminate()
