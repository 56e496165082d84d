"""The long run (`--duration`): outages at random intervals, then the accounting of every
telemetry message — sent, acknowledged, resent, duplicated, lost."""

from __future__ import annotations

import random
import time
from functools import partial

from ..context import Context
from ..model import Check, Evidence, Verdict
from .features import acked, telemetry_events

DA = "AWS IoT Device Advisor long-duration test (intermittent outages)"


def soak(ctx: Context) -> Verdict:
    duration = ctx.settings.duration
    if duration <= 0:
        from ..model import Result

        return Verdict(Result.SKIP, "no --duration given")
    ctx.deadline = max(ctx.deadline, time.monotonic() + duration + 120)
    ctx.require_online()
    mark = ctx.mark()
    end = time.monotonic() + duration
    rng = random.Random()
    outages: list[str] = []
    while time.monotonic() < end:
        ctx.wait(lambda: None, timeout=min(rng.uniform(duration / 10, duration / 4), max(0.0, end - time.monotonic())))
        if time.monotonic() >= end:
            break
        # One outage at a time: the next only once the device is back from the last.
        ack = ctx.wait_online(timeout=max(0.0, end - time.monotonic()))
        if ack is None:
            break
        kind = rng.choice(("reset", "close", "refuse"))
        seconds = rng.uniform(1, max(2.0, duration / 20))
        # Each outage cuts the connection as a message arrives: that message is in flight.
        if kind == "refuse":
            ctx.fault("refuse-connect", device_id=ctx.device_id, code=3, duration=seconds)
            ctx.fault("drop", device_id=ctx.device_id, how="close", when="publish")
        else:
            ctx.fault("drop", device_id=ctx.device_id, how=kind, when="publish")
        ctx.wait(partial(ctx.closed, ack.conn), timeout=max(0.0, end - time.monotonic()))
        outages.append(f"{kind} {seconds:.0f} s" if kind == "refuse" else kind)
    back = ctx.wait_online(timeout=60)
    ctx.wait(lambda: None, timeout=ctx.settings.telemetry_interval * 2)
    sent = telemetry_events(ctx, mark)
    accepted = [e for e in sent if acked(ctx, e) is not None]
    key = (lambda e: e.get("payload")) if all(e.get("payload") is not None for e in sent) else None
    unacked = [e for e in sent if acked(ctx, e) is None]
    lost = []
    if key is not None:
        delivered = {key(e) for e in accepted}
        lost = [e for e in unacked if key(e) not in delivered]
        duplicates = len(accepted) - len(delivered)
    else:
        duplicates = sum(1 for e in accepted if e.get("dup"))
    evidence = Evidence(lost[:10], {"duration": duration})
    evidence.notes += [
        f"outages: {', '.join(outages) or 'none'}",
        f"telemetry PUBLISH packets {len(sent)}, acknowledged {len(accepted)}, unacknowledged {len(unacked)}, "
        f"duplicates acknowledged {duplicates}, lost {len(lost)}",
    ]
    if back is None:
        return Verdict.failed("not connected at the end of the long run", evidence)
    if lost:
        return Verdict.failed(f"{len(lost)} messages in flight during outages were never delivered", evidence)
    return Verdict.passed(f"{len(outages)} outages, {len(accepted)} messages acknowledged, {duplicates} duplicates, none lost", evidence)


CHECKS = (
    Check("soak.accounting", "Long run: nothing lost across outages", "Over --duration seconds with outages at random intervals (resets, closes, refusals) every message in flight is delivered (duplicates allowed and counted).",
          DA + "; Azure docs: reliable messaging", soak, timeout=120, feature="telemetry", needs=("duration",),
          fault_kinds=("drop", "refuse-connect")),
)
