"""The first connection and IoT Hub's MQTT rules, judged on every connection the device made."""

from __future__ import annotations

from ..context import Context
from ..judge import (
    LOAD_BALANCER_IDLE,
    MAX_KEEP_ALIVE,
    MAX_SUBSCRIPTIONS,
    documented_filter,
    documented_publish,
    username_problems,
)
from ..model import Check, Event, Evidence, Verdict

D_MQTT = "Azure docs: Communicate with an IoT hub using the MQTT protocol (learn.microsoft.com/azure/iot/iot-mqtt-connect-to-iot-hub)"
MQTT_SPEC = "MQTT 3.1.1 (OASIS), section 3.1 / 4.4"
RECOMMENDED_CIPHERS = (
    "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES256-GCM-SHA384", "ECDHE-ECDSA-AES128-SHA256", "ECDHE-ECDSA-AES256-SHA384", "ECDHE-RSA-AES128-SHA256",
    "ECDHE-RSA-AES256-SHA384", "TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256",
)


def connects(ctx: Context) -> Verdict:
    ack = ctx.wait(lambda: next(iter(ctx.accepted()), None))
    events = ctx.device_events()
    if ack is None:
        connects = ctx.connects()
        refused = [e for e in events if e.is_out("CONNACK") and e.get("return_code", 0) != 0]
        why = "no TLS connection reached the hub"
        if refused:
            why = f"the hub refused every CONNECT (CONNACK {refused[-1].get('return_code')})"
        elif connects:
            why = "CONNECT sent, but no connection was accepted"
        elif events:
            why = "connections opened, but no CONNECT arrived"
        return Verdict.failed(f"the device did not connect within {ctx.timeout:g} s: {why}", Evidence(events[-20:]))
    first = events[0] if events else ack
    return Verdict.passed(
        f"connected as {ctx.device_id}", Evidence(ctx.connection_events(ack.conn)[:6], {"first event to CONNACK": ack.time - first.time})
    )


def _wait_connect(ctx: Context) -> list[Event]:
    """The device's CONNECTs so far; run alone, a rule check first waits for the first one."""
    return ctx.wait(ctx.connects) or []


def _device_conn_events(ctx: Context) -> dict[int, list[Event]]:
    out: dict[int, list[Event]] = {}
    for e in ctx.device_events():
        if e.conn is not None and (e.listener or "hub") == ctx.listener:
            out.setdefault(e.conn, []).append(e)
    return out


def connect_first(ctx: Context) -> Verdict:
    ctx.wait(lambda: ctx.device_events())
    bad: list[Event] = []
    judged = 0
    for _conn, events in _device_conn_events(ctx).items():
        tls = [e for e in events if e.type == "TLS"]
        if any((e.get("tls") or {}).get("outcome") == "connect-without-handshake" for e in tls):
            bad += events[:3]
            continue
        packets = [e for e in events if e.direction == "in"]
        if not packets:
            continue
        judged += 1
        if packets[0].type != "CONNECT":
            bad += [packets[0]]
        elif sum(1 for p in packets if p.type == "CONNECT") > 1:
            bad += [p for p in packets if p.type == "CONNECT"][:2]
    if bad:
        return Verdict.failed("a connection did not start with exactly one CONNECT (or sent MQTT without TLS)", Evidence(bad))
    if not judged:
        return Verdict.failed("no MQTT packet from the device to judge", Evidence(ctx.device_events()[-10:]))
    return Verdict.passed(f"each of {judged} connections started with one CONNECT over TLS")


def client_id(ctx: Context) -> Verdict:
    connects = _wait_connect(ctx)
    wrong = [e for e in connects if e.get("client_id") != ctx.client_id]
    if not connects:
        return Verdict.failed("no CONNECT to judge")
    if wrong:
        return Verdict.failed(f"client id {wrong[0].get('client_id')!r} is not {ctx.client_id!r}", Evidence(wrong[:3]))
    return Verdict.passed(f"client id = device id on {len(connects)} CONNECTs", Evidence(connects[:1]))


def username(ctx: Context) -> Verdict:
    connects = _wait_connect(ctx)
    if not connects:
        return Verdict.failed("no CONNECT to judge")
    def hub_of(e: Event) -> str:  # the host it names, when that is one of the hub's (another hub DPS assigned)
        named = str(e.get("username", "")).split("/", 1)[0]
        return named if named.lower() in ctx.hub_hosts else ctx.lab.hub_host

    for e in connects:
        errors, warnings = username_problems(str(e.get("username", "")), hub_of(e), ctx.device_id, ctx.module_id)
        if errors:
            return Verdict.failed(f"username {e.get('username')!r}: {'; '.join(errors)}", Evidence([e]))
    _, warnings = username_problems(str(connects[-1].get("username", "")), hub_of(connects[-1]), ctx.device_id, ctx.module_id)
    return Verdict.passed("username {host}/{device}/?api-version=… on every CONNECT", Evidence(connects[:1]), warnings)


def keep_alive(ctx: Context) -> Verdict:
    connects = _wait_connect(ctx)
    if not connects:
        return Verdict.failed("no CONNECT to judge")
    values = sorted({int(e.get("keep_alive", 0)) for e in connects})
    worst = next((e for e in connects if int(e.get("keep_alive", 0)) in (0,) or int(e.get("keep_alive", 0)) > LOAD_BALANCER_IDLE), None)
    if worst is not None:
        ka = int(worst.get("keep_alive", 0))
        why = "0 turns keep-alive off: a dead link goes unnoticed" if ka == 0 else f"{ka} s is beyond Azure's {LOAD_BALANCER_IDLE} s idle cap"
        return Verdict.failed(f"keep-alive {why}", Evidence([worst]))
    warnings = []
    if values[-1] > MAX_KEEP_ALIVE:
        warnings.append(f"keep-alive {values[-1]} s: above {MAX_KEEP_ALIVE} s the hub's 1.5× wait passes the load balancer's idle cap")
    return Verdict.passed(f"keep-alive {', '.join(map(str, values))} s", Evidence(connects[:1]), warnings)


def no_qos2(ctx: Context) -> Verdict:
    ctx.wait(lambda: [e for e in ctx.device_events() if e.is_in("PUBLISH")])
    events = ctx.device_events()
    qos2 = [e for e in events if e.is_in("PUBLISH") and e.get("qos") == 2]
    if qos2:
        return Verdict.failed("PUBLISH with QoS 2 (IoT Hub closes the connection)", Evidence(qos2[:3] + _closes(ctx, qos2[:1])))
    sub2 = [e for e in events if e.is_in("SUBSCRIBE") and any(len(t) > 1 and t[1] == 2 for t in e.get("topics", []))]
    warnings = ["SUBSCRIBE asks for QoS 2 (IoT Hub grants 1)"] if sub2 else []
    published = sum(1 for e in events if e.is_in("PUBLISH"))
    return Verdict.passed(f"{published} PUBLISH packets, none at QoS 2", Evidence(sub2[:1]), warnings)


def _closes(ctx: Context, events: list[Event]) -> list[Event]:
    return [c for e in events if (c := ctx.closed(e.conn)) is not None]


def subscriptions(ctx: Context) -> Verdict:
    subs = ctx.wait(lambda: [e for e in ctx.device_events() if e.is_in("SUBSCRIBE")]) or []
    if not subs:
        if ctx.settings.unsupported >= {"c2d", "twin", "methods"}:
            return Verdict.passed("no subscriptions (the device declared no C2D, twin or methods)")
        return Verdict.failed("no SUBSCRIBE at all: the device receives no C2D, twin or method traffic")
    per_conn: dict[int | None, set[str]] = {}
    for e in subs:
        for entry in e.get("topics", []):
            topic_filter = entry[0]
            if not documented_filter(topic_filter, ctx.device_id, ctx.module_id):
                return Verdict.failed(f"subscribes to {topic_filter!r}, not a filter IoT Hub documents", Evidence([e, *_closes(ctx, [e])]))
            per_conn.setdefault(e.conn, set()).add(topic_filter)
    most = max(per_conn.values(), key=len)
    if len(most) > MAX_SUBSCRIPTIONS:
        return Verdict.failed(f"{len(most)} subscriptions on one connection (IoT Hub allows {MAX_SUBSCRIPTIONS})", Evidence(subs[:6]))
    return Verdict.passed(f"documented filters only: {', '.join(sorted(most))}", Evidence(subs[:3]))


def topics(ctx: Context) -> Verdict:
    pubs = ctx.wait(lambda: [e for e in ctx.device_events() if e.is_in("PUBLISH")]) or []
    bad = [e for e in pubs if not documented_publish(e.topic, ctx.device_id, ctx.module_id)]
    if bad:
        return Verdict.failed(f"publishes to {bad[0].topic!r}, not a topic IoT Hub documents", Evidence(bad[:3] + _closes(ctx, bad[:1])))
    if not pubs:
        return Verdict.failed("no PUBLISH to judge")
    return Verdict.passed(f"{len(pubs)} PUBLISH packets, all to documented topics")


def will(ctx: Context) -> Verdict:
    connects = _wait_connect(ctx)
    if not connects:
        return Verdict.failed("no CONNECT to judge")
    refused = [e for e in ctx.device_events() if e.type == "CLOSE" and "will message" in str(e.get("reason", ""))]
    if refused:
        return Verdict.failed(f"the hub closed the connection: {refused[0].get('reason')}", Evidence(refused[:1]))
    if not any("will_topic" in e.fields or "will" in e.fields for e in connects):
        return Verdict.passed("no will message the hub refused (the trace does not record will topics)")
    from ..judge import is_telemetry

    for e in connects:
        topic = e.get("will_topic") or (e.get("will") or {}).get("topic")
        if topic and not is_telemetry(str(topic), ctx.device_id, ctx.module_id):
            return Verdict.failed(f"will message on {topic!r}: IoT Hub allows it on the telemetry topic only", Evidence([e]))
    return Verdict.passed("no will message outside the telemetry topic")


def tls_version(ctx: Context) -> Verdict:
    tls = [e for e in ctx.device_events() if e.type == "TLS" and (e.listener or "hub") == ctx.listener]
    if not tls:
        if not ctx.accepted():
            return Verdict.failed("no TLS handshake with the hub completed (the endpoint speaks TLS 1.2 and 1.3 only)")
        return Verdict.passed("TLS 1.2+ (the endpoint accepts nothing older)", warnings=["the trace has no TLS events: version not recorded"])
    done = [e for e in tls if (e.get("tls") or {}).get("outcome") == "completed"]
    old = [e for e in done if str((e.get("tls") or {}).get("version")) not in ("TLSv1.2", "TLSv1.3")]
    if old:
        return Verdict.failed(f"negotiated {(old[0].get('tls') or {}).get('version')}", Evidence(old[:2]))
    if not done:
        return Verdict.failed("no TLS handshake completed", Evidence(tls[-5:]))
    versions = sorted({str((e.get("tls") or {}).get("version")) for e in done})
    return Verdict.passed(f"{', '.join(versions)} on {len(done)} handshakes", Evidence(done[:1]))


def tls_cipher(ctx: Context) -> Verdict:
    done = [e for e in ctx.device_events() if e.type == "TLS" and (e.get("tls") or {}).get("outcome") == "completed"]
    if not done:
        return Verdict.passed("not judged", warnings=["the trace has no completed TLS handshake with a cipher"])
    ciphers = sorted({str((e.get("tls") or {}).get("cipher")) for e in done})
    bad = [c for c in ciphers if c not in RECOMMENDED_CIPHERS]
    if bad:
        return Verdict.failed(f"negotiated {', '.join(bad)}: not among the suites Azure accepts", Evidence(done[:1]))
    return Verdict.passed(f"negotiated {', '.join(ciphers)}", Evidence(done[:1]))


CHECKS = (
    Check("connect.connects", "Connects to the hub", "The device opens a TLS connection to the hub and is accepted (CONNACK 0) with the credentials it was given.",
          D_MQTT, connects, timeout=60),
    Check("mqtt.connect-first", "CONNECT first, over TLS", "Every connection starts with the TLS handshake, then exactly one CONNECT before any other packet.",
          MQTT_SPEC + "; " + D_MQTT, connect_first, timeout=5),
    Check("mqtt.client-id", "Client id is the device id", "The CONNECT client identifier is the device id (device/module for modules).",
          D_MQTT, client_id, timeout=5),
    Check("credentials.username", "Well-formed username", "The CONNECT username is {hub}/{device}/?api-version=…, with a model-id that is a DTMI when the device announces one.",
          D_MQTT + "; Azure docs: IoT Plug and Play device developer guide", username, timeout=5),
    Check("mqtt.keep-alive", "Keep-alive within IoT Hub's limits", "Keep-alive is on (not 0) and at most 1177 s, so that 1.5× it stays within Azure's 1767 s idle timeout.",
          D_MQTT + " (Default keep-alive timeout)", keep_alive, timeout=5),
    Check("mqtt.no-qos2", "Never QoS 2", "The device never publishes at QoS 2 (IoT Hub closes the connection) and should not ask for it in SUBSCRIBE.",
          D_MQTT + " (QoS 2 is not supported)", no_qos2, timeout=5),
    Check("mqtt.subscriptions", "Documented subscriptions only", "Only the filters IoT Hub documents (C2D, twin responses, desired properties, methods), at most 5 per connection; never `#`.",
          D_MQTT, subscriptions, timeout=5),
    Check("mqtt.topics", "Documented topics only", "Every PUBLISH goes to a documented topic: telemetry of this device, twin GET/PATCH, method responses.",
          D_MQTT, topics, timeout=5),
    Check("mqtt.will", "Will message only on the telemetry topic", "A will message, if any, uses the device's telemetry topic.",
          D_MQTT + " (Will message)", will, timeout=5),
    Check("tls.version", "TLS 1.2 or later", "The device negotiates TLS 1.2 or 1.3.",
          "Azure docs: TLS support in IoT Hub", tls_version, timeout=5),
    Check("tls.cipher", "A cipher suite Azure accepts", "The negotiated cipher suite is one IoT Hub accepts (ECDHE with AES-GCM or AES-CBC-SHA256/384).",
          "Azure docs: TLS support in IoT Hub (Cipher suites)", tls_cipher, timeout=5),
)
