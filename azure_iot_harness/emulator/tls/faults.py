"""Server-side TLS faults on one listener (the device endpoint): which connection is served which
bad certificate, and dedicated ports that serve one until the fault is removed.

- `tls-certificate` (`certificate` = wrong-host | unknown-root | expired | not-yet-valid | huge |
  rotated-root, see `certs.server_faults`): the next `count` connections accepted on the
  listener (None: every one until removed) get that certificate instead of the normal one. A
  TLS handshake starts before the client says who it is, so these apply to whoever connects
  next; to aim at one device, give it a dedicated port instead.
- `tls-max-records`: the huge chain (its Certificate message fills a 16 KB record), and what
  the connection sends afterwards packed per loop turn into records of up to 16 KB.
- `dedicated=True`: a listener of its own on the same host and an ephemeral port, with the same
  handler (MQTT for hub and DPS), serving the fault on every connection until it is removed;
  `count` does not apply.

Contexts are built once per certificate, with the listener's ALPN and versions.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from ...certs.server_faults import FAULT_CERTIFICATES, FaultCertificates
from ...errors import ConfigError
from .context import ServerContext, server_context
from .listener import Served, TlsListener

log = logging.getLogger("azure_iot_harness.tls")

TLS_CERTIFICATE = "tls-certificate"
TLS_MAX_RECORDS = "tls-max-records"
KINDS = (TLS_CERTIFICATE, TLS_MAX_RECORDS)
_ids = itertools.count(1)


@dataclass
class TlsFault:
    """One TLS fault; `count` is how many connections are still to get it (None: no limit)."""

    id: str
    kind: str
    certificate: str
    count: int | None
    served: Served
    listener: TlsListener | None = None  # the dedicated one
    port: int | None = None
    fired: int = 0
    on_fire: Callable[[TlsFault], None] | None = field(default=None, repr=False)

    @property
    def host(self) -> str | None:
        return self.listener.host if self.listener is not None else None

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {"id": self.id, "kind": self.kind, "certificate": self.certificate, "count": self.count, "fired": self.fired}
        if self.listener is not None:
            out.update(host=self.host, port=self.port)
        return out


class TlsFaults:
    """The TLS faults of `listener`; installs itself as the listener's chooser."""

    def __init__(self, listener: TlsListener, certificates: FaultCertificates) -> None:
        if listener.context is None:
            raise ConfigError(f"{listener.name} serves plain TCP: it has no TLS to break")
        self.listener = listener
        self.certificates = certificates
        self._faults: dict[str, TlsFault] = {}
        self._contexts: dict[str, ServerContext] = {}
        self._tasks: set[asyncio.Future[None]] = set()
        self._loop = asyncio.get_running_loop()
        listener.choose = self._choose

    def add(
        self,
        kind: str,
        *,
        certificate: str | None = None,
        count: int | None = 1,
        dedicated: bool = False,
        fault_id: str | None = None,
        on_fire: Callable[[TlsFault], None] | None = None,
    ) -> TlsFault:
        """Serve a fault certificate (from any thread). Raises ConfigError for an unknown kind or
        certificate, or a count below 1."""
        if kind == TLS_MAX_RECORDS:
            certificate, coalesce = "huge", True
        elif kind == TLS_CERTIFICATE:
            if certificate not in FAULT_CERTIFICATES:
                raise ConfigError(f"{TLS_CERTIFICATE} needs certificate= one of: {', '.join(FAULT_CERTIFICATES)}")
            coalesce = False
        else:
            raise ConfigError(f"unknown TLS fault {kind!r}; one of: {', '.join(KINDS)}")
        if count is not None and count < 1:
            raise ConfigError("count must be at least 1 (or None: until removed)")
        assert certificate is not None
        served = Served(self._context(certificate), certificate=certificate, coalesce=coalesce)
        fault = TlsFault(fault_id or f"tls-{next(_ids)}", kind, certificate, None if dedicated else count, served, on_fire=on_fire)
        if dedicated:
            fault.listener = self.listener.sibling(name=f"{self.listener.name} ({fault.id}: {certificate})", context=served.context)
            fault.listener.choose = lambda: self._fire(fault)
            fault.port = fault.listener.bind()
            self._spawn(fault.listener.start())
            log.info("TLS fault %s: serving the %s certificate on %s:%s", fault.id, certificate, fault.host, fault.port)
        self._faults[fault.id] = fault
        return fault

    def list(self) -> list[TlsFault]:
        return list(self._faults.values())

    def remove(self, fault_id: str) -> bool:
        fault = self._faults.pop(fault_id, None)
        if fault is None:
            return False
        if fault.listener is not None:
            fault.listener.stop_accepting()
            self._spawn(fault.listener.stop())
        return True

    def clear(self) -> None:
        for fault_id in list(self._faults):
            self.remove(fault_id)

    async def stop(self) -> None:
        """Remove every fault and wait for the dedicated listeners to close."""
        self.clear()
        if self._tasks:
            await asyncio.wait(list(self._tasks))

    # ---- per accepted connection ---------------------------------------------------------

    def _choose(self) -> Served | None:
        for fault in list(self._faults.values()):  # add() may run on another thread
            if fault.listener is None:
                if fault.count is not None:
                    fault.count -= 1
                    if fault.count <= 0:
                        del self._faults[fault.id]
                return self._fire(fault)
        return None

    def _fire(self, fault: TlsFault) -> Served:
        fault.fired += 1
        if fault.on_fire is not None:
            try:
                fault.on_fire(fault)
            except Exception:
                log.exception("TLS fault %s: error in its on_fire callback", fault.id)
        return fault.served

    def _context(self, certificate: str) -> ServerContext:
        if certificate not in self._contexts:
            chain = self.certificates.get(certificate)
            base = self.listener.context
            assert base is not None
            minimum, maximum = base.versions
            self._contexts[certificate] = server_context(chain.chain_pem, chain.key_pem, alpn=base.alpn, minimum=minimum, maximum=maximum)
        return self._contexts[certificate]

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        try:
            on_loop = asyncio.get_running_loop() is self._loop
        except RuntimeError:
            on_loop = False
        if on_loop:
            task: asyncio.Future[None] = self._loop.create_task(coro)
        else:
            task = asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self._loop), loop=self._loop)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
