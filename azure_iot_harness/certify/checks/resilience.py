"""What a device does when things go wrong: dropped connections, refusals, withheld answers, a
second connection of its id, messages and changes that waited while it was away. Each check
injects its fault through the emulator's fault API and judges the trace."""

from __future__ import annotations

import time
import uuid
from functools import partial

from ..context import Context
from ..judge import MAX_KEEP_ALIVE, backoff_problems, storm_problems
from ..model import Check, CheckError, Event, Evidence, Verdict
from .features import PROBE, _reported_value, acked, c2d_delivery, telemetry_events, twin_requests

DA = "AWS IoT Device Advisor test cases (the closest qualification suite)"
D_RETRY = "Azure docs: Manage connectivity and reliable messaging by using Azure IoT Hub device SDKs (retry with exponential back-off and jitter)"
D_MQTT = "Azure docs: Communicate with an IoT hub using the MQTT protocol"
MQTT_SPEC = "MQTT 3.1.1 (OASIS), section 4.4 (message delivery retry)"


def _closes_after(ctx: Context, since: int) -> list[Event]:
    return [e for e in ctx.device_events(since) if e.type == "CLOSE" and e.conn in ctx.device_connections()]


SETTLE = 3.0  # a connection this old has settled: devices reset their back-off after a stable one


def settle(ctx: Context) -> Event:
    """The CONNACK of the device's connection, once that has been up a few seconds."""
    ack = ctx.require_online()
    left = SETTLE - (time.time() - ack.time)
    if left > 0:
        ctx.wait(lambda: None, timeout=left)
    return ack


def drop(ctx: Context, how: str = "close") -> tuple[int, Event]:
    """Drop the device's connection once it has settled; (mark before the drop, the CLOSE event)."""
    ack = settle(ctx)
    mark = ctx.mark()
    ctx.fault("drop", device_id=ctx.device_id, how=how)
    close = ctx.wait(lambda: ctx.closed(ack.conn), timeout=10)
    if close is None:
        raise CheckError("the drop fault did not close the device's connection")
    return mark, close


def _next_attempt(ctx: Context, after: Event) -> Event | None:
    """The first event of the device's next connection (its TLS handshake, or its CONNECT)."""
    later = [e for e in ctx.device_events(after.seq) if e.conn != after.conn and e.type in ("TLS", "CONNECT")]
    return later[0] if later else None


def reconnect_delay(ctx: Context) -> Verdict:
    mark, close = drop(ctx)
    ack = ctx.wait_online(mark)
    nxt = _next_attempt(ctx, close)
    if nxt is None or ack is None:
        return Verdict.failed(f"did not reconnect within {ctx.timeout:g} s of the drop", Evidence([close, *ctx.device_events(close.seq)[:10]]))
    gap = nxt.time - close.time
    evidence = Evidence([close, nxt, ack], {"drop to next attempt": gap})
    if gap < 1.0:
        return Verdict.failed(f"reconnected {gap:.3f} s after the drop (at least 1 s)", evidence)
    return Verdict.passed(f"waited {gap:.2f} s before reconnecting", evidence)


def _attempt_times(ctx: Context, since: int) -> list[Event]:
    return [e for e in ctx.connects(since)]


def backoff(ctx: Context) -> Verdict:
    refusals = 4
    ctx.require_online()
    ctx.fault("refuse-connect", device_id=ctx.device_id, count=refusals, code=3)
    mark, close = drop(ctx)
    ack = ctx.wait(lambda: ctx.online(mark))
    attempts = _attempt_times(ctx, mark)
    evidence = Evidence([close, *attempts, *([ack] if ack else [])])
    intervals = [b.time - a.time for a, b in zip(attempts, attempts[1:])][:refusals]
    for i, gap in enumerate(intervals, 1):
        evidence.timings[f"gap {i}"] = gap
    if ack is None and len(attempts) <= refusals:
        if len(attempts) < 3:
            return Verdict.failed(f"{len(attempts)} attempts within {ctx.timeout:g} s after {refusals} refusals (CONNACK 3): gave up or waits too long",
                                  evidence)
    errors, warnings = backoff_problems(intervals)
    if errors:
        return Verdict.failed("retries after CONNACK 3: " + "; ".join(errors), evidence)
    return Verdict.passed(f"back-off {', '.join(f'{g:.2f}' for g in intervals)} s", evidence, warnings)


def connack_timeout(ctx: Context) -> Verdict:
    ctx.require_online()
    ctx.fault("withhold-connack", device_id=ctx.device_id, count=2)
    mark, close = drop(ctx)
    ack = ctx.wait(lambda: ctx.online(mark))
    attempts = _attempt_times(ctx, mark)
    evidence = Evidence([close, *attempts, *([ack] if ack else [])])
    if ack is None:
        why = "kept waiting for a CONNACK that never came" if len(attempts) <= 2 else "did not connect again"
        return Verdict.failed(f"{why} ({len(attempts)} attempts in {ctx.timeout:g} s)", evidence)
    gaps = [b.time - a.time for a, b in zip(attempts, attempts[1:])]
    for i, gap in enumerate(gaps, 1):
        evidence.timings[f"attempt {i} to {i + 1}"] = gap
    return Verdict.passed(f"gave up on withheld CONNACKs and connected on attempt {len(attempts)}", evidence)


def azure_faults(ctx: Context) -> Verdict:
    """Each kind of Azure's own fault injection, as it looks over MQTT: a disconnect."""
    evidence = Evidence()
    for name in ("KillTcp", "ShutDownMqtt", "InvokeThrottling"):
        settle(ctx)
        start = time.monotonic()
        if name == "InvokeThrottling":  # over MQTT: a disconnect, then CONNACK 3 for a while
            ctx.fault("refuse-connect", device_id=ctx.device_id, count=2, code=3)
        mark, _ = drop(ctx, "reset" if name == "KillTcp" else "close")
        back = ctx.wait(partial(ctx.online, mark))
        if back is None:
            return Verdict.failed(f"{name}: not connected again within the check's {ctx.timeout:g} s", evidence)
        sent = ctx.wait(partial(telemetry_events, ctx, back.seq), timeout=max(ctx.settings.telemetry_interval * 3, 5.0))
        evidence.events += [back, *(sent or [])[:1]]
        evidence.timings[f"{name}: back after"] = time.monotonic() - start
        if not sent and "telemetry" not in ctx.settings.unsupported:
            return Verdict.failed(f"{name}: reconnected but sent no telemetry afterwards", evidence)
    return Verdict.passed("survived KillTcp, ShutDownMqtt and InvokeThrottling", evidence)


class DuplicateDevice:
    """The harness connecting with the device's own credentials, again each time it is pushed
    off: a second device with the same id, as a cloned image or a stuck old process would be."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.peers: set[str] = set()
        self.connects = 0

    def run(self, seconds: float) -> None:
        from ...clients.link import MqttLink
        from ...clients.tls import tls_context
        from ...emulator.protocol import sas
        from ...running.errors import CommandError

        ident = self.ctx.device.identity
        lab = self.ctx.lab
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            password = None
            if ident.key:
                password = sas.generate(f"{lab.hub_host}/devices/{ident.device_id}", ident.key, ttl=3600)
            tls = tls_context(lab.ca_file, str(ident.cert_file) if ident.cert_file else None, str(ident.key_file) if ident.key_file else None)
            link = MqttLink(address=lab.address, port=lab.mqtt_port, client_id=ident.device_id,
                            username=f"{lab.hub_host}/{ident.device_id}/?api-version=2021-04-12", password=password, tls=tls,
                            ca_file=lab.ca_file, keepalive=60)
            try:
                link.connect(timeout=5)
                sock = link.client.socket()
                if sock is not None:
                    host, port = sock.getsockname()[:2]
                    self.peers.add(f"{host}:{port}")
                self.connects += 1
                link.wait_closed(max(0.0, end - time.monotonic()))
            except CommandError:
                pass
            finally:
                link.close()
            time.sleep(0.2)


def takeover(ctx: Context) -> Verdict:
    if not ctx.device.identity.key and not ctx.device.identity.cert_file:
        raise CheckError("the harness has no credentials of the device to take over its connection")
    settle(ctx)
    window = max(4.0, ctx.timeout - 5.0)
    mark = ctx.mark()
    dup = DuplicateDevice(ctx)
    dup.run(window)
    ctx.refresh()
    foreign = {e.conn for e in ctx.since(mark) if e.is_in("CONNECT") and str(e.get("peer", "")) in dup.peers}
    ctx.foreign |= {c for c in foreign if c is not None}
    device_connects = [e for e in ctx.connects(mark) if e.conn not in ctx.foreign]
    limit = max(3, int(window / 2))
    evidence = Evidence(device_connects[:12], {"window": window})
    evidence.notes.append(f"the harness connected {dup.connects} times as {ctx.device_id}")
    if dup.connects == 0:
        raise CheckError("the harness could not connect as the device")
    problems = storm_problems(len(device_connects), window, limit=limit)
    if problems:
        return Verdict.failed(problems[0] + " while another connection of its id kept taking over", evidence)
    return Verdict.passed(f"{len(device_connects)} reconnects in {window:.0f} s while another connection kept taking over", evidence)


def dead_link(ctx: Context) -> Verdict:
    ack = ctx.require_online()
    connect = next((e for e in ctx.connects() if e.conn == ack.conn), None)
    keep_alive = int(connect.get("keep_alive", 60)) if connect else 60
    if keep_alive == 0 or keep_alive > MAX_KEEP_ALIVE:
        why = "0: no pings" if keep_alive == 0 else f"{keep_alive} s: pings come later than Azure's idle cap allows"
        return Verdict.failed(f"keep-alive {why}, so a dead link goes unnoticed", Evidence([connect] if connect else []))
    budget = 2.5 * keep_alive + 10
    ctx.deadline = max(ctx.deadline, time.monotonic() + budget)
    mark = ctx.mark()
    # A link that looks open but answers nothing: no PINGRESP, no PUBACK.
    ctx.fault("withhold-pingresp", device_id=ctx.device_id, duration=budget + 5)
    ctx.fault("withhold-puback", device_id=ctx.device_id, duration=budget + 5)
    start = time.monotonic()
    closed = ctx.wait(lambda: ctx.closed(ack.conn), timeout=budget)
    pings = [e for e in ctx.connection_events(ack.conn) if e.is_in("PINGREQ") and e.seq > mark]
    evidence = Evidence([*(pings[:3]), *([closed] if closed else [])], {"keep-alive": keep_alive})
    if closed is None:
        return Verdict.failed(f"still holding the silent connection after {budget:.0f} s (keep-alive {keep_alive} s)", evidence)
    evidence.timings["silence to close"] = time.monotonic() - start
    if str(closed.get("reason", "")).startswith("fault"):
        raise CheckError(f"the connection closed for another reason: {closed.get('reason')}")
    ctx.end_check()  # the link is healthy again: the device should come back
    back = ctx.wait(lambda: ctx.online(closed.seq), timeout=max(30.0, ctx.remaining()))
    if back is None:
        return Verdict.failed("closed the dead link but did not connect again", evidence)
    return Verdict.passed(f"noticed the dead link and reconnected (keep-alive {keep_alive} s)", evidence)


# ---- nothing lost --------------------------------------------------------------------------


def _unacked(ctx: Context, since: int) -> list[Event]:
    return [e for e in telemetry_events(ctx, since) if e.get("qos", 0) >= 1 and acked(ctx, e) is None]


def resend_dup(ctx: Context) -> Verdict:
    if "telemetry" in ctx.settings.unsupported:
        raise CheckError("needs telemetry")
    ctx.require_online()
    mark = ctx.mark()
    ctx.fault("withhold-puback", device_id=ctx.device_id, count=1)
    held = ctx.wait(lambda: [e for e in _unacked(ctx, mark) if e.seq < ctx.mark()], timeout=max(10.0, ctx.settings.telemetry_interval * 3))
    if not held:
        return Verdict.failed("sent no QoS 1 telemetry to withhold a PUBACK from", Evidence(ctx.device_events(mark)[-5:]))
    first = held[0]
    ctx.fault("drop", device_id=ctx.device_id, how="close")  # MQTT 3.1.1 resends on the next connection

    def resent() -> list[Event]:
        return [e for e in telemetry_events(ctx, first.seq) if e.conn != first.conn or e.get("dup")]

    candidates = ctx.wait(lambda: [e for e in resent() if e.packet_id == first.packet_id and e.get("dup")] or None)
    evidence = Evidence([first, *resent()[:4]])
    if candidates:
        return Verdict.passed(f"resent packet {first.packet_id} with DUP", Evidence([first, candidates[0]],
                                                                                  {"withheld to resend": candidates[0].time - first.time}))
    later = resent()
    same_payload = [e for e in later if _same_message(first, e)]
    if same_payload:
        e = same_payload[0]
        what = "without the DUP flag" if not e.get("dup") else f"with packet id {e.packet_id}, not {first.packet_id}"
        if e.packet_id != first.packet_id and not e.get("dup"):
            what = f"as a new message (packet id {e.packet_id}, no DUP)"
        return Verdict.failed(f"resent the unacknowledged message {what}", evidence)
    return Verdict.failed(f"never resent unacknowledged packet {first.packet_id} within {ctx.timeout:g} s", evidence)


def _same_message(a: Event, b: Event) -> bool:
    if a.get("payload") is not None and b.get("payload") is not None:
        return bool(a.get("payload") == b.get("payload"))
    return a.topic == b.topic and a.get("payload_size") == b.get("payload_size")


def no_loss(ctx: Context) -> Verdict:
    if "telemetry" in ctx.settings.unsupported:
        raise CheckError("needs telemetry")
    ctx.require_online()
    mark = ctx.mark()
    ctx.fault("drop", device_id=ctx.device_id, how="reset", when="publish")
    lost = ctx.wait(lambda: [e for e in telemetry_events(ctx, mark) if acked(ctx, e) is None and ctx.closed(e.conn)])
    if not lost:
        return Verdict.failed("no telemetry was in flight when the connection was cut", Evidence(ctx.device_events(mark)[-5:]))
    cut = lost[0]

    def delivered() -> list[Event]:
        return [e for e in telemetry_events(ctx, cut.seq) if _same_message(cut, e) and acked(ctx, e) is not None]

    again = ctx.wait(lambda: delivered() or None)
    all_sent = telemetry_events(ctx, mark)
    evidence = Evidence([cut, *(again or [])[:2]])
    payloads = [e.get("payload") for e in all_sent if e.get("payload") is not None and acked(ctx, e) is not None]
    duplicates = len(payloads) - len(set(payloads))
    evidence.notes.append(f"{len(all_sent)} telemetry PUBLISH packets after the cut, {duplicates} acknowledged duplicates")
    if not again:
        return Verdict.failed(f"the message in flight when the connection was cut was never delivered (within {ctx.timeout:g} s)", evidence)
    evidence.timings["cut to delivered"] = again[0].time - cut.time
    return Verdict.passed(f"the message in flight was delivered after reconnecting ({duplicates} duplicates)", evidence)


# ---- while away ------------------------------------------------------------------------------


def _away(ctx: Context, seconds: float = 2.0) -> tuple[int, dict, Event]:
    """Keep the device out (CONNACK 3) after dropping it: (mark, the refusal fault, the CLOSE)."""
    ctx.require_online()
    refusal = ctx.fault("refuse-connect", device_id=ctx.device_id, code=3, duration=max(ctx.remaining(), 5.0))
    mark, close = drop(ctx)
    return mark, refusal, close


def c2d_queued(ctx: Context) -> Verdict:
    mark, refusal, close = _away(ctx)
    message_id = ctx.lab.send_c2d(ctx.device_id, "certify queued " + uuid.uuid4().hex, messageId="certify-" + uuid.uuid4().hex[:12])
    ctx.wait(lambda: ctx.connects(close.seq), timeout=5)  # at least one refused attempt, when it comes soon
    ctx.remove_fault(refusal)
    got = ctx.wait(lambda: c2d_delivery(ctx, close.seq, message_id)[1])
    delivery, ack = c2d_delivery(ctx, close.seq, message_id)
    back = ctx.online(close.seq)
    evidence = Evidence([close, *([back] if back else []), *([delivery] if delivery else []), *([ack] if ack else [])])
    if back is None:
        return Verdict.failed("did not connect again", evidence)
    if delivery is None:
        return Verdict.failed("the message queued while it was away was not delivered after it came back (re-subscribed to C2D?)", evidence)
    if not got:
        return Verdict.failed("the queued message was delivered but not acknowledged", evidence)
    return Verdict.passed("received the message queued while it was away", evidence)


def twin_reconcile(ctx: Context) -> Verdict:
    mark, refusal, close = _away(ctx)
    value = int(time.time() * 1000) % 1_000_000_000 + 1
    ctx.lab.patch_desired(ctx.device_id, {PROBE: value}, ctx.module_id)
    ctx.wait(lambda: ctx.connects(close.seq), timeout=5)
    ctx.remove_fault(refusal)
    back = ctx.wait(lambda: ctx.online(close.seq))
    if back is None:
        return Verdict.failed("did not connect again", Evidence([close]))
    done = ctx.wait(lambda: _reported_value(ctx, value)[0], interval=0.25)
    gets = [e for e in twin_requests(ctx, back.seq, "get") if e.conn == back.conn]
    evidence = Evidence([close, back, *gets[:1], *twin_requests(ctx, back.seq, "reported")[:1]])
    if not gets:
        return Verdict.failed("did not GET the twin after reconnecting: it cannot know what changed while it was away", evidence)
    if not done:
        return Verdict.failed(f"did not apply the desired change made while it was away ({PROBE}={value})", evidence)
    return Verdict.passed("GET the twin after reconnecting and applied what changed while it was away", evidence)


def twin_throttled(ctx: Context) -> Verdict:
    ctx.require_online()
    mark = ctx.mark()
    ctx.fault("throttle-twin", device_id=ctx.device_id, count=1)
    value = int(time.time() * 1000) % 1_000_000_000 + 2
    ctx.lab.patch_desired(ctx.device_id, {PROBE: value}, ctx.module_id)
    done = ctx.wait(lambda: _reported_value(ctx, value)[0], interval=0.25)
    throttled = [e for e in ctx.device_events(mark) if e.is_out("PUBLISH") and e.topic.startswith("$iothub/twin/res/429/")]
    evidence = Evidence([*throttled[:1], *twin_requests(ctx, mark, "reported")[:3]])
    if not throttled:
        raise CheckError("the throttle-twin fault did not fire (the device sent no twin request)")
    if not done:
        return Verdict.failed(f"after a 429 on the twin topic the desired change was never acknowledged (within {ctx.timeout:g} s)", evidence)
    return Verdict.passed("retried after 429 and acknowledged the desired change", evidence)


CHECKS = (
    Check("resilience.reconnect-delay", "Waits ≥ 1 s before reconnecting", "After the server drops the connection the device waits at least 1 s before its next attempt.",
          DA + " (Reconnect back-off: wait ≥ 1 s after a server drop); " + D_RETRY, reconnect_delay, timeout=60, fault_kinds=("drop",)),
    Check("telemetry.resend-dup", "Resends an unacknowledged message with DUP", "A QoS 1 PUBLISH whose PUBACK never came is sent again with the DUP flag and the same packet id.",
          MQTT_SPEC + "; " + DA + " (Retry publish)", resend_dup, timeout=60, feature="telemetry", fault_kinds=("withhold-puback", "drop")),
    Check("telemetry.no-loss", "Nothing lost across a forced disconnect", "A message in flight when the connection is cut is delivered after the reconnect (duplicates allowed and counted).",
          D_RETRY + " (at-least-once delivery)", no_loss, timeout=60, feature="telemetry", fault_kinds=("drop",)),
    Check("c2d.queued", "Gets C2D queued while away", "A cloud-to-device message sent while the device was disconnected is delivered and acknowledged after it reconnects.",
          "Azure docs: Send cloud-to-device messages (message lifecycle, queued per device)", c2d_queued, timeout=60, feature="c2d",
          fault_kinds=("refuse-connect", "drop")),
    Check("twin.reconcile", "Reconciles the twin after a reconnect", "After every reconnect the device GETs its twin and applies desired changes made while it was away ($version).",
          "Azure docs: device twins, device reconnection flow", twin_reconcile, timeout=60, feature="twin", fault_kinds=("refuse-connect", "drop")),
    Check("twin.throttled", "Copes with a 429 on the twin", "When the hub answers a twin request with 429 the device retries later and still acknowledges the change.",
          "Azure docs: IoT Hub quotas and throttling; device twins over MQTT (status codes)", twin_throttled, timeout=45, feature="twin",
          fault_kinds=("throttle-twin",)),
    Check("resilience.backoff", "Exponential back-off with jitter", "While CONNECTs are refused (CONNACK 3, server unavailable) the gaps between attempts grow exponentially, with jitter; constant or linear retry fails.",
          D_RETRY + "; " + DA + " (Exponential back-off)", backoff, timeout=120, fault_kinds=("refuse-connect", "drop")),
    Check("resilience.connack-timeout", "Gives up on a withheld CONNACK", "When the hub accepts the connection but never answers CONNECT, the device times out and tries again.",
          DA + " (Connect retries: CONNACK withheld)", connack_timeout, timeout=120, fault_kinds=("withhold-connack", "drop")),
    Check("resilience.dead-link", "Detects a dead link", "When the hub stops answering (no PINGRESP, no PUBACK) the device notices within about twice its keep-alive, closes and reconnects.",
          "MQTT 3.1.1 section 3.1.2.10; " + DA + " (Keep-alive: missing PINGRESP)", dead_link, timeout=60,
          fault_kinds=("withhold-pingresp", "withhold-puback")),
    Check("resilience.azure-faults", "Survives Azure's fault kinds", "After each of Azure's fault-injection kinds over MQTT (KillTcp, ShutDownMqtt, InvokeThrottling) the device reconnects and sends telemetry again.",
          "Azure IoT SDKs' fault injection (AzIoTHub_FaultOperationType) in their end-to-end tests", azure_faults, timeout=120,
          fault_kinds=("drop", "refuse-connect")),
    Check("resilience.takeover", "No reconnect storm on a duplicate id", "While another connection with the device's id keeps taking over, the device's reconnects slow down (no more than one per 2 s on average).",
          D_MQTT + " (one connection per device id: 400027 ConnectionForcefullyClosedOnNewConnection)", takeover, timeout=60, needs=("key",),
          restart_after=True),  # a device that slowed down as asked may be in a long back-off: wait for it, else restart it
)
