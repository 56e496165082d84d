"""IoT Hub's REST error catalogue: each error by name, with Azure's status and numeric code
(DPS's, in the same style, is in `dps`). The errors are `ServiceError`s of the one hierarchy.

The body shape (`Message` = `ErrorCode:{name};{text}`, `ExceptionMessage` with a tracking id) and
the `iothub-errorcode` header are what the service SDKs parse.
"""

from __future__ import annotations

import datetime as dt
import uuid

from ...errors import ServiceError

# name: (HTTP status, IoT Hub error code). The codes are those of the service SDKs' ErrorCode
# enum (azure-iot-sdk-csharp), which parses them; 412002 there is DeviceMessageLockLost and
# 400007 DeviceStorageEntitySerializationError.
CATALOGUE: dict[str, tuple[int, int]] = {
    "ArgumentInvalid": (400, 400004),
    "ArgumentNull": (400, 400005),
    "IotHubFormatError": (400, 400006),
    "DeviceInvalidResultCount": (400, 400002),
    "InvalidProtocolVersion": (400, 400001),
    "DeviceDefinedMultipleTimes": (400, 400011),
    "IotHubUnauthorizedAccess": (401, 401002),
    "IotHubUnauthorized": (401, 401003),
    "DeviceMaximumQueueDepthExceeded": (403, 403004),
    "DeviceNotFound": (404, 404001),
    "ModuleNotFound": (404, 404010),
    "DeviceNotOnline": (404, 404103),
    "NotFound": (404, 404000),  # the emulator's answer to a path no API has
    "DeviceAlreadyExists": (409, 409001),
    "ModuleAlreadyExistsOnDevice": (409, 409301),
    "PreconditionFailed": (412, 412001),
    "RequestEntityTooLarge": (413, 413001),
    "TooManyDevices": (413, 413002),
    "ThrottlingException": (429, 429001),
    "ServerError": (500, 500001),
    "NotImplemented": (501, 501000),
    "GatewayTimeout": (504, 504101),
}


def hub_error(name: str, message: str) -> ServiceError:
    status, _ = CATALOGUE[name]
    return ServiceError(status, name, message)


def error_code(name: str) -> int:
    """IoT Hub's numeric code of the error `name` (the `errorCode` of answer bodies)."""
    return CATALOGUE[name][1]


def not_supported(feature: str) -> ServiceError:
    return hub_error("NotImplemented", f"{feature} is not supported by the emulator")


def error_body(err: ServiceError, now: dt.datetime | None = None) -> dict:
    stamp = (now or dt.datetime.now(dt.UTC)).strftime("%Y-%m-%dT%H:%M:%S")
    code = CATALOGUE.get(err.error_code, (err.status, err.status * 1000))[1]
    return {
        "Message": f"ErrorCode:{err.error_code};{err.message}",
        "ExceptionMessage": f"Tracking ID:{uuid.uuid4().hex}-G:0-TimeStamp:{stamp}",
        "errorCode": code,
    }
