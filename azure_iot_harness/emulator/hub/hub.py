"""`Hub`: IoT Hub's device side (CONNECT, one connection per identity) over its registry, twins,
C2D queues, persistent sessions and direct methods."""

from __future__ import annotations

import logging

from cryptography import x509 as cx509

from ...config import WELL_KNOWN_DEVICE_CA_NAME, HubSettings
from ...errors import ProtocolViolation
from ..ca_certificates import CaCertificates
from ..clock import SYSTEM_CLOCK, Clock
from ..faults import FaultBook
from ..mqtt.codec import Connect
from ..mqtt.connection import MqttConnection
from ..protocol.messages import Telemetry
from ..protocol.topics import HubUsername
from ..store import Store
from .auth import Principal, authenticate
from .c2d import C2DQueues
from .context import HubContext
from .methods import Methods
from .registry import Key, Registry
from .session import DeviceSession, telemetry_from
from .sessions import SessionStates
from .twins import Twins

log = logging.getLogger("azure_iot_harness.hub")


class Hub:
    def __init__(
        self,
        settings: HubSettings,
        store: Store,
        clock: Clock = SYSTEM_CLOCK,
        *,
        device_ca: cx509.Certificate | None = None,
        faults: FaultBook | None = None,
    ) -> None:
        """Build the parts, whose tables the store creates when it starts; start() loads them.
        `device_ca`: the development device CA, uploaded and verified at start under
        WELL_KNOWN_DEVICE_CA_NAME (the well-known X.509 device's CA); `faults`: the faults a test
        asked for (twin and method faults fire in the sessions)."""
        self.faults = faults
        # More host names devices may connect with (lower case): a dps-assign-hub fault's "other
        # hub", which is this hub under another name (and address).
        self.host_aliases: set[str] = set()
        self.settings = settings
        self.host = settings.host
        self.policies = settings.policies
        self.store = store
        self.clock = clock
        self.device_ca = device_ca
        self.cas = CaCertificates(store, "hub", clock)  # CA certificates of certificateAuthority devices
        self.sessions: dict[Key, DeviceSession] = {}
        self.registry = Registry(store, clock)
        self.twins = Twins(store, self.registry, clock)
        self.c2d = C2DQueues(store, self.registry, clock, lock_seconds=settings.c2d_lock_seconds)
        self.session_states = SessionStates(store, self.registry)
        self.methods = Methods(self)
        self.registry.on_change(self._identity_changed)
        self.twins.on_desired_change(self._desired_changed)
        self.c2d.on_enqueued(self._c2d_enqueued)

    async def start(self) -> None:
        """Read the state kept in the store (which must have started) and create the
        well-known identities that are missing."""
        await self.registry.load()
        await self.cas.load()
        if self.device_ca is not None:
            await self.cas.seed(WELL_KNOWN_DEVICE_CA_NAME, self.device_ca)
        await self.registry.seed_well_known(edge=self.settings.seed_edge_identities)
        await self.twins.load()
        await self.c2d.load()
        await self.session_states.load()

    async def stop(self) -> None:
        """Nothing to release: the hub's connections close with the listeners that serve them."""

    def context(self) -> HubContext:
        """What the service REST routes get of the hub."""
        return HubContext(
            host=self.host,
            policies=self.policies,
            registry=self.registry,
            twins=self.twins,
            c2d=self.c2d,
            methods=self.methods,
            clock=self.clock,
        )

    # ---- connections ------------------------------------------------------------------------

    async def connect(self, conn: MqttConnection, connect: Connect, username: HubUsername) -> tuple[DeviceSession, bool]:
        principal = authenticate(
            username=username,
            client_id=connect.client_id,
            password=connect.password,
            peer_chain=conn.peer_chain,
            registry=self.registry,
            hub_host=username.host if username.host.lower() in self.host_aliases else self.host,
            policies=self.policies,
            trust=self.cas.trust(),
            now=self.clock.now(),
        )
        # Everything that can refuse comes before anything that changes state: a refused
        # CONNECT must leave the identity's live connection and its registry entry as they were.
        will = self._will(principal, connect) if connect.will_topic is not None else None
        expires_in = None if principal.token_expiry is None else max(0.0, principal.token_expiry - self.clock.time())
        if principal.model_id:
            await self.twins.announce_model(principal.key, principal.model_id)
        state, present = self.session_states.resume(principal.key, connect.clean_session)
        session = DeviceSession(self, principal, conn, state)
        session.will = will
        session.honours_fault_properties = "auth-chain" not in username.params
        previous = self.sessions.get(principal.key)
        if previous is not None:
            log.info("%s: a new connection replaces the one from %s", principal.name, previous.conn.peer)
            previous.kicked = True
            previous.conn.close("replaced by a new connection of the same identity", graceful=True)
        self.sessions[principal.key] = session
        self.registry.set_connected(principal.device_id, principal.module_id, True)
        if expires_in is not None:
            conn.close_at(expires_in, lambda: self._token_expired(session))
        log.info(
            "%s connected from %s (%s, %s, clean session %d)",
            principal.name,
            conn.peer,
            principal.auth.type,
            username.api_version and f"api-version {username.api_version}" or "no api-version",
            connect.clean_session,
        )
        return session, present

    def _will(self, principal: Principal, connect: Connect) -> Telemetry:
        try:
            will = telemetry_from(
                principal, connect.will_topic or "", connect.will_message or b"", connect.will_retain, self.clock.now()
            )
        except ProtocolViolation as exc:
            raise ProtocolViolation(f"will message: {exc} (IoT Hub allows a will on the telemetry topic only)") from None
        will.properties["iothub-MessageType"] = "Will"
        return will

    # ---- session bookkeeping ------------------------------------------------------------

    def session_closed(self, session: DeviceSession) -> None:
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
