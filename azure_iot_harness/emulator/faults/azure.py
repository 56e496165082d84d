"""Azure's own fault injection: telemetry messages whose application properties ask the hub for
a fault, as the official SDKs' end-to-end tests send them to their test hubs.

`AzIoTHub_FaultOperationType` names the fault, `AzIoTHub_FaultOperationCloseReason` how the
connection ends (`boom`: abruptly, `byebye`: gracefully), `AzIoTHub_FaultOperationDelayInSecs`
(default 1) when, `AzIoTHub_FaultOperationDurationInSecs` (default 5) for how long. Over MQTT
every kind arrives as a disconnect; throttling, quota and auth errors also refuse the device's
CONNECTs for the duration (CONNACK 3, 3 and 5), after which it gets back in. AMQP-only kinds are
answered as unsupported (a log line and a FAULT trace event, nothing else).

`parse` is pure; `schedule` is the thin hook the hub's and the edge's sessions call.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass

from .book import FaultBook, FaultTarget

log = logging.getLogger("azure_iot_harness.faults")

FAULT_TYPE = "AzIoTHub_FaultOperationType"
CLOSE_REASON = "AzIoTHub_FaultOperationCloseReason"
DELAY = "AzIoTHub_FaultOperationDelayInSecs"
DURATION = "AzIoTHub_FaultOperationDurationInSecs"
DEFAULT_DELAY = 1.0
DEFAULT_DURATION = 5.0

# operation → (how the connection ends by default, CONNACK code of CONNECTs during the duration)
_MQTT_OPERATIONS: dict[str, tuple[str, int | None]] = {
    "killtcp": ("reset", None),
    "shutdownmqtt": ("close", None),
    "invokethrottling": ("close", 3),
    "invokemaxmessagequota": ("close", 3),
    "invokeautherror": ("close", 5),
}


@dataclass(frozen=True)
class AzurePlan:
    operation: str  # as sent
    supported: bool  # False: an AMQP-only or unknown kind, answered as unsupported
    how: str = "close"  # "reset" (boom) or "close" (byebye)
    refuse_code: int | None = None  # CONNACK code for the device's CONNECTs during the duration
    delay: float = DEFAULT_DELAY
    duration: float = DEFAULT_DURATION
    note: str = ""  # what was wrong with the request, if anything


def parse(properties: Mapping[str, str | None]) -> AzurePlan | None:
    """The fault a message's application properties ask for, or None when they ask for none."""
    operation = properties.get(FAULT_TYPE)
    if operation is None:
        return None
    notes: list[str] = []
    delay = _seconds(properties.get(DELAY), DEFAULT_DELAY, DELAY, notes)
    duration = _seconds(properties.get(DURATION), DEFAULT_DURATION, DURATION, notes)
    known = _MQTT_OPERATIONS.get(operation.strip().lower())
    if known is None:
        amqp = operation.strip().lower().startswith(("killamqp", "invokeamqp"))
        why = "an AMQP-only fault, not supported over MQTT" if amqp else "not a fault IoT Hub knows"
        return AzurePlan(operation, False, delay=delay, duration=duration, note=why)
    how, refuse = known
    reason = (properties.get(CLOSE_REASON) or "").strip().lower()
    if reason == "boom":
        how = "reset"
    elif reason == "byebye":
        how = "close"
    elif reason:
        notes.append(f"unknown {CLOSE_REASON} {properties.get(CLOSE_REASON)!r}")
    return AzurePlan(operation, True, how, refuse, delay, duration, "; ".join(notes))


def _seconds(raw: str | None, default: float, name: str, notes: list[str]) -> float:
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 3600:
        notes.append(f"{name} {raw!r} is not a number of seconds from 0 to 3600, {default:g} used")
        return default
    return value


def apply(book: FaultBook | None, target: FaultTarget, properties: Mapping[str, str | None]) -> None:
    """The sessions' hook: act on a telemetry message's fault properties, if it has any and the
    emulator honours them."""
    if book is None or not book.azure_properties:
        return
    plan = parse(properties)
    if plan is not None:
        schedule(book, target, plan)


def schedule(book: FaultBook, target: FaultTarget, plan: AzurePlan) -> None:
    """Apply `plan` to the connection that sent the message, after its delay."""
    who = f"{target.device_id}/{target.module_id}" if target.module_id else str(target.device_id)
    rec = target.trace_record
    if not plan.supported:
        log.warning("%s: %s=%s ignored: %s", who, FAULT_TYPE, plan.operation, plan.note)
        if rec is not None:
            rec.event("FAULT", f"{plan.operation}: unsupported ({plan.note})", {"source": "azure-property", "operation": plan.operation})
        return
    log.info(
        "%s: %s=%s in %g s%s%s",
        who,
        FAULT_TYPE,
        plan.operation,
        plan.delay,
        f", CONNECTs refused with CONNACK {plan.refuse_code} for {plan.duration:g} s" if plan.refuse_code is not None else "",
        f" ({plan.note})" if plan.note else "",
    )

    def fire() -> None:
        if plan.refuse_code is not None:
            book.add(
                "refuse-connect",
                device_id=target.device_id,
                module_id=target.module_id,
                duration=plan.duration,
                source="azure-property",
                code=plan.refuse_code,
            )
        if rec is not None:
            rec.event("FAULT", f"{plan.operation} ({FAULT_TYPE})", {"source": "azure-property", "operation": plan.operation, "how": plan.how})
        target.fault_drop(plan.how, f"{plan.operation} ({FAULT_TYPE})")

    asyncio.get_running_loop().call_later(plan.delay, fire)
