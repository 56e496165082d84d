"""The certification model: a check (what rule, from where, judged how), a result, its evidence.

A check is a record (DESIGN.md, decision 13): its id, the rule it enforces and the source of
that rule, the feature it exercises (a device that declares the feature unsupported gets SKIP),
its default timeout, and `run`, which drives the emulator (faults, service calls) and judges
the packet trace. The catalogue (`catalogue.py`) lists them in the order they run.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .context import Context


class Result(enum.Enum):
    PASS = "PASS"
    PASS_WITH_WARNINGS = "PASS_WITH_WARNINGS"
    FAIL = "FAIL"
    ERROR = "ERROR"  # the harness could not judge (its own problem, or the emulator lacks a fault)
    SKIP = "SKIP"  # the device declared the feature unsupported, or the run's options leave it out


@dataclass(frozen=True)
class Event:
    """One packet-trace event (the emulator's `/_emulator/trace` NDJSON, one object a line)."""

    seq: int
    time: float
    conn: int | None
    type: str
    direction: str | None = None
    listener: str | None = None
    device_id: str | None = None
    fields: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Event:
        def get(name: str) -> Any:
            return doc.get(name, doc.get(_camel(name)))

        return cls(
            seq=int(get("seq") or 0),
            time=float(get("time") or 0.0),
            conn=get("conn"),
            type=str(get("type") or ""),
            direction=get("direction"),
            listener=get("listener"),
            device_id=get("device_id"),
            fields={_snake(k): v for k, v in doc.items()},
        )

    def get(self, name: str, default: Any = None) -> Any:
        value = self.fields.get(name)
        return default if value is None else value

    @property
    def topic(self) -> str:
        return str(self.get("topic", ""))

    @property
    def packet_id(self) -> int | None:
        return self.get("packet_id")

    def is_in(self, kind: str) -> bool:
        return self.direction == "in" and self.type == kind

    def is_out(self, kind: str) -> bool:
        return self.direction == "out" and self.type == kind

    def line(self, t0: float) -> str:
        """One line of an evidence excerpt: `#seq +seconds cN in|out|event TYPE details`."""
        arrow = {"in": "device->hub", "out": "hub->device"}.get(self.direction or "", "event")
        parts = [f"#{self.seq}", f"+{self.time - t0:.3f}s", f"c{self.conn}" if self.conn is not None else "c-", arrow, self.type]
        for name in _SHOWN:
            value = self.fields.get(name)
            if value is not None and value is not False and value not in ("", []):
                parts.append(f"{name}={_short(value)}")
        return " ".join(parts)


_SHOWN = (
    "listener", "client_id", "username", "keep_alive", "clean_session", "will_topic", "topic", "topics", "packet_id",
    "qos", "dup", "retain", "return_code", "payload_size", "tls", "reason", "kind",
)


def _short(value: Any, limit: int = 160) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.title() for p in rest)


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name)


@dataclass
class Evidence:
    """What decided a result: trace events (shown as an excerpt) and named timings (seconds)."""

    events: list[Event] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def excerpt(self, limit: int = 40) -> list[str]:
        events = sorted({e.seq: e for e in self.events}.values(), key=lambda e: e.seq)
        if not events:
            return []
        t0 = events[0].time
        lines = [e.line(t0) for e in events]
        if len(lines) > limit:
            half = limit // 2
            lines = [*lines[:half], f"… {len(lines) - limit} events left out …", *lines[-half:]]
        return lines


@dataclass
class Verdict:
    """What a check's `run` returns: the result, one sentence why, and the evidence."""

    result: Result
    message: str
    evidence: Evidence = field(default_factory=Evidence)

    @classmethod
    def passed(cls, message: str, evidence: Evidence | None = None, warnings: list[str] | None = None) -> Verdict:
        if warnings:
            return cls(Result.PASS_WITH_WARNINGS, f"{message}; warning: {'; '.join(warnings)}", evidence or Evidence())
        return cls(Result.PASS, message, evidence or Evidence())

    @classmethod
    def failed(cls, message: str, evidence: Evidence | None = None) -> Verdict:
        return cls(Result.FAIL, message, evidence or Evidence())


class CheckError(Exception):
    """Raised inside a check when the harness cannot judge (ERROR), e.g. a missing fault kind."""


class DeviceFailure(Exception):
    """Raised inside a check when the device's behaviour decides it (FAIL) before the verdict."""

    def __init__(self, message: str, evidence: Evidence | None = None) -> None:
        super().__init__(message)
        self.evidence = evidence or Evidence()


@dataclass(frozen=True)
class Check:
    id: str  # `group.name`, stable: reports, profiles and --check use it
    title: str
    rule: str  # what the device must do, one or two sentences
    source: str  # where the rule comes from: an Azure documentation page, an SDK's behaviour
    run: Callable[[Context], Verdict]
    timeout: float = 30.0  # default seconds; profiles and --timeout change it
    feature: str | None = None  # the device feature it exercises (telemetry, c2d, twin, methods, …)
    needs: tuple[str, ...] = ()  # what the run must have: "dps", "faults", "tls-faults", "edge", "methods", "key"
    fault_kinds: tuple[str, ...] = ()  # the emulator's fault kinds it injects
    restart_after: bool = False  # the device may have given up: start it again afterwards
    validated_against_azure: bool = False  # whether the expectation was checked against real Azure

    @property
    def group(self) -> str:
        return self.id.split(".", 1)[0]


@dataclass
class CheckResult:
    check: Check
    mandatory: bool
    result: Result
    message: str
    started: float  # unix time
    elapsed: float  # seconds
    timeout: float
    evidence: Evidence = field(default_factory=Evidence)

    @property
    def blocking(self) -> bool:
        """A failed mandatory check: the run's exit code is non-zero."""
        return self.mandatory and self.result is Result.FAIL

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.check.id,
            "title": self.check.title,
            "group": self.check.group,
            "rule": self.check.rule,
            "source": self.check.source,
            "mandatory": self.mandatory,
            "result": self.result.value,
            "message": self.message,
            "started": self.started,
            "elapsed": round(self.elapsed, 3),
            "timeout": self.timeout,
            "validatedAgainstAzure": self.check.validated_against_azure,
            "evidence": {
                "trace": self.evidence.excerpt(),
                "events": [e.fields for e in sorted(self.evidence.events, key=lambda e: e.seq)],
                "timings": {k: round(v, 3) for k, v in self.evidence.timings.items()},
                "notes": list(self.evidence.notes),
            },
        }
