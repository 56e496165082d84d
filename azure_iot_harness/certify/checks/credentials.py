"""Credentials over time: a token that expires, a refusal that will not go away."""

from __future__ import annotations

import time

from ..context import Context
from ..judge import sas_problems
from ..model import Check, CheckError, Event, Evidence, Result, Verdict
from .resilience import drop, settle

D_SAS = "Azure docs: Control access to IoT Hub with shared access signatures (token expiry, renewal)"
D_RETRY = "Azure docs: Manage connectivity and reliable messaging (do not retry non-transient errors such as authorization)"


def token_renewal(ctx: Context) -> Verdict:
    if ctx.device.identity.auth != "sas":
        return Verdict(Result.SKIP, "X.509 devices have no token to renew")
    ctx.refresh()
    expired = [e for e in ctx.device_events() if e.type == "CLOSE" and "token expired" in str(e.get("reason", ""))]
    for close in expired:  # what happened after each earlier expiry
        after = [e for e in ctx.device_events(close.seq) if e.is_out("CONNACK")]
        if after and after[0].get("return_code") == 5:
            return Verdict.failed("after the hub closed the connection at token expiry the device came back with the expired token (CONNACK 5)",
                                  Evidence([close, *after[:3]]))
    ack = settle(ctx)
    earlier = [e for e in expired if e.seq < ack.seq]
    mark = ctx.mark()
    ctx.fault("expire-token", device_id=ctx.device_id)
    closed = ctx.wait(lambda: ctx.closed(ack.conn), timeout=10)
    if closed is None:
        raise CheckError("the expire-token fault did not close the connection")
    back = ctx.wait(lambda: ctx.online(mark))
    refused = [e for e in ctx.device_events(mark) if e.is_out("CONNACK") and e.get("return_code") == 5]
    evidence = Evidence([closed, *refused[:3], *([back] if back else [])])
    if refused:
        return Verdict.failed(f"reconnected with an expired token: CONNACK 5 ({len(refused)}×); a fresh token was needed", evidence)
    if back is None:
        return Verdict.failed(f"not connected again within {ctx.timeout:g} s of the hub closing the connection at token expiry", evidence)
    evidence.timings["closed to connected"] = back.time - closed.time
    warnings = []
    if earlier:
        warnings.append(f"the hub closed {len(earlier)} connection(s) at token expiry before: renew before the token expires")
        evidence.events += earlier[:2]
    return Verdict.passed("reconnected with a fresh token when the hub closed the connection at expiry", evidence, warnings)


def permanent_refusal(ctx: Context) -> Verdict:
    window = max(4.0, ctx.timeout - 3.0)
    ctx.require_online()
    ctx.fault("refuse-connect", device_id=ctx.device_id, code=5, duration=window + 2)
    mark, close = drop(ctx)
    start = time.monotonic()
    ctx.wait(lambda: None, timeout=window)  # watch the attempts for the whole window
    attempts = ctx.connects(mark)
    refusals = [e for e in ctx.device_events(mark) if e.is_out("CONNACK") and e.get("return_code") == 5]
    limit = max(3, int(window / 5))
    evidence = Evidence([close, *attempts[:8], *refusals[:2]], {"window": time.monotonic() - start})
    for i, (a, b) in enumerate(zip(attempts, attempts[1:]), 1):
        evidence.timings[f"gap {i}"] = b.time - a.time
    if len(attempts) > limit:
        return Verdict.failed(f"{len(attempts)} attempts in {window:.0f} s after CONNACK 5 (not authorized): hammering (at most {limit})", evidence)
    return Verdict.passed(f"{len(attempts)} attempts in {window:.0f} s after CONNACK 5", evidence)


def sas_token(ctx: Context) -> Verdict:
    """Judged from each CONNECT's token claims (sr, se, skn; the trace never keeps the signature)."""
    if ctx.device.identity.auth != "sas":
        return Verdict(Result.SKIP, "X.509 devices send no SAS token")
    ctx.wait(ctx.connects)
    # A token that runs out within this check's time: wait for it, to see it renewed (or not).
    open_tokens = [float(c.get("sas", {}).get("se", 0)) for c in ctx.connects() if ctx.closed(c.conn) is None and c.get("sas")]
    soon = [se for se in open_tokens if 0 < se - time.time() < ctx.remaining() - 3]
    if soon:
        ctx.wait(lambda: None, timeout=max(soon) - time.time() + 2)
    connects = [c for c in ctx.connects() if c.get("sas")]
    if not connects:
        return Verdict.failed("no CONNECT with a SAS token to judge", Evidence(ctx.device_events()[-5:]))
    gateways = {str(ctx.lab.edge["host"]).lower()} if ctx.settings.gateway and ctx.lab.edge else set()
    warnings: list[str] = []
    for c in connects:
        errors, more = sas_problems(c.get("sas"), c.time, ctx.hub_hosts, ctx.device_id, gateways, ctx.module_id)
        if errors:
            return Verdict.failed(f"SAS token of connection c{c.conn}: {'; '.join(errors)}", Evidence([c, *_answer(ctx, c)]))
        warnings += [w for w in more if w not in warnings]
    lapsed = [(c, close) for c in connects if (close := ctx.closed(c.conn)) is not None
              and close.time >= float(c.get("sas", {}).get("se", 0)) - 0.5 and "expired" in str(close.get("reason", ""))]
    if lapsed:
        c, close = lapsed[0]
        evidence = Evidence([c, close], {"token lifetime at CONNECT": float(c.get("sas")["se"]) - c.time})
        return Verdict.failed(f"kept connection c{c.conn} until its token expired (se={c.get('sas')['se']}): the hub closed it; "
                              "renew the token (reconnect with a new one) before se", evidence)
    lifetimes = sorted(float(c.get("sas")["se"]) - c.time for c in connects)
    evidence = Evidence(connects[:2], {"shortest lifetime at CONNECT": lifetimes[0], "longest": lifetimes[-1]})
    return Verdict.passed(f"{len(connects)} tokens for {ctx.device_id}, none kept past its expiry", evidence, warnings)


def _answer(ctx: Context, connect: Event) -> list[Event]:
    return [e for e in ctx.connection_events(connect.conn) if e.is_out("CONNACK")][:1]


CHECKS = (
    Check("credentials.token-renewal", "Reconnects with a fresh token at expiry", "When the hub closes the connection because the SAS token expired, the device reconnects with a new token (never the expired one).",
          D_SAS, token_renewal, timeout=45, fault_kinds=("expire-token",)),
    Check("credentials.permanent-refusal", "Does not hammer after CONNACK 5", "After a permanent refusal (CONNACK 5, not authorized) the device retries rarely, if at all (no more than one attempt per 5 s).",
          D_RETRY, permanent_refusal, timeout=30, fault_kinds=("refuse-connect", "drop"), restart_after=True),
    Check("credentials.sas-token", "SAS token: audience, expiry, renewal", "Each CONNECT's SAS token names the hub and covers {hub}/devices/{device} (sr), expires in the future and within 30 days (se), and is renewed before it expires: the hub never has to close a connection at its token's expiry.",
          D_SAS + "; Azure IoT SDKs' behaviour (1-hour tokens, renewed before expiry)", sas_token, timeout=10),
)
