"""What a fault makes a service answer: pure functions from a `Fault` to the answer."""

from __future__ import annotations

import datetime as dt

from ...errors import ProvisioningError
from ..protocol import dps as p
from .rules import Fault


def dps_answer(fault: Fault, now: dt.datetime | None = None) -> p.Answer:
    """DPS's answer to a register request under a dps-throttle or dps-error fault."""
    why = f"(fault {fault.id})"
    if fault.kind == "dps-throttle":
        return p.Answer.error(p.dps_error("Throttled", f"too many requests {why}"), fault.params["retryAfter"], now)
    status = fault.params["status"]
    if status == 401:
        err = p.dps_error("Unauthorized", f"not authorized {why}")
    elif status == 500:
        err = p.dps_error("ServerError", f"internal server error {why}")
    else:  # DPS's codes are the status followed by three digits
        err = ProvisioningError(status, status * 1000 + 1, f"request failed with status {status} {why}")
    return p.Answer.error(err, None, now)
