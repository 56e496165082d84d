"""The unmodified Python service SDK (azure-iot-hub 2.7.0) against the emulator's registry REST API.

Trust comes from REQUESTS_CA_BUNDLE, as a user would set it; TLS verification stays on.
"""

from __future__ import annotations

import base64
import gc
import secrets
from collections.abc import Iterator

import pytest
from azure.iot.hub import IoTHubRegistryManager
from azure.iot.hub.models import ExportImportDevice, QuerySpecification
from msrest.exceptions import HttpOperationError

from azure_iot_harness.emulator.app import Emulator

THUMB1 = "0A" * 20
THUMB2 = "1B" * 32


def _key() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


def _manager(emu: Emulator, policy: str) -> IoTHubRegistryManager:
    return IoTHubRegistryManager.from_connection_string(emu.connection_string(policy=policy))


@pytest.fixture
def trust(emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(emulator.ca_file))
    yield
    # msrest leaves each response in a reference cycle that keeps its keep-alive socket open;
    # collecting them here closes those sockets before the emulator's HTTPS server stops.
    gc.collect()


@pytest.fixture
def manager(emulator: Emulator, trust: None) -> IoTHubRegistryManager:
    return _manager(emulator, "iothubowner")


def _status(exc_info: pytest.ExceptionInfo[HttpOperationError]) -> tuple[int, str | None]:
    response = exc_info.value.response
    return response.status_code, response.headers.get("iothub-errorcode")


# ---- devices -------------------------------------------------------------------------------------


def test_create_device_with_sas_generates_missing_keys(manager: IoTHubRegistryManager) -> None:
    device = manager.create_device_with_sas("sdk-dev", None, None, "enabled")
    assert device.device_id == "sdk-dev"
    assert device.status == "enabled"
    assert device.authentication.type == "sas"
    keys = device.authentication.symmetric_key
    assert len(base64.b64decode(keys.primary_key)) == 32 and keys.primary_key != keys.secondary_key
    assert device.etag and device.generation_id
    assert device.connection_state == "Disconnected"
    assert device.capabilities.iot_edge is False


def test_create_device_with_sas_keeps_given_keys(manager: IoTHubRegistryManager) -> None:
    primary, secondary = _key(), _key()
    device = manager.create_device_with_sas("sdk-keys", primary, secondary, "disabled", iot_edge=True, status_reason="parked")
    assert (device.authentication.symmetric_key.primary_key, device.authentication.symmetric_key.secondary_key) == (
        primary,
        secondary,
    )
    assert device.status == "disabled" and device.status_reason == "parked"
    assert device.capabilities.iot_edge is True
    got = manager.get_device("sdk-keys")
    assert got.etag == device.etag and got.authentication.symmetric_key.primary_key == primary


def test_create_device_with_x509_thumbprints(manager: IoTHubRegistryManager) -> None:
    device = manager.create_device_with_x509("sdk-x509", THUMB1, THUMB2, "enabled")
    assert device.authentication.type == "selfSigned"
    assert device.authentication.x509_thumbprint.primary_thumbprint == THUMB1
    assert device.authentication.x509_thumbprint.secondary_thumbprint == THUMB2
    assert manager.get_device("sdk-x509").authentication.type == "selfSigned"


def test_create_device_with_certificate_authority(manager: IoTHubRegistryManager) -> None:
    device = manager.create_device_with_certificate_authority("sdk-ca", "enabled")
    assert device.authentication.type == "certificateAuthority"
    assert manager.get_device("sdk-ca").authentication.type == "certificateAuthority"


def test_get_well_known_device(manager: IoTHubRegistryManager) -> None:
    device = manager.get_device("device1")
    assert device.device_id == "device1" and device.authentication.type == "sas"


def test_create_existing_device_is_409(manager: IoTHubRegistryManager) -> None:
    with pytest.raises(HttpOperationError) as exc:
        manager.create_device_with_sas("device1", None, None, "enabled")
    assert _status(exc) == (409, "DeviceAlreadyExists")


def test_update_device_with_sas(manager: IoTHubRegistryManager) -> None:
    created = manager.create_device_with_sas("sdk-upd", None, None, "enabled")
    new_key = _key()
    # etag "*" (the SDK sends it quoted): unconditional.
    updated = manager.update_device_with_sas("sdk-upd", "*", new_key, None, "disabled")
    assert updated.status == "disabled"
    assert updated.authentication.symmetric_key.primary_key == new_key
    assert updated.etag != created.etag and updated.generation_id == created.generation_id
    # The device's own etag works too; a stale one is refused.
    again = manager.update_device_with_sas("sdk-upd", updated.etag, new_key, None, "enabled")
    assert again.status == "enabled"
    with pytest.raises(HttpOperationError) as exc:
        manager.update_device_with_sas("sdk-upd", updated.etag, new_key, None, "disabled")
    assert _status(exc) == (412, "PreconditionFailed")


def test_get_devices(manager: IoTHubRegistryManager) -> None:
    for n in range(3):
        manager.create_device_with_sas(f"many-{n}", None, None, "enabled")
    ids = {d.device_id for d in manager.get_devices()}
    assert {"device1", "x509-device1", "many-0", "many-1", "many-2"} == ids
    assert len(manager.get_devices(max_number_of_devices=2)) == 2


def test_delete_device_then_get_is_404(manager: IoTHubRegistryManager) -> None:
    manager.create_device_with_sas("sdk-del", None, None, "enabled")
    manager.delete_device("sdk-del")  # sends If-Match: "*"
    with pytest.raises(HttpOperationError) as exc:
        manager.get_device("sdk-del")
    assert _status(exc) == (404, "DeviceNotFound")
    with pytest.raises(HttpOperationError) as exc:
        manager.delete_device("sdk-del")
    assert _status(exc) == (404, "DeviceNotFound")


def test_delete_device_with_etag(manager: IoTHubRegistryManager) -> None:
    device = manager.create_device_with_sas("sdk-del-etag", None, None, "enabled")
    with pytest.raises(HttpOperationError) as exc:
        manager.delete_device("sdk-del-etag", etag="c3RhbGU=")
    assert _status(exc) == (412, "PreconditionFailed")
    manager.delete_device("sdk-del-etag", etag=device.etag)


def test_device_id_with_special_characters(manager: IoTHubRegistryManager) -> None:
    device_id = "dev#1?x%y:z@$"
    assert manager.create_device_with_sas(device_id, None, None, "enabled").device_id == device_id
    assert manager.get_device(device_id).device_id == device_id
    manager.delete_device(device_id)


def test_bulk_create_or_update_devices(manager: IoTHubRegistryManager) -> None:
    devices = [ExportImportDevice(id=f"sdk-bulk-{i}", import_mode="create", status="disabled") for i in range(2)]
    result = manager.bulk_create_or_update_devices(devices)
    assert result.is_successful and result.errors == []
    assert manager.get_device("sdk-bulk-1").status == "disabled"
    again = manager.bulk_create_or_update_devices([ExportImportDevice(id="sdk-bulk-0", import_mode="create")])
    assert not again.is_successful and again.errors[0].error_code == "DeviceAlreadyExists"
    gone = manager.bulk_create_or_update_devices([ExportImportDevice(id=f"sdk-bulk-{i}", import_mode="delete") for i in range(2)])
    assert gone.is_successful


# ---- modules -------------------------------------------------------------------------------------


def test_module_lifecycle(manager: IoTHubRegistryManager) -> None:
    manager.create_device_with_sas("host", None, None, "enabled")
    primary, secondary = _key(), _key()
    module = manager.create_module_with_sas("host", "mod", "edge-agent", primary, secondary)
    assert (module.device_id, module.module_id, module.managed_by) == ("host", "mod", "edge-agent")
    assert module.authentication.symmetric_key.primary_key == primary

    got = manager.get_module("host", "mod")
    assert got.etag == module.etag and got.authentication.symmetric_key.secondary_key == secondary
    assert [m.module_id for m in manager.get_modules("host")] == ["mod"]

    updated = manager.update_module_with_sas("host", "mod", None, "*", None, None)
    assert updated.etag != module.etag and updated.authentication.symmetric_key.primary_key != primary

    manager.delete_module("host", "mod")  # sends If-Match: "*"
    with pytest.raises(HttpOperationError) as exc:
        manager.get_module("host", "mod")
    assert _status(exc) == (404, "ModuleNotFound")
    assert manager.get_modules("host") == []


def test_x509_and_ca_modules(manager: IoTHubRegistryManager) -> None:
    module = manager.create_module_with_x509("device1", "xmod", None, THUMB1, None)
    assert module.authentication.type == "selfSigned"
    assert module.authentication.x509_thumbprint.primary_thumbprint == THUMB1
    module = manager.create_module_with_certificate_authority("device1", "camod", None)
    assert module.authentication.type == "certificateAuthority"
    assert {m.module_id for m in manager.get_modules("device1")} == {"module1", "xmod", "camod"}


def test_module_of_missing_device_is_404(manager: IoTHubRegistryManager) -> None:
    with pytest.raises(HttpOperationError) as exc:
        manager.create_module_with_sas("ghost", "mod", None, None, None)
    assert _status(exc) == (404, "DeviceNotFound")


# ---- query and statistics ------------------------------------------------------------------------


def test_query_devices(manager: IoTHubRegistryManager) -> None:
    manager.create_device_with_sas("queried", None, None, "disabled")
    result = manager.query_iot_hub(QuerySpecification(query="SELECT * FROM devices"))
    assert result.type == "Twin"
    assert result.continuation_token is None
    twins = {t.device_id: t for t in result.items}
    assert set(twins) == {"device1", "queried", "x509-device1"}
    twin = twins["queried"]
    assert twin.status == "disabled" and twin.authentication_type == "sas"
    assert twin.version == 1 and twin.tags == {}
    assert twin.device_etag == manager.get_device("queried").etag
    assert twin.properties.desired["$version"] == 1 and twin.properties.reported["$version"] == 1


def test_query_where_and_paging(manager: IoTHubRegistryManager) -> None:
    spec = QuerySpecification(query="SELECT * FROM devices WHERE status = 'enabled'")
    first = manager.query_iot_hub(spec, max_item_count=1)
    assert len(first.items) == 1 and first.continuation_token
    second = manager.query_iot_hub(spec, continuation_token=first.continuation_token, max_item_count=1)
    assert len(second.items) == 1 and second.continuation_token is None
    assert {first.items[0].device_id, second.items[0].device_id} == {"device1", "x509-device1"}


def test_unsupported_query_is_400(manager: IoTHubRegistryManager) -> None:
    with pytest.raises(HttpOperationError) as exc:
        manager.query_iot_hub(QuerySpecification(query="SELECT * FROM devices WHERE tags.site = 'x'"))
    assert _status(exc) == (400, "ArgumentInvalid")
    assert "not supported by the emulator" in exc.value.response.text


def test_statistics(manager: IoTHubRegistryManager) -> None:
    manager.create_device_with_sas("stat-off", None, None, "disabled")
    assert manager.get_service_statistics().connected_device_count == 0
    stats = manager.get_device_registry_statistics()
    assert (stats.total_device_count, stats.enabled_device_count, stats.disabled_device_count) == (3, 2, 1)


# ---- permissions ---------------------------------------------------------------------------------


def test_read_only_policy(emulator: Emulator, trust: None) -> None:
    reader = _manager(emulator, "registryRead")
    assert reader.get_device("device1").device_id == "device1"
    count = reader.query_iot_hub(QuerySpecification(query="SELECT COUNT() AS n FROM devices"))
    # The SDK deserialises every query item as a Twin; a projection lands in additional_properties.
    assert count.type == "JSON" and [item.additional_properties for item in count.items] == [{"n": 2}]
    with pytest.raises(HttpOperationError) as exc:
        reader.create_device_with_sas("nope", None, None, "enabled")
    assert _status(exc) == (401, "IotHubUnauthorizedAccess")
    with pytest.raises(HttpOperationError) as exc:
        reader.get_service_statistics()
    assert _status(exc) == (401, "IotHubUnauthorizedAccess")
