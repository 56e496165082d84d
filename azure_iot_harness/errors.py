"""One error hierarchy for the whole project.

Every error the emulator raises on purpose derives from `HarnessError`. Errors that map to an
Azure answer carry what Azure would send back: an HTTP status and an IoT Hub error code for the
REST surfaces, a CONNACK return code for MQTT CONNECT refusals.
"""

from __future__ import annotations


class HarnessError(Exception):
    """Base class of every error raised by azure-iot-harness."""


class ConfigError(HarnessError):
    """The configuration (file, environment or flags) is invalid."""


class NotSupportedError(HarnessError):
    """A feature Azure has and the emulator does not (yet): never a silent success."""

    def __init__(self, feature: str) -> None:
        super().__init__(f"{feature} is not supported by the emulator")
        self.feature = feature


class ProtocolViolation(HarnessError):
    """A client broke an IoT Hub MQTT rule; IoT Hub answers by closing the connection."""


class ConnectRefused(HarnessError):
    """A CONNECT that IoT Hub refuses with a CONNACK return code."""

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
    """A client certificate does not authenticate the identity it claims."""
