"""The device's features, driven from the service side: telemetry, cloud-to-device messages,
the twin (GET, reported, desired), direct methods."""

from __future__ import annotations

import json
import time
import uuid

from ..context import Context
from ..judge import bag_values, is_telemetry, model_id, property_bag, property_bag_problems
from ..model import Check, CheckError, Event, Evidence, Result, Verdict

D_MQTT = "Azure docs: Communicate with an IoT hub using the MQTT protocol"
D_C2D = "Azure docs: Send cloud-to-device messages from an IoT hub (MQTT: PUBACK completes the message)"
D_TWIN = "Azure docs: Understand and use device twins in IoT Hub; MQTT support (twin topics)"
D_PNP = "Azure docs: IoT Plug and Play conventions (writable property acknowledgement ac/av/ad)"
D_METH = "Azure docs: Understand and invoke direct methods from IoT Hub"
PROBE = "certifyProbe"  # the desired property the twin checks change


def telemetry_events(ctx: Context, since: int = -1) -> list[Event]:
    return [e for e in ctx.device_events(since) if e.is_in("PUBLISH") and is_telemetry(e.topic, ctx.device_id, ctx.module_id)]


def acked(ctx: Context, publish: Event) -> Event | None:
    return next(
        (e for e in ctx.connection_events(publish.conn) if e.is_out("PUBACK") and e.packet_id == publish.packet_id and e.seq > publish.seq),
        None,
    )


def telemetry_publishes(ctx: Context) -> Verdict:
    ctx.require_online()
    window = max(ctx.settings.telemetry_interval * 3, 5.0)
    mark = ctx.mark()
    start = time.monotonic()
    first = ctx.wait(lambda: telemetry_events(ctx, mark), timeout=window)
    if not first:
        return Verdict.failed(f"no telemetry within {window:g} s (3× the interval of {ctx.settings.telemetry_interval:g} s)",
                              Evidence(ctx.device_events()[-10:]))
    msg = first[-1]
    warnings = []
    if msg.get("qos") == 0:
        warnings.append("QoS 0: lost messages are not resent (Azure's SDKs send telemetry at QoS 1)")
    else:
        ack = ctx.wait(lambda: acked(ctx, msg), timeout=10)
        if ack is None:
            return Verdict.failed("telemetry sent but never acknowledged", Evidence([msg]))
    return Verdict.passed(f"telemetry on {msg.topic}", Evidence([msg], {"waited": time.monotonic() - start}), warnings)


def property_bags(ctx: Context) -> Verdict:
    msgs = telemetry_events(ctx)
    if not msgs:
        return Verdict.failed("no telemetry to judge")
    warnings: list[str] = []
    for e in msgs:
        bag = property_bag(e.topic, ctx.device_id, ctx.module_id)
        problems = property_bag_problems(bag)
        if problems:
            return Verdict.failed(f"property bag {bag!r}: {'; '.join(problems)}", Evidence([e]))
    last = msgs[-1]
    values = bag_values(property_bag(last.topic, ctx.device_id, ctx.module_id))
    payload = last.get("payload")
    if payload is not None and "$.ct" not in values:
        import base64

        try:
            json.loads(base64.b64decode(payload))
            warnings.append("JSON body without $.ct=application%2Fjson&$.ce=utf-8: IoT Hub routing cannot query it")
        except ValueError:
            pass
    elif "$.ct" in values and "$.ce" not in values:
        warnings.append("$.ct without $.ce")
    return Verdict.passed(f"{len(msgs)} property bags well encoded", Evidence([last]), warnings)


# ---- C2D ----------------------------------------------------------------------------------------


def c2d_delivery(ctx: Context, since: int, message_id: str | None = None) -> tuple[Event | None, Event | None]:
    """The delivery of a C2D message after `since` and the device's PUBACK of it."""
    deliveries = [e for e in ctx.device_events(since) if e.is_out("PUBLISH") and "/messages/devicebound/" in e.topic]
    if message_id is not None:
        deliveries = [e for e in deliveries if message_id in e.topic] or deliveries
    for d in deliveries:
        ack = next((e for e in ctx.connection_events(d.conn) if e.is_in("PUBACK") and e.packet_id == d.packet_id and e.seq > d.seq), None)
        if ack is not None:
            return d, ack
    return (deliveries[-1] if deliveries else None), None


def c2d_receive(ctx: Context) -> Verdict:
    ctx.require_online()
    mark = ctx.mark()
    start = time.monotonic()
    message_id = ctx.lab.send_c2d(ctx.device_id, "certify c2d " + uuid.uuid4().hex, messageId="certify-" + uuid.uuid4().hex[:12])
    got = ctx.wait(lambda: c2d_delivery(ctx, mark, message_id)[1] is not None)
    delivery, ack = c2d_delivery(ctx, mark, message_id)
    if delivery is None:
        return Verdict.failed("the message was never delivered: is the device subscribed to devices/{id}/messages/devicebound/#?",
                              Evidence([e for e in ctx.device_events(mark) if e.is_in("SUBSCRIBE")]))
    if not got or ack is None:
        redelivered = [e for e in ctx.device_events(mark) if e.is_out("PUBLISH") and "/devicebound/" in e.topic]
        return Verdict.failed(f"delivered but never acknowledged (no PUBACK within {ctx.timeout:g} s)", Evidence(redelivered[:4]))
    return Verdict.passed("received and acknowledged", Evidence([delivery, ack], {"send to PUBACK": time.monotonic() - start}))


# ---- twin ---------------------------------------------------------------------------------------


def twin_requests(ctx: Context, since: int, kind: str) -> list[Event]:
    prefix = {"get": "$iothub/twin/GET/", "reported": "$iothub/twin/PATCH/properties/reported/"}[kind]
    return [e for e in ctx.device_events(since) if e.is_in("PUBLISH") and e.topic.startswith(prefix)]


def twin_get(ctx: Context) -> Verdict:
    ack = ctx.require_online()
    connect = next((e for e in reversed(ctx.connects()) if e.conn == ack.conn), ack)
    got = ctx.wait(lambda: [e for e in twin_requests(ctx, -1, "get") if e.conn == ack.conn])
    if not got:
        subs = [e for e in ctx.connection_events(ack.conn) if e.is_in("SUBSCRIBE")]
        return Verdict.failed(f"no twin GET on the connection within {ctx.timeout:g} s of connecting", Evidence([connect, ack, *subs]))
    answer = _twin_answer(ctx, got[0])
    return Verdict.passed("GETs the twin after connecting", Evidence([connect, got[0], *([answer] if answer else [])],
                                                                     {"CONNACK to GET": got[0].time - ack.time}))


def _rid(topic: str) -> str:
    return topic.partition("$rid=")[2].split("&")[0]


def _twin_answer(ctx: Context, request: Event) -> Event | None:
    rid = _rid(request.topic)
    return next((e for e in ctx.connection_events(request.conn) if e.is_out("PUBLISH") and e.topic.startswith("$iothub/twin/res/")
                 and _rid(e.topic) == rid and e.seq > request.seq), None)


def _reported_value(ctx: Context, value: int) -> tuple[bool, dict, list[str]]:
    """Whether the twin's reported properties acknowledge desired `PROBE` = value; the twin; problems."""
    twin = ctx.lab.twin(ctx.device_id, ctx.module_id)
    reported = (twin.get("properties") or {}).get("reported") or {}
    got = reported.get(PROBE)
    problems: list[str] = []
    if isinstance(got, dict) and "value" in got:
        if got.get("value") != value:
            return False, twin, problems
        if not isinstance(got.get("ac"), int) or got.get("av") is None:
            problems.append(f"Plug and Play acknowledgement without ac/av: {got}")
        return True, twin, problems
    if got == value:
        return True, twin, problems
    return False, twin, problems


def twin_desired(ctx: Context) -> Verdict:
    ack = ctx.require_online()
    mark = ctx.mark()
    value = int(time.time() * 1000) % 1_000_000_000
    start = time.monotonic()
    version = ctx.lab.patch_desired(ctx.device_id, {PROBE: value}, ctx.module_id).get("properties", {}).get("desired", {}).get("$version")
    done = ctx.wait(lambda: _reported_value(ctx, value)[0], interval=0.25)
    notify = [e for e in ctx.device_events(mark) if e.is_out("PUBLISH") and e.topic.startswith("$iothub/twin/PATCH/properties/desired/")]
    patches = twin_requests(ctx, mark, "reported")
    evidence = Evidence(notify[:1] + patches[:2] + [a for p in patches[:2] if (a := _twin_answer(ctx, p))])
    if not done:
        if not notify:
            return Verdict.failed("the desired change was never delivered: is the device subscribed to $iothub/twin/PATCH/properties/desired/#?",
                                  evidence)
        return Verdict.failed(f"desired {PROBE}={value} not acknowledged in reported properties within {ctx.timeout:g} s", evidence)
    _, twin, problems = _reported_value(ctx, value)
    evidence.timings["desired PATCH to reported"] = time.monotonic() - start
    connect = next((e for e in ctx.connects() if e.conn == ack.conn), None)
    model = model_id(str(connect.get("username", ""))) if connect else None
    if model and not isinstance((twin["properties"]["reported"]).get(PROBE), dict):
        return Verdict.failed(f"announces model {model} but acknowledges without ac/av/ad (Plug and Play writable property)", evidence)
    if problems:
        return Verdict.failed("; ".join(problems), evidence)
    evidence.notes.append(f"desired $version {version}")
    return Verdict.passed(f"applied desired {PROBE} and reported it back", evidence)


def twin_reported(ctx: Context) -> Verdict:
    def accepted() -> list[tuple[Event, Event]]:
        answers = [(p, _twin_answer(ctx, p)) for p in twin_requests(ctx, -1, "reported")]
        return [(p, a) for p, a in answers if a is not None and a.topic.startswith("$iothub/twin/res/204/")]

    ok = ctx.wait(accepted)
    patches = twin_requests(ctx, -1, "reported")
    if not patches:
        return Verdict.failed("the device never reported properties")
    answers = [(p, _twin_answer(ctx, p)) for p in patches]
    if not ok:
        return Verdict.failed("no reported-properties PATCH was accepted (204)", Evidence([e for pa in answers[:3] for e in pa if e]))
    p, a = ok[0]
    return Verdict.passed(f"{len(ok)} reported PATCH accepted", Evidence([p, a]))


# ---- methods ------------------------------------------------------------------------------------


def _method_events(ctx: Context, since: int, name: str) -> list[Event]:
    out = []
    calls = [e for e in ctx.device_events(since) if e.is_out("PUBLISH") and e.topic.startswith(f"$iothub/methods/POST/{name}/")]
    for call in calls:
        out.append(call)
        rid = _rid(call.topic)
        out += [e for e in ctx.device_events(call.seq) if e.is_in("PUBLISH") and e.topic.startswith("$iothub/methods/res/")
                and (_rid(e.topic) == rid or e.seq < call.seq + 50)][:2]
    return out


def methods_answer(ctx: Context) -> Verdict:
    if not ctx.settings.methods:
        return Verdict(Result.SKIP, "no --method given: name the methods the device implements")
    ctx.require_online()
    evidence = Evidence()
    for name in ctx.settings.methods:
        mark = ctx.mark()
        start = time.monotonic()
        answer = ctx.lab.invoke_method(ctx.device_id, name, {"certify": True}, timeout=max(5, int(ctx.remaining())), module_id=ctx.module_id)
        ctx.refresh()
        evidence.events += _method_events(ctx, mark, name)
        evidence.timings[f"{name}: call to answer"] = time.monotonic() - start
        if answer.status != 200:
            why = "no answer with the request's $rid" if answer.status == 504 else f"the hub answered {answer.status}"
            return Verdict.failed(f"method {name}: {why} ({answer.raw.decode(errors='replace')[:200]})", evidence)
    return Verdict.passed(f"answered {', '.join(ctx.settings.methods)} with the request's $rid", evidence)


def methods_unknown(ctx: Context) -> Verdict:
    ctx.require_online()
    name = "certifyUnknownMethod"
    mark = ctx.mark()
    answer = ctx.lab.invoke_method(ctx.device_id, name, None, timeout=max(5, int(ctx.remaining()) - 1), module_id=ctx.module_id)
    ctx.refresh()
    evidence = Evidence(_method_events(ctx, mark, name))
    if answer.status == 504:
        return Verdict.failed("silence: an unknown method got no answer (the caller waits for the timeout)", evidence)
    if answer.status != 200:
        raise CheckError(f"the hub answered {answer.status} to the method call: {answer.raw[:200]!r}")
    status = (answer.body() or {}).get("status")
    if not isinstance(status, int) or status < 400:
        return Verdict.failed(f"an unknown method answered status {status}: it should be an error (e.g. 404)", evidence)
    return Verdict.passed(f"unknown method answered {status}", evidence)


CHECKS = (
    Check("telemetry.publishes", "Sends telemetry", "The device publishes telemetry to devices/{id}/messages/events/ within 3× its interval, and the hub acknowledges it.",
          D_MQTT + " (Sending device-to-cloud messages)", telemetry_publishes, timeout=30, feature="telemetry"),
    Check("telemetry.property-bag", "Property bag well encoded", "Application and system properties in the topic are percent-encoded key=value pairs; $.ct/$.ce name a JSON body.",
          D_MQTT + "; Azure docs: IoT Hub message format (system properties)", property_bags, timeout=5, feature="telemetry"),
    Check("c2d.receive", "Receives and acknowledges C2D", "A cloud-to-device message is delivered and the device PUBACKs it (which completes it).",
          D_C2D, c2d_receive, timeout=30, feature="c2d"),
    Check("twin.get", "GETs the twin after connecting", "After connecting the device asks for its twin ($iothub/twin/GET) to learn the desired state.",
          D_TWIN, twin_get, timeout=20, feature="twin"),
    Check("twin.desired", "Applies desired properties", f"A desired change ({PROBE}) is applied and acknowledged in reported properties (Plug and Play: value with ac/av/ad).",
          D_TWIN + "; " + D_PNP, twin_desired, timeout=30, feature="twin"),
    Check("twin.reported", "Reported PATCH accepted", "The device reports properties on $iothub/twin/PATCH/properties/reported/ and the hub accepts them (204).",
          D_TWIN, twin_reported, timeout=20, feature="twin"),
    Check("methods.answer", "Answers its direct methods", "Each method named with --method is answered on $iothub/methods/res/{status}/?$rid= with the request's $rid, within the timeout.",
          D_METH, methods_answer, timeout=30, feature="methods", needs=("methods",)),
    Check("methods.unknown", "Refuses an unknown method", "A method the device does not implement gets an error status (e.g. 404), not silence.",
          D_METH + "; Azure SDKs answer 404 for unregistered methods", methods_unknown, timeout=15, feature="methods"),
)
