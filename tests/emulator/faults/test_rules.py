"""The pure parts of fault injection: kinds and their parameters, matching, the book's counting."""

from __future__ import annotations

import pytest

from azure_iot_harness.emulator.faults import FaultBook, Kind, Param, kinds, register
from azure_iot_harness.emulator.faults.answers import dps_answer
from azure_iot_harness.emulator.faults.rules import Fault, is_live, pick, targets
from azure_iot_harness.errors import FaultError


def test_check_params_converts_fills_defaults_and_refuses():
    drop = kinds.get("drop")
    assert kinds.check_params(drop, {}) == {"how": "reset", "when": "now"}
    assert kinds.check_params(kinds.get("refuse-connect"), {"code": "5"}) == {"code": 5}
    assert kinds.check_params(kinds.get("delay-twin"), {"seconds": "0.5"}) == {"seconds": 0.5}
    for kind, params, message in (
        ("drop", {"how": "explode"}, "how must be one of"),
        ("drop", {"colour": "red"}, "takes no parameter colour"),
        ("refuse-connect", {"code": 2.5}, "code must be an integer"),
        ("refuse-connect", {"code": True}, "code must be an integer"),
        ("delay-twin", {"seconds": -1}, "seconds must be a number of seconds"),
        ("dps-assign-hub", {}, "needs the parameter hostName"),
    ):
        with pytest.raises(FaultError, match=message):
            kinds.check_params(kinds.get(kind), params)
    with pytest.raises(FaultError, match="unknown fault kind"):
        kinds.get("nope")


def test_drop_fires_where_its_when_says():
    drop = kinds.get("drop")
    assert [drop.point_for({"when": w}) for w in ("now", "publish", "subscribe")] == [kinds.NOW, kinds.PUBLISH, kinds.SUBSCRIBE]


def test_targets_and_pick():
    everyone = Fault("f1", "withhold-puback", kinds.PUBLISH)
    device = Fault("f2", "withhold-puback", kinds.PUBLISH, device_id="d1")
    module = Fault("f3", "withhold-puback", kinds.PUBLISH, device_id="d1", module_id="m1")
    assert targets(everyone, "x", None) and targets(everyone, "d1", "m1")
    assert targets(device, "d1", None) and not targets(device, "d1", "m1") and not targets(device, "d2", None)
    assert targets(module, "d1", "m1") and not targets(module, "d1", None)
    assert pick([device, module], kinds.PUBLISH, "d1", "m1", 0) is module
    assert pick([device, module], kinds.SUBSCRIBE, "d1", None, 0) is None


def test_is_live_by_count_and_duration():
    counted = Fault("f1", "drop", kinds.PUBLISH, count=2, fired=1)
    assert is_live(counted, 0)
    counted.fired = 2
    assert not is_live(counted, 0)
    timed = Fault("f2", "drop", kinds.PUBLISH, duration=10, created=100)
    assert is_live(timed, 109.9) and not is_live(timed, 110)
    assert timed.to_json()["expires"] == 110


def test_book_counts_expires_and_disarms():
    now = [1000.0]
    book = FaultBook(clock=lambda: now[0])
    assert not book.armed
    once = book.add("withhold-puback", device_id="d1")
    assert once.count == 1 and book.armed  # neither count nor duration: once
    timed = book.add("withhold-suback", duration=5)
    assert book.take(kinds.PUBLISH, "d2", None) is None  # another device
    assert book.take(kinds.PUBLISH, "d1", None) is once and once.fired == 1
    assert book.take(kinds.PUBLISH, "d1", None) is None  # used up
    assert book.take(kinds.SUBSCRIBE, "anyone", None) is timed
    assert book.take(kinds.SUBSCRIBE, "anyone", None) is timed and timed.fired == 2
    now[0] += 5
    assert book.take(kinds.SUBSCRIBE, "anyone", None) is None
    assert not book.armed and book.list() == []


def test_book_refuses_bad_scopes_and_limits():
    book = FaultBook()
    for kwargs in ({"count": 0}, {"count": 1.5}, {"duration": 0}, {"duration": True}, {"module_id": "m1"}):
        with pytest.raises(FaultError):
            book.add("withhold-puback", **kwargs)


def test_book_acts_now_on_attached_connections():
    class Conn:
        def __init__(self, device_id: str) -> None:
            self.device_id, self.module_id, self.trace_record = device_id, None, None
            self.dropped: list[tuple[str, str]] = []

        def fault_drop(self, how: str, reason: str) -> None:
            self.dropped.append((how, reason))

    book = FaultBook()
    a, b = Conn("d1"), Conn("d2")
    book.attach(a)
    book.attach(b)
    fault = book.add("drop", device_id="d1", how="close")
    assert fault.fired == 1 and a.dropped == [("close", f"fault {fault.id}: drop (close)")] and b.dropped == []
    book.add("expire-token")
    assert a.dropped[-1] == ("close", "SAS token expired") and b.dropped == [("close", "SAS token expired")]
    assert book.list() == []  # acting now is all they do


def test_the_registry_is_open_to_new_kinds():
    register(Kind("test-only-kind", kinds.TLS, "a kind another part adds", (Param("certificate", str, required=True),)))
    try:
        book = FaultBook()
        fault = book.add("test-only-kind", device_id="d1", certificate="expired")
        assert book.take(kinds.TLS, "d1", None) is fault
    finally:
        del kinds.KINDS["test-only-kind"]


def test_dps_answers():
    throttled = dps_answer(Fault("f1", "dps-throttle", kinds.DPS_REGISTER, params={"retryAfter": 7}))
    assert (throttled.status, throttled.retry_after, throttled.body["errorCode"]) == (429, 7, 429001)
    unauthorized = dps_answer(Fault("f2", "dps-error", kinds.DPS_REGISTER, params={"status": 401}))
    assert (unauthorized.status, unauthorized.body["errorCode"]) == (401, 401002)
    unavailable = dps_answer(Fault("f3", "dps-error", kinds.DPS_REGISTER, params={"status": 503}))
    assert (unavailable.status, unavailable.body["errorCode"], unavailable.retry_after) == (503, 503001, None)
