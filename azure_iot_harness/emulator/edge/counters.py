"""The edge's counters of messages it dropped or would not take, by reason and by sender.

They are what edgeHub reports as its `edgehub_messages_dropped_total{reason, from}` metric, kept
in memory since the edge started and shown at `GET /_emulator/edge`. Reasons used here:
`no_route` and `ttl_expiry` (edgeHub's own names), `hub_refused_device`, `hub_refused_message`,
`twin_patch_refused` (dropped); `store_full` (not taken: the sender got no PUBACK).
"""

from __future__ import annotations

from collections import defaultdict


class EdgeCounters:
    def __init__(self) -> None:
        self._dropped: defaultdict[str, defaultdict[str, int]] = defaultdict(lambda: defaultdict(int))
        self._refused: defaultdict[str, defaultdict[str, int]] = defaultdict(lambda: defaultdict(int))

    def dropped(self, reason: str, sender: str, count: int = 1) -> None:
        """A message the edge had accepted (or would have) and will never deliver."""
        self._dropped[reason][sender] += count

    def refused(self, reason: str, sender: str) -> None:
        """A message the edge did not take (no PUBACK): the sender still has it."""
        self._refused[reason][sender] += 1

    def dropped_total(self, reason: str | None = None) -> int:
        reasons = [reason] if reason is not None else list(self._dropped)
        return sum(sum(self._dropped[r].values()) for r in reasons if r in self._dropped)

    def as_json(self) -> dict:
        return {
            "messagesDropped": {r: dict(by) for r, by in self._dropped.items()},
            "messagesRefused": {r: dict(by) for r, by in self._refused.items()},
        }
