"""The Emulator object: where things are, and its connection strings."""

from azure_iot_harness.config import WELL_KNOWN_POLICIES, WELL_KNOWN_SAS_DEVICE_KEYS


def test_info_lists_endpoints_and_well_known_identities(emulator):
    info = emulator.info()
    assert info["mqtt"] == {"host": "localhost", "port": emulator.mqtt_port}
    assert info["https"]["port"] == emulator.https_port
    ids = info["wellKnownIdentities"]
    assert {p["name"]: p["key"] for p in ids["policies"]} == {p.name: p.key for p in WELL_KNOWN_POLICIES}
    device1 = next(d for d in ids["devices"] if d["deviceId"] == "device1")
    assert device1["primaryKey"] == WELL_KNOWN_SAS_DEVICE_KEYS[0]
    assert {"deviceId": "x509-device1", "authentication": "certificateAuthority"} in ids["devices"]


def test_connection_strings_use_only_azure_keys(emulator):
    allowed = {"HostName", "SharedAccessKeyName", "SharedAccessKey", "DeviceId", "ModuleId", "x509"}
    for cs in emulator.info()["connectionStrings"].values():
        keys = [part.split("=", 1)[0] for part in cs.split(";")]
        assert set(keys) <= allowed and len(keys) == len(set(keys)), cs
    assert emulator.connection_string(device="x509-device1").endswith(";x509=true")
    assert f"HostName=localhost:{emulator.https_port};" in emulator.connection_string(policy="service")
