"""IoT Hub's device endpoint: routes CONNECTs, keeps one connection per identity."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Iterable

from cryptography import x509 as cx509

from ...config import Policy
from ...errors import ProtocolViolation
from ..mqtt.codec import Connect
from ..mqtt.connection import MqttConnection
from ..protocol.messages import Telemetry
from ..protocol.topics import HubUsername
from ..store import Store
from .auth import authenticate
from .c2d import C2DQueues
from .methods import Methods
from .registry import Key, Registry
from .session import DeviceSession
from .sessions import SessionStates
from .twins import Twins

log = logging.getLogger("azure_iot_harness.hub")


class Hub:
    def __init__(
        self,
        *,
        host: str,
        store: Store,
        registry: Registry,
        policies: Iterable[Policy],
        trusted_cas: Iterable[cx509.Certificate],
        c2d_lock_seconds: float = 60.0,
    ) -> None:
        self.host = host
        self.store = store
        self.registry = registry
        self.policies = tuple(policies)
        self.trusted_cas = list(trusted_cas)
        self.sessions: dict[Key, DeviceSession] = {}
        self.twins = Twins(store, registry)
        self.c2d = C2DQueues(store, registry, lock_seconds=c2d_lock_seconds)
        self.session_states = SessionStates(store, registry)
        self.methods = Methods(self)
        registry.on_change(self._identity_changed)
        self.twins.on_desired_change(self._desired_changed)
        self.c2d.on_enqueued(self._c2d_enqueued)

    async def load(self) -> None:
        """Read the state kept in the store (after it started)."""
        await self.twins.load()
        await self.c2d.load()
        await self.session_states.load()

    # ---- connections ------------------------------------------------------------------------

    async def connect(self, conn: MqttConnection, connect: Connect, username: HubUsername) -> tuple[DeviceSession, bool]:
        principal = authenticate(
            username=username,
            client_id=connect.client_id,
            password=connect.password,
            peer_cert=conn.peer_cert,
            registry=self.registry,
            hub_host=self.host,
            policies=self.policies,
            trusted_cas=self.trusted_cas,
        )
        state, present = self.session_states.resume(principal.key, connect.clean_session)
        session = DeviceSession(self, principal, conn, state)
        if connect.will_topic is not None:
            session.will = self._will(session, connect)
        previous = self.sessions.get(principal.key)
        if previous is not None:
            log.info("%s: a new connection replaces the one from %s", principal.name, previous.conn.peer)
            previous.kicked = True
            previous.conn.close("replaced by a new connection of the same identity", graceful=True)
        self.sessions[principal.key] = session
        self.registry.set_connected(principal.device_id, principal.module_id, True)
        if principal.token_expiry is not None:
            delay = max(0.0, principal.token_expiry - time.time())
            handle = asyncio.get_running_loop().call_later(delay, self._token_expired, session)
            conn.context["expiry_timer"] = handle
        log.info(
            "%s connected from %s (%s, %s, clean session %d)",
            principal.name,
            conn.peer,
            principal.auth.type,
            username.api_version and f"api-version {username.api_version}" or "no api-version",
            connect.clean_session,
        )
        return session, present

    def _will(self, session: DeviceSession, connect: Connect) -> Telemetry:
        try:
            will = session.telemetry_from(connect.will_topic or "", connect.will_message or b"", connect.will_retain)
        except ProtocolViolation as exc:
            raise ProtocolViolation(f"will message: {exc} (IoT Hub allows a will on the telemetry topic only)") from None
        will.properties["iothub-MessageType"] = "Will"
        return will

    # ---- session bookkeeping ------------------------------------------------------------

    def session_closed(self, session: DeviceSession) -> None:
        timer = session.conn.context.pop("expiry_timer", None)
        if timer is not None:
            timer.cancel()
        key = session.principal.key
        if self.sessions.get(key) is session:
            del self.sessions[key]
            self.registry.set_connected(key[0], key[1], False)

    def _desired_changed(self, key: Key, body: dict, version: int) -> None:
        session = self.sessions.get(key)
        if session is not None:  # nothing is queued for a device that is offline
            session.send_desired(body, version)

    def _c2d_enqueued(self, device_id: str) -> None:
        session = self.sessions.get((device_id, None))
        if session is not None:
            session.pump_c2d()

    def _token_expired(self, session: DeviceSession) -> None:
        log.info("%s: SAS token expired, closing the connection", session.principal.name)
        session.conn.close("SAS token expired")

    def _identity_changed(self, key: Key, doc: dict | None) -> None:
        affected = [s for k, s in self.sessions.items() if k == key or (key[1] is None and k[0] == key[0])]
        for session in affected:
            if doc is None:
                session.conn.close("identity deleted from the registry")
            elif doc.get("status") == "disabled":
                session.conn.close("identity disabled in the registry")
