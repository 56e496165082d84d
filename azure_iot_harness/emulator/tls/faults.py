"""Server-side TLS faults on the device endpoint: which connection is served which bad
certificate, and ports of their own that serve one until the fault is removed.

Two fault kinds, registered in the FaultBook's kinds (so HTTP, Python and the CLI know them):

- `tls-certificate` (param `certificate` = wrong-host | unknown-root | expired | not-yet-valid |
  huge | rotated-root, see `certs.server_faults`): the next `count` connections accepted on the
  device endpoint (or every one for `duration` seconds) get that certificate instead of the
  normal one. A TLS handshake comes before the client says who it is, so such a fault applies
  to whoever connects next and cannot name a device;
- `tls-max-records`: a handshake in maximum-size records — the huge chain, whose Certificate
  message fills a whole 16 KB record. (Answers need nothing more: the MQTT layer hands what one
  loop turn produces to OpenSSL in one write, which it cuts into records of up to 16 KB.)

With param `port="dedicated"` (a device may be named) the fault gets a listener of its own on
the endpoint's host and an ephemeral port, with the same handler (MQTT for hub and DPS), and
serves its certificate on every connection there until it is removed or its duration ends; its
JSON gains `host` and `port`, and `count` does not apply.

Contexts are built once per certificate, with the endpoint's ALPN and TLS versions.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import Coroutine
from typing import Any

from ...certs.server_faults import FAULT_CERTIFICATES, FaultCertificates
from ...errors import FaultError
from ..faults import Fault, FaultBook, Kind, Param, register
from ..faults.kinds import TLS
from .context import ServerContext, server_context
from .listener import Served, TlsListener

log = logging.getLogger("azure_iot_harness.tls")

TLS_CERTIFICATE = "tls-certificate"
TLS_MAX_RECORDS = "tls-max-records"
# Where faults with a port of their own fire: never at the shared endpoint's accept.
TLS_DEDICATED = "tls-dedicated"
DEDICATED = "dedicated"


def _point(params: dict) -> str:
    return TLS_DEDICATED if params.get("port") == DEDICATED else TLS


_PORT = Param("port", str, None, (DEDICATED,))
register(
    Kind(
        TLS_CERTIFICATE,
        TLS,
        "a server the device must not trust: a certificate for another host name, from an unknown root, expired or "
        "not yet valid; a huge chain (~17 KB) it must handle; or IoT Hub's root rotation (Baltimore CyberTrust Root to "
        "DigiCert Global Root G2) imitated by a second development root",
        (Param("certificate", str, None, FAULT_CERTIFICATES, required=True), _PORT),
        point_of=_point,
    )
)
register(
    Kind(
        TLS_MAX_RECORDS,
        TLS,
        "a server that sends maximum-size (16 KB) TLS records, as IoT Hub does: devices with smaller TLS input "
        "buffers fail",
        (_PORT,),
        point_of=_point,
    )
)


class TlsFaults:
    """The TLS faults of `listener` (the device endpoint), as the FaultBook holds them. Installs
    itself as the listener's chooser and watches the book for faults with a port of their own."""

    def __init__(self, listener: TlsListener, certificates: FaultCertificates, book: FaultBook) -> None:
        if listener.context is None:
            raise FaultError(f"{listener.name} serves plain TCP: it has no TLS to break")
        self.listener = listener
        self.certificates = certificates
        self.book = book
        self._contexts: dict[str, ServerContext] = {}
        self._dedicated: dict[str, tuple[TlsListener, concurrent.futures.Future[None]]] = {}  # and its start
        self._tasks: set[concurrent.futures.Future[None]] = set()
        self._loop = asyncio.get_running_loop()
        listener.choose = self._choose
        book.watch(self._changed)

    def listener_of(self, fault_id: str) -> TlsListener | None:
        """The dedicated listener serving a fault, if it has one."""
        entry = self._dedicated.get(fault_id)
        return entry[0] if entry is not None else None

    async def stop(self) -> None:
        """Stop the dedicated listeners (the faults stay in the book) and stop watching it."""
        self.book.unwatch(self._changed)
        for fault_id in list(self._dedicated):
            self._stop_dedicated(fault_id)
        if self._tasks:
            await asyncio.gather(*(asyncio.wrap_future(task) for task in list(self._tasks)), return_exceptions=True)

    # ---- per accepted connection ---------------------------------------------------------

    def _choose(self) -> Served | None:
        if not self.book.armed:
            return None
        fault = self.book.take(TLS, None, None)
        return self._served(fault) if fault is not None else None

    def _served(self, fault: Fault) -> Served:
        certificate = "huge" if fault.kind == TLS_MAX_RECORDS else str(fault.params["certificate"])
        return Served(self._context(certificate), certificate=certificate, fault=fault)

    def _context(self, certificate: str) -> ServerContext:
        if certificate not in self._contexts:
            chain = self.certificates.get(certificate)
            base = self.listener.context
            assert base is not None
            minimum, maximum = base.versions
            self._contexts[certificate] = server_context(chain.chain_pem, chain.key_pem, alpn=base.alpn, minimum=minimum, maximum=maximum)
        return self._contexts[certificate]

    # ---- faults with a port of their own -------------------------------------------------

    def _changed(self, event: str, fault: Fault) -> None:
        if fault.kind not in (TLS_CERTIFICATE, TLS_MAX_RECORDS):
            return
        if event == "removed":
            self._stop_dedicated(fault.id)
            return
        if fault.point == TLS and fault.device_id is not None:
            raise FaultError(
                f"{fault.kind} on the shared device endpoint fires at the TLS handshake, before the device says who it "
                'is: leave out the device, or give it a port of its own (params {"port": "dedicated"})'
            )
        if fault.point == TLS_DEDICATED:
            self._start_dedicated(fault)

    def _start_dedicated(self, fault: Fault) -> None:
        served = self._served(fault)
        listener = self.listener.sibling(name=f"{self.listener.name} (fault {fault.id}: {served.certificate})", context=served.context)

        def choose() -> Served:
            fault.fired += 1
            return served

        listener.choose = choose
        try:
            port = listener.bind()
        except OSError as exc:
            raise FaultError(f"cannot listen for fault {fault.id} on {listener.host}: {exc.strerror or exc}") from None
        fault.count = None  # served until removed (or its duration ends)
        fault.listen = (listener.host, port)
        self._dedicated[fault.id] = (listener, self._spawn(listener.start()))
        if fault.duration is not None:
            self._loop.call_soon_threadsafe(self._loop.call_later, fault.duration, self.book.remove, fault.id)
        log.info("fault %s: serving the %s certificate on %s:%s", fault.id, served.certificate, listener.host, port)

    def _stop_dedicated(self, fault_id: str) -> None:
        entry = self._dedicated.pop(fault_id, None)
        if entry is None:
            return
        listener, started = entry

        async def close() -> None:
            await asyncio.wrap_future(started)  # a start still under way first
            await listener.stop()

        self._spawn(close())

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> concurrent.futures.Future[None]:
        """Run `coro` on the emulator's loop, whichever thread changed the book; in order."""
        task = asyncio.run_coroutine_threadsafe(coro, self._loop)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task
