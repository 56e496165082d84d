"""The Device Provisioning Service (with --provisioning dps): registering, waiting as told,
backing off, provisioning again when the hub no longer knows the device, and following DPS to
another hub."""

from __future__ import annotations

import ipaddress
import random
import re

from ..context import Context
from ..judge import API_VERSION_RE, backoff_problems
from ..model import Check, CheckError, Event, Evidence, Verdict
from .resilience import settle

D_DPS = "Azure docs: Device Provisioning Service over MQTT (learn.microsoft.com/azure/iot-dps/iot-dps-mqtt-support)"
D_DPS_RETRY = "Azure docs: DPS device best practices (retry-after, exponential back-off, re-provisioning)"


def dps_events(ctx: Context, since: int = -1) -> list[Event]:
    return [e for e in ctx.device_events(since) if e.listener == "dps"]


def _requests(ctx: Context, since: int) -> list[Event]:
    return [e for e in dps_events(ctx, since) if e.is_in("PUBLISH") and e.topic.startswith("$dps/registrations/")]


def _answers(ctx: Context, since: int) -> list[Event]:
    return [e for e in dps_events(ctx, since) if e.is_out("PUBLISH") and e.topic.startswith("$dps/registrations/res/")]


def _retry_after(topic: str) -> float | None:
    m = re.search(r"[?&]retry-after=(\d+)", topic)
    return float(m.group(1)) if m else None


def registers(ctx: Context) -> Verdict:
    ack = ctx.require_online()
    events = dps_events(ctx)
    connects = [e for e in events if e.is_in("CONNECT")]
    if not connects:
        return Verdict.passed("provisioned (not over MQTT: the trace shows no DPS connection)", Evidence([ack]),
                              ["DPS over HTTPS is not traced; username and polling not judged"])
    scope, reg = ctx.lab.id_scope, ctx.device_id
    prefix = f"{scope}/registrations/{reg}/api-version="

    def well_formed(username: str) -> bool:
        return username.startswith(prefix) and bool(API_VERSION_RE.match(username[len(prefix):].split("&")[0]))

    bad = [e for e in connects if not well_formed(str(e.get("username", "")))]
    if bad:
        return Verdict.failed(f"DPS username {bad[0].get('username')!r}: want {prefix}YYYY-MM-DD…", Evidence(bad[:1]))
    if any(e.get("client_id") != reg for e in connects):
        return Verdict.failed("DPS client id is not the registration id", Evidence(connects[:1]))
    requests = _requests(ctx, -1)
    if not any("iotdps-register" in e.topic for e in requests):
        return Verdict.failed("no register request ($dps/registrations/PUT/iotdps-register/)", Evidence(events[:8]))
    return Verdict.passed("registered over MQTT with the right username, then connected to the assigned hub",
                          Evidence([connects[0], *requests[:3], ack]))


def _gaps_after_answers(ctx: Context, since: int) -> list[tuple[Event, Event, float]]:
    """(answer with retry-after, the next request, retry-after seconds) pairs."""
    out = []
    requests = _requests(ctx, since)
    for ans in _answers(ctx, since):
        wait = _retry_after(ans.topic)
        if wait is None:
            continue
        nxt = next((r for r in requests if r.seq > ans.seq), None)
        if nxt is not None:
            out.append((ans, nxt, wait))
    return out


def retry_after(ctx: Context) -> Verdict:
    mark = ctx.mark()
    ctx.fault("dps-throttle", device_id=ctx.device_id, count=1, retryAfter=3)
    ctx.device.restart()
    back = ctx.wait(lambda: ctx.online(mark))
    pairs = _gaps_after_answers(ctx, mark)
    evidence = Evidence([e for a, n, _ in pairs for e in (a, n)])
    for i, (a, n, wait) in enumerate(pairs, 1):
        evidence.timings[f"answer {i}: retry-after {wait:g}, waited"] = n.time - a.time
    early = [(a, n, w) for a, n, w in pairs if n.time - a.time < w - 0.2]
    if early:
        a, n, w = early[0]
        return Verdict.failed(f"asked again {n.time - a.time:.2f} s after an answer with retry-after {w:g}", evidence)
    if back is None:
        return Verdict.failed("did not register and connect after a throttled registration", evidence)
    if not pairs:
        return Verdict.passed("provisioned (no MQTT answer with retry-after seen)", evidence, ["the trace shows no DPS answer with retry-after"])
    return Verdict.passed(f"waited as told after {len(pairs)} answers with retry-after", evidence)


def backoff_5xx(ctx: Context) -> Verdict:
    mark = ctx.mark()
    ctx.fault("dps-error", device_id=ctx.device_id, count=4, status=503)  # 4 gaps: enough to tell exponential from linear
    ctx.device.restart()
    back = ctx.wait(lambda: ctx.online(mark))
    registers = [e for e in _requests(ctx, mark) if "iotdps-register" in e.topic]
    gaps = [b.time - a.time for a, b in zip(registers, registers[1:])][:4]
    evidence = Evidence([*registers[:5], *[a for a in _answers(ctx, mark) if "/res/5" in a.topic][:3]])
    for i, g in enumerate(gaps, 1):
        evidence.timings[f"gap {i}"] = g
    if len(registers) < 5 and back is None:
        return Verdict.failed(f"{len(registers)} register attempts after 503s within {ctx.timeout:g} s", evidence)
    errors, warnings = backoff_problems(gaps)
    if errors:
        return Verdict.failed("register retries after 503: " + "; ".join(errors), evidence)
    return Verdict.passed(f"backed off after 503: {', '.join(f'{g:.2f}' for g in gaps)} s", evidence, warnings)


def reprovision(ctx: Context) -> Verdict:
    ack = settle(ctx)
    mark = ctx.mark()
    ctx.lab.delete_device(ctx.device_id)  # the hub no longer knows it: CONNACK 5 until DPS assigns it again
    if ctx.wait(lambda: ctx.closed(ack.conn), timeout=2) is None:  # deleting closes it in Azure; else drop it
        ctx.fault("drop", device_id=ctx.device_id, how="close")
    close = ctx.wait(lambda: ctx.closed(ack.conn), timeout=10)
    if close is None:
        raise CheckError("the device's connection stayed open after it was deleted and dropped")
    back = ctx.wait(lambda: ctx.online(mark))
    again = [e for e in dps_events(ctx, mark) if e.is_in("CONNECT")]
    refused = [e for e in ctx.device_events(mark) if e.is_out("CONNACK") and e.get("return_code") == 5 and e.listener == "hub"]
    evidence = Evidence([close, *refused[:2], *again[:1], *([back] if back else [])])
    if not again:
        return Verdict.failed(f"did not provision again after the hub refused it ({len(refused)} refusals)", evidence)
    if back is None:
        return Verdict.failed("provisioned again but did not connect to the hub", evidence)
    return Verdict.passed("provisioned again after the hub no longer knew it, then connected", evidence)


def _other_hub(ctx: Context) -> str:
    """A name for "another hub": a second loopback address, where the emulator's hub also listens
    (the dps-assign-hub fault) with a certificate for it."""
    try:
        loopback = ipaddress.ip_address(ctx.lab.address).is_loopback
    except ValueError:
        loopback = ctx.lab.address == "localhost"
    if not loopback:
        raise CheckError("a change of assigned hub needs the emulator on a loopback address (the other hub is a second one)")
    taken = {ctx.lab.address, str((ctx.lab.edge or {}).get("host"))}
    while True:
        other = f"127.{random.randint(1, 254)}.{random.randint(0, 255)}.{random.randint(1, 254)}"
        if other not in taken:
            return other


def _host_named(e: Event) -> str:
    """The hub host a CONNECT names: its username's first part, else its SAS token's audience."""
    named = str(e.get("username", "")).split("/", 1)[0]
    if not named:
        named = str((e.get("sas") or {}).get("sr", "")).split("/", 1)[0]
    return named.lower()


def follows_hub(ctx: Context) -> Verdict:
    ack = settle(ctx)
    old = _host_named(next((e for e in ctx.connection_events(ack.conn) if e.is_in("CONNECT")), ack)) or ctx.lab.hub_host.lower()
    other = _other_hub(ctx)
    fault = ctx.fault("dps-assign-hub", device_id=ctx.device_id, hostName=other)
    ctx.hub_hosts.add(other)
    mark = ctx.mark()
    ctx.lab.delete_device(ctx.device_id)  # the old hub no longer knows it (a migration): it must ask DPS again
    if ctx.wait(lambda: ctx.closed(ack.conn), timeout=2) is None:
        ctx.fault("drop", device_id=ctx.device_id, how="close")
    close = ctx.wait(lambda: ctx.closed(ack.conn), timeout=10)
    if close is None:
        raise CheckError("the device's connection stayed open after it was deleted and dropped")

    def on_new_hub() -> Event | None:
        return next((a for a in ctx.accepted(mark) if any(_host_named(c) == other for c in ctx.connection_events(a.conn) if c.is_in("CONNECT"))), None)

    def stale() -> list[Event]:  # accepted at a hub other than the assigned one, after registering again
        dps = [e for e in dps_events(ctx, mark) if e.is_in("CONNECT")]
        return [a for a in ctx.accepted(dps[0].seq) if not any(_host_named(c) == other for c in ctx.connection_events(a.conn)
                                                                if c.is_in("CONNECT"))] if dps else []

    ctx.wait(lambda: on_new_hub() or stale())
    back = on_new_hub()
    again = [e for e in dps_events(ctx, mark) if e.is_in("CONNECT")]
    answers = [e for e in _answers(ctx, mark) if "/res/200/" in e.topic]
    later = [e for e in ctx.connects(mark) if not again or e.seq > again[0].seq]
    evidence = Evidence([close, *again[:1], *answers[:1], *later[:3], *([back] if back else [])])
    ctx.remove_fault(fault)
    try:
        if not again:
            return Verdict.failed("did not provision again after the hub it knew refused it", evidence)
        if back is not None:
            evidence.timings["closed to connected to the new hub"] = back.time - close.time
            return Verdict.passed(f"provisioned again and connected to the newly assigned hub {other} (was {old})", evidence)
        cached = [e for e in later if _host_named(e) != other]
        if cached:
            return Verdict.failed(f"DPS assigned {other}, but the device connected to {_host_named(cached[0])} (its cached hub)", evidence)
        return Verdict.failed(f"DPS assigned {other}, but the device did not connect there within {ctx.timeout:g} s", evidence)
    finally:
        _back_home(ctx)


def _back_home(ctx: Context) -> None:
    """Later checks expect the device on the run's hub: a fresh start provisions it there."""
    if not ctx.device.external:
        mark = ctx.mark()
        ctx.device.restart()
        ctx.wait(lambda: ctx.online(mark), timeout=30)


CHECKS = (
    Check("provisioning.registers", "Registers with DPS", "The device registers with DPS (username {scope}/registrations/{id}/api-version=…, client id = registration id) and connects to the hub it is assigned to.",
          D_DPS, registers, timeout=60, needs=("dps",)),
    Check("provisioning.retry-after", "Waits retry-after", "After a DPS answer with retry-after (202 assigning, 429 throttled) the device waits at least that long.",
          D_DPS + "; " + D_DPS_RETRY, retry_after, timeout=90, needs=("dps", "restart"), fault_kinds=("dps-throttle",)),
    Check("provisioning.backoff", "Backs off on DPS 5xx", "Repeated 5xx answers from DPS are retried with growing gaps.",
          D_DPS_RETRY, backoff_5xx, timeout=90, needs=("dps", "restart"), fault_kinds=("dps-error",)),
    Check("provisioning.reprovision", "Provisions again when the hub does not know it", "When the assigned hub refuses the device (not authorized, device not found) it registers with DPS again.",
          D_DPS_RETRY, reprovision, timeout=90, needs=("dps",), fault_kinds=("drop",), restart_after=True),
    Check("provisioning.follows-hub", "Follows a change of assigned hub", "When DPS assigns the device to another hub (after its hub refused it), the device connects to the hub DPS named, not to the one it had cached.",
          D_DPS_RETRY + "; Azure docs: How to reprovision devices (hub migration)", follows_hub, timeout=90, needs=("dps",),
          fault_kinds=("dps-assign-hub", "drop")),
)
