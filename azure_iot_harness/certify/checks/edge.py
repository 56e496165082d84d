"""The edge profile: the device as a leaf of an IoT Edge transparent gateway (the emulator's
edgeHub). It is told the gateway's host name (`GatewayHostName`) and keeps the hub's identity
in its username and token; the gateway's certificate is issued root → edge CA → edgeHub."""

from __future__ import annotations

import ipaddress

from ..context import Context
from ..model import Check, CheckError, Event, Evidence, Verdict
from .features import acked, telemetry_events

D_GATEWAY = "Azure docs: Connect a downstream device to an Azure IoT Edge gateway (GatewayHostName, trusting the edge CA's root)"
D_OFFLINE = "Azure docs: Extend IoT Edge offline capabilities (store and forward; children authenticate at the gateway)"


def _gateway_host(ctx: Context) -> str:
    edge = ctx.lab.edge
    if edge is None:
        raise CheckError("the emulator runs without an edge gateway (serve --edge)")
    return str(edge["host"])


def _is_address(host: str) -> bool:
    """An IP address: TLS sends no server name for it (RFC 6066)."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _direct(ctx: Context, since: int = -1) -> list[Event]:
    """CONNECTs of the device straight to the hub (the edge's own upstream links carry auth-chain)."""
    return [
        e for e in ctx.since(since)
        if e.is_in("CONNECT") and (e.listener or "hub") == "hub" and e.device_id == ctx.device_id
        and "auth-chain=" not in str(e.get("username", ""))
    ]  # fmt: skip


def connects(ctx: Context) -> Verdict:
    gateway = _gateway_host(ctx)
    ack = ctx.wait(lambda: next(iter(ctx.accepted()), None))
    tls = [e for e in ctx.device_events() if e.type == "TLS" and e.listener == "edge"]
    if ack is None:
        refused = [e for e in tls if (e.get("tls") or {}).get("outcome") not in (None, "completed")]
        direct = _direct(ctx)
        if refused:
            alert = (refused[-1].get("tls") or {}).get("alert") or (refused[-1].get("tls") or {}).get("outcome")
            sni = (refused[-1].get("tls") or {}).get("sni")
            why = f"the TLS handshake with the gateway failed ({alert}; server name {sni!r}, the gateway is {gateway!r})"
            return Verdict.failed(why + ": trust the edge CA's root and check the certificate against GatewayHostName",
                                  Evidence(refused[-5:]))
        if direct:
            return Verdict.failed(f"connected to the hub directly, not through the gateway {gateway}", Evidence(direct[:3]))
        connects = ctx.connects()
        why = "CONNECT sent to the gateway, but not accepted" if connects else f"no connection reached the gateway {gateway}"
        return Verdict.failed(f"{why} within {ctx.timeout:g} s", Evidence([*tls[-5:], *connects[-3:]]))
    conn = ctx.connection_events(ack.conn)
    hello = next((e for e in conn if e.type == "TLS"), None)
    sni = (hello.get("tls") or {}).get("sni") if hello is not None else None
    evidence = Evidence(conn[:6])
    if sni and str(sni).lower() != gateway.lower():
        return Verdict.failed(f"TLS server name {sni!r}, not the GatewayHostName {gateway!r}", evidence)
    warnings = [] if sni or _is_address(gateway) else ["no TLS server name (SNI) sent: gateways behind a shared address need it"]
    return Verdict.passed(f"connected through the gateway {gateway} (edge CA chain trusted)", evidence, warnings)


def store_and_forward(ctx: Context) -> Verdict:
    """The gateway loses the hub for a while; the device's messages meanwhile reach the hub after."""
    ctx.require_online()
    outage = max(3.0, min(ctx.settings.telemetry_interval * 3, ctx.remaining() / 3))
    mark = ctx.mark()
    ctx.fault("edge-upstream-suspend", duration=outage)
    ctx.wait(lambda: None, timeout=outage)  # the whole outage: what the device sends meanwhile
    back = ctx.mark()
    offline = [e for e in telemetry_events(ctx, mark) if e.seq <= back]
    evidence = Evidence(offline[:4], {"outage": outage})
    if not offline:
        return Verdict.failed(f"sent no telemetry to the gateway during a {outage:g} s outage of its upstream", evidence)
    stored = [e for e in offline if e.get("qos") == 0 or acked(ctx, e) is not None]
    if not stored:
        return Verdict.failed("the gateway acknowledged none of the messages sent while the hub was away", evidence)

    def at_hub(e: Event) -> Event | None:
        return next((h for h in ctx.since(mark) if (h.listener or "hub") == "hub" and h.is_in("PUBLISH")
                     and h.device_id == ctx.device_id and h.get("payload") is not None and h.get("payload") == e.get("payload")), None)

    arrived = ctx.wait(lambda: all(at_hub(e) for e in stored) or None)
    forwarded = [h for e in stored if (h := at_hub(e)) is not None]
    evidence.events += forwarded[:4]
    if forwarded:
        evidence.timings["first sent to last forwarded"] = forwarded[-1].time - offline[0].time
    if not arrived:
        return Verdict.failed(f"{len(stored) - len(forwarded)} of {len(stored)} messages sent while the hub was away never reached it",
                              evidence)
    return Verdict.passed(f"{len(stored)} messages sent during a {outage:g} s outage were stored by the gateway and reached the hub",
                          evidence)


CHECKS = (
    Check("edge.connects", "Connects through the edge gateway", "Told a GatewayHostName, the device opens TLS to the gateway (that name as the TLS server name, trusting the chain root → edge CA → edgeHub) and is accepted there, not at the hub directly.",
           D_GATEWAY, connects, timeout=60, needs=("edge",)),
    Check("edge.store-and-forward", "Keeps sending while the gateway is offline", "While the gateway has lost the hub, the device keeps publishing to the gateway (which acknowledges and stores); the messages reach the hub once it is back.",
           D_OFFLINE, store_and_forward, timeout=40, feature="telemetry", needs=("edge",), fault_kinds=("edge-upstream-suspend",)),
)
