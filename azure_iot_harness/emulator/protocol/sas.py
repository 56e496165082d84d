"""Shared access signatures: parse, verify, generate. Pure functions.

The signature is an HMAC-SHA256 over `sr` *exactly as sent*, a newline and `se`. SDKs escape
`sr` differently (upper- or lower-case `%2F`, or not at all), so the verifier never re-encodes
it; the decoded form is used only to compare audiences.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
import urllib.parse
from dataclasses import dataclass

from ...errors import SasTokenError
from .numbers import NumberError, parse_int

PREFIX = "SharedAccessSignature "
_FIELDS = ("sr", "sig", "se", "skn")
# The last second Azure's services can represent (.NET's DateTime ends with year 9999): a
# later expiry is refused like any unusable token, before anything computes with it.
MAX_EXPIRY = 253402300799  # 9999-12-31T23:59:59Z


@dataclass(frozen=True)
class SasToken:
    sr: str  # as sent, still escaped
    signature: bytes  # decoded HMAC
    expiry: int
    key_name: str | None

    @property
    def resource(self) -> str:
        """The audience, unescaped once and without a scheme."""
        res = urllib.parse.unquote(self.sr)
        for scheme in ("https://", "http://", "amqps://"):
            if res.lower().startswith(scheme):
                return res[len(scheme) :]
        return res

    def expired(self, now: float | None = None) -> bool:
        return self.expiry <= (time.time() if now is None else now)

    def verify(self, key_b64: str) -> bool:
        expected = hmac.new(_decode_key(key_b64), f"{self.sr}\n{self.expiry}".encode(), hashlib.sha256).digest()
        return hmac.compare_digest(expected, self.signature)

    def verify_raw(self, key: str) -> bool:
        """Signed with the key's UTF-8 text itself, as the Event Hubs SDKs sign (they do not
        base64-decode the key)."""
        expected = hmac.new(key.encode(), f"{self.sr}\n{self.expiry}".encode(), hashlib.sha256).digest()
        return hmac.compare_digest(expected, self.signature)


def parse(token: str | None) -> SasToken:
    """Parse `SharedAccessSignature sr=…&sig=…&se=…[&skn=…]`, fields in any order."""
    if not token:
        raise SasTokenError("no SAS token (empty password)")
    if not token.startswith(PREFIX):
        raise SasTokenError("SAS token does not start with 'SharedAccessSignature '")
    fields: dict[str, str] = {}
    for part in token[len(PREFIX) :].strip().split("&"):
        name, sep, value = part.partition("=")
        if not sep or not name:
            raise SasTokenError(f"malformed SAS token field {part!r}")
        if name not in _FIELDS:
            raise SasTokenError(f"unknown SAS token field {name!r}")
        if name in fields:
            raise SasTokenError(f"SAS token field {name!r} given twice")
        fields[name] = value
    missing = [f for f in ("sr", "sig", "se") if not fields.get(f)]
    if missing:
        raise SasTokenError(f"SAS token lacks {', '.join(missing)}")
    try:
        expiry = parse_int(fields["se"], 0, MAX_EXPIRY, name="SAS token expiry se")
    except NumberError as exc:
        raise SasTokenError(f"{exc} (seconds since 1970, at most 9999-12-31T23:59:59Z)") from None
    try:
        signature = base64.b64decode(urllib.parse.unquote(fields["sig"]), validate=True)
    except (binascii.Error, ValueError):
        raise SasTokenError("SAS token signature is not valid base64") from None
    if len(signature) != hashlib.sha256().digest_size:
        raise SasTokenError("SAS token signature has the wrong length for HMAC-SHA256")
    skn = fields.get("skn")
    return SasToken(sr=fields["sr"], signature=signature, expiry=expiry, key_name=skn or None)


def sign(key_b64: str, sr: str, expiry: int) -> str:
    """Base64 HMAC-SHA256 of `sr` (as it will be sent) and the expiry."""
    digest = hmac.new(_decode_key(key_b64), f"{sr}\n{expiry}".encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def generate(uri: str, key_b64: str, *, key_name: str | None = None, ttl: int = 3600, expiry: int | None = None) -> str:
    """A token for `uri` (not yet escaped) in the form the Azure SDKs produce."""
    sr = urllib.parse.quote(uri, safe="")
    se = int(time.time() + ttl) if expiry is None else int(expiry)
    sig = urllib.parse.quote(sign(key_b64, sr, se), safe="")
    token = f"{PREFIX}sr={sr}&sig={sig}&se={se}"
    return token + (f"&skn={key_name}" if key_name else "")


def derive_device_key(group_key_b64: str, registration_id: str) -> str:
    """A DPS enrollment group's key for one registration id."""
    return base64.b64encode(
        hmac.new(_decode_key(group_key_b64), registration_id.encode(), hashlib.sha256).digest()
    ).decode()


def new_key() -> str:
    """A fresh symmetric key, as IoT Hub and DPS generate one when none is given: 32 random bytes."""
    return base64.b64encode(secrets.token_bytes(32)).decode()


def key_problem(key: str) -> str | None:
    """Why a given symmetric key is unusable (IoT Hub and DPS take 16 to 64 bytes), or None."""
    try:
        raw = base64.b64decode(key, validate=True)
    except (binascii.Error, ValueError):
        return "is not valid base64"
    if not 16 <= len(raw) <= 64:
        return "must decode to 16 to 64 bytes"
    return None


def split_host(resource: str) -> tuple[str, list[str]]:
    """`host[:port]/a/b` → ('host', ['a', 'b']); the host lower-cased and without its port."""
    host, _, path = resource.partition("/")
    host = host.lower()
    if host.startswith("[") and "]" in host:  # [::1]:443
        host = host[1 : host.index("]")]
    elif host.count(":") == 1:
        host = host.split(":", 1)[0]
    return host, [seg for seg in path.split("/") if seg != ""]


def covers(resource: str, host: str, path: list[str]) -> bool:
    """Whether a token's audience covers host/path: same host, and a prefix by whole segment."""
    res_host, res_path = split_host(resource)
    if res_host != host.lower() or len(res_path) > len(path):
        return False
    # Device ids with special characters may be escaped once more inside the audience.
    return all(a == b or urllib.parse.unquote(a) == b for a, b in zip(res_path, path))


def _decode_key(key_b64: str) -> bytes:
    try:
        return base64.b64decode(key_b64, validate=True)
    except (binascii.Error, ValueError):
        raise SasTokenError("shared access key is not valid base64") from None
