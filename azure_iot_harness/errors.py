"""One error hierarchy for the whole project, and the CONNACK return codes.

Every error the emulator raises on purpose derives from `HarnessError`. Errors that map to an
Azure answer carry what Azure would send back: an HTTP status and an error code for the REST
surfaces (the codes themselves are catalogued in `emulator.protocol.errors` and
`emulator.protocol.dps`), a `ConnackCode` for MQTT CONNECT refusals.
"""

from __future__ import annotations

import enum


class ConnackCode(enum.IntEnum):
    """The CONNACK return codes of MQTT 3.1.1 (section 3.2.2.3)."""

    ACCEPTED = 0
    UNACCEPTABLE_PROTOCOL_VERSION = 1
    IDENTIFIER_REJECTED = 2
    SERVER_UNAVAILABLE = 3
    BAD_USERNAME_OR_PASSWORD = 4
    NOT_AUTHORIZED = 5

    @property
    def text(self) -> str:
        """How the MQTT specification names the code ("not authorized")."""
        return self.name.lower().replace("_", " ").replace("username", "user name")


def connack_text(return_code: int) -> str:
    """`CONNACK 5 (not authorized)`: a return code as clients and logs print it."""
    try:
        name = ConnackCode(return_code).text
    except ValueError:
        name = "unknown return code"
    return f"CONNACK {return_code} ({name})"


class HarnessError(Exception):
    """Base class of every error raised by azure-iot-harness."""


class ConfigError(HarnessError):
    """The configuration (file, environment or flags) is invalid."""


class ProtocolViolation(HarnessError):
    """A client broke an IoT Hub MQTT rule; IoT Hub answers by closing the connection."""


class UsernameError(HarnessError):
    """A CONNECT username in none of the forms IoT Hub and DPS accept."""


class ConnectRefused(HarnessError):
    """A CONNECT refused with a CONNACK return code (a `ConnackCode`; a client may also see
    codes a server made up)."""

    def __init__(self, return_code: int, reason: str) -> None:
        super().__init__(reason)
        self.return_code = return_code
        self.reason = reason


class ServiceError(HarnessError):
    """An error answered on a REST surface with Azure's status and error code."""

    def __init__(self, status: int, error_code: str, message: str) -> None:
        super().__init__(f"{error_code}: {message}")
        self.status = status
        self.error_code = error_code
        self.message = message


class ProvisioningError(ServiceError):
    """An error the Device Provisioning Service answers with a status and a 6-digit error code
    (whose first three digits are the status), over MQTT and HTTPS alike."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(status, str(code), message)
        self.code = code


class SasTokenError(HarnessError):
    """A shared access signature is malformed, expired or does not verify."""


class CertificateError(HarnessError):
    """A certificate cannot be read, or a client certificate does not authenticate its identity."""


class FaultError(HarnessError):
    """A fault asked for with an unknown kind or bad parameters."""
