"""What became of a device's C2D messages (GET /_emulator/c2d/{id}/history, the explorer's view):
acknowledged by the device's PUBACK, expired, purged, each with Azure's feedback status name."""

from __future__ import annotations

from azure_iot_harness.emulator.app import Emulator
from tests.helpers import https, sas_device, wait_for

C2D = "devices/device1/messages/devicebound/#"


def history(emu: Emulator, device: str = "device1") -> list[dict]:
    status, _, body = https(emu, "GET", f"/_emulator/c2d/{device}/history")
    assert status == 200, body
    return body


def test_acknowledged_expired_and_purged_messages_are_told_apart(emulator: Emulator) -> None:
    device = sas_device(emulator)
    assert device.connect() == 0
    device.client.subscribe(C2D, qos=1)
    wait_for(lambda: C2D in emulator.hub.sessions.get(("device1", None)).state.subscriptions)
    https(emulator, "POST", "/_emulator/c2d/device1", {"data": "hello", "messageId": "acked", "ack": "full"})
    wait_for(lambda: history(emulator), what="the PUBACK's outcome")
    device.close()
    [acked] = history(emulator)
    assert (acked["messageId"], acked["outcome"], acked["deliveryCount"], acked["ack"]) == ("acked", "Success", 1, "full")

    https(emulator, "POST", "/_emulator/c2d/device1", {"data": "late", "messageId": "short", "ttlSeconds": 0.2})
    https(emulator, "POST", "/_emulator/c2d/device1", {"data": "kept", "messageId": "waiting"})
    def pending() -> list[dict]:
        return https(emulator, "GET", "/_emulator/c2d/device1")[2]

    wait_for(lambda: len(pending()) == 1, what="the short-lived message to expire", seen=pending)
    [queued] = pending()
    assert (queued["messageId"], queued["state"]) == ("waiting", "queued")
    assert [(m["messageId"], m["outcome"]) for m in history(emulator)] == [("acked", "Success"), ("short", "Expired")]

    assert https(emulator, "DELETE", "/devices/device1/commands?api-version=2021-04-12")[0] == 200
    assert history(emulator)[-1]["messageId"] == "waiting" and history(emulator)[-1]["outcome"] == "Purged"


def test_history_of_an_unknown_device_is_azures_404(emulator: Emulator) -> None:
    status, headers, _ = https(emulator, "GET", "/_emulator/c2d/ghost/history")
    assert status == 404 and headers["iothub-errorcode"] == "DeviceNotFound"
