"""Credentials over time: a token that expires, a refusal that will not go away."""

from __future__ import annotations

import time

from ..context import Context
from ..model import Check, CheckError, Evidence, Verdict
from .resilience import drop, settle

D_SAS = "Azure docs: Control access to IoT Hub with shared access signatures (token expiry, renewal)"
D_RETRY = "Azure docs: Manage connectivity and reliable messaging (do not retry non-transient errors such as authorization)"


def token_renewal(ctx: Context) -> Verdict:
    if ctx.device.identity.auth != "sas":
        from ..model import Result

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


CHECKS = (
    Check("credentials.token-renewal", "Reconnects with a fresh token at expiry", "When the hub closes the connection because the SAS token expired, the device reconnects with a new token (never the expired one).",
          D_SAS, token_renewal, timeout=45, fault_kinds=("expire-token",)),
    Check("credentials.permanent-refusal", "Does not hammer after CONNACK 5", "After a permanent refusal (CONNACK 5, not authorized) the device retries rarely, if at all (no more than one attempt per 5 s).",
          D_RETRY, permanent_refusal, timeout=30, fault_kinds=("refuse-connect", "drop"), restart_after=True),
)
