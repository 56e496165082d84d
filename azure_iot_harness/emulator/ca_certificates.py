"""`CaCertificates`: the CA certificates uploaded to the hub or to DPS, kept in the store.

The hub and DPS each have their own set, as in Azure (two resources, two certificate lists).
Writes follow the management plane: a PUT creates or replaces (If-Match optional, checked when
given), generateVerificationCode and verify need the current etag, DELETE too. `trust()` is what
device authentication reads: every certificate, each marked verified or not.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from ..errors import ServiceError
from .clock import SYSTEM_CLOCK, Clock
from .protocol import ca_certificates as p
from .protocol.chains import Anchor, Trust, describe
from .store import Store

log = logging.getLogger("azure_iot_harness.certificates")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS ca_certificates (
    owner TEXT NOT NULL,
    name TEXT NOT NULL,
    doc TEXT NOT NULL,
    PRIMARY KEY (owner, name)
);
"""


class CaCertificates:
    def __init__(self, store: Store, owner: str, clock: Clock = SYSTEM_CLOCK) -> None:
        """`owner`: "hub" or "dps", whose certificates these are."""
        self.store = store
        self.owner = owner
        self.clock = clock
        self._records: dict[str, dict] = {}  # lower-case name -> record
        self._trust = Trust()
        self._lock = asyncio.Lock()
        store.add_schema(_SCHEMA)

    async def load(self) -> None:
        rows = await self.store.submit(
            lambda c: c.execute("SELECT name, doc FROM ca_certificates WHERE owner = ?", (self.owner,)).fetchall()
        )
        self._records = {name: json.loads(doc) for name, doc in rows}
        self._rebuild()

    # ---- reading ------------------------------------------------------------------------------

    def trust(self) -> Trust:
        return self._trust

    def get(self, name: str) -> dict:
        record = self._records.get(name.lower())
        if record is None:
            raise p.management_error(404, "CertificateNotFound", f"no certificate named {name!r} on the {self.owner}")
        return record

    def list(self) -> list[dict]:
        return [self._records[k] for k in sorted(self._records)]

    def find(self, cert: x509.Certificate) -> dict | None:
        """The uploaded record of this certificate, if any."""
        for anchor in self._trust.anchors:
            if anchor.cert == cert:
                return self._records[anchor.name.lower()]
        return None

    # ---- writing ------------------------------------------------------------------------------

    async def put(self, name: str, certificate: object, *, verified: bool = False, if_match: str | None = None) -> dict:
        p.check_name(name)
        now = self.clock.now()
        cert = p.parse_certificate(certificate, now)
        async with self._lock:
            existing = self._records.get(name.lower())
            if existing is not None and if_match is not None:
                self._precondition(existing, if_match)
            record = p.new_record(name, cert, verified, now, existing)
            await self._write(record)
        log.info(
            "%s CA certificate %r (%s) uploaded%s", self.owner, name, describe(cert),
            " as verified" if verified else ", not verified (proof of possession pending)",
        )
        return record

    async def seed(self, name: str, cert: x509.Certificate) -> None:
        """Upload `cert` as verified under `name` unless that name already holds it."""
        record = self._records.get(name.lower())
        pem = cert.public_bytes(Encoding.PEM).decode()
        if record is None or record["certificate"] != pem or not record["isVerified"]:
            await self.put(name, pem, verified=True)

    async def generate_verification_code(self, name: str, if_match: str | None) -> dict:
        async with self._lock:
            record = dict(self.get(name))
            self._precondition(record, if_match, required=True)
            record.update(verificationCode=p.new_verification_code(), etag=p.new_etag(), updated=self.clock.now().isoformat())
            await self._write(record)
        return record

    async def verify(self, name: str, certificate: object, if_match: str | None) -> dict:
        async with self._lock:
            record = dict(self.get(name))
            self._precondition(record, if_match, required=True)
            ca = x509.load_pem_x509_certificate(record["certificate"].encode())
            try:
                p.check_proof(ca, certificate, record.get("verificationCode"), self.clock.now())
            except ServiceError as exc:
                log.warning("%s CA certificate %r not verified: %s", self.owner, name, exc.message)
                raise
            record.update(isVerified=True, verificationCode=None, etag=p.new_etag(), updated=self.clock.now().isoformat())
            await self._write(record)
        log.info("%s CA certificate %r verified (proof of possession)", self.owner, name)
        return record

    async def delete(self, name: str, if_match: str | None) -> None:
        async with self._lock:
            record = self.get(name)
            self._precondition(record, if_match, required=True)
            key = name.lower()
            await self.store.submit(
                lambda c: c.execute("DELETE FROM ca_certificates WHERE owner = ? AND name = ?", (self.owner, key))
            )
            self._records.pop(key, None)
            self._rebuild()
        log.info("%s CA certificate %r deleted", self.owner, name)

    async def _write(self, record: dict) -> None:
        key, text = record["name"].lower(), json.dumps(record)
        await self.store.submit(
            lambda c: c.execute(
                "INSERT OR REPLACE INTO ca_certificates (owner, name, doc) VALUES (?, ?, ?)", (self.owner, key, text)
            )
        )
        self._records[key] = record
        self._rebuild()

    def _rebuild(self) -> None:
        self._trust = Trust(
            tuple(
                Anchor(r["name"], x509.load_pem_x509_certificate(r["certificate"].encode()), r["isVerified"])
                for r in self.list()
            )
        )

    @staticmethod
    def _precondition(record: dict, if_match: str | None, *, required: bool = False) -> None:
        if if_match is None:
            if required:
                raise p.management_error(412, "PreconditionFailed", f"the If-Match header (etag {record['etag']}) is required")
            return
        given = if_match.strip().strip('"')
        if given != "*" and given != record["etag"]:
            raise p.management_error(412, "PreconditionFailed", f"etag {if_match} does not match {record['etag']}")


def ca_entries(entries: list[str]) -> list[tuple[str, Path]]:
    """Settings entries `NAME=PATH` or `PATH` (named after the file: `root.pem` → `root`)."""
    out = []
    for entry in entries:
        name, sep, path = entry.partition("=")
        if not sep:
            name, path = Path(entry).name.split(".", 1)[0], entry
        out.append((name.strip(), Path(path.strip()).expanduser()))
    return out
