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


def test_reset_keeps_ports_and_ca_and_forgets_everything_else(emulator_thread, emulator):
    from tests.helpers import https, raw_sas_connect

    ports, ca = (emulator.mqtt_port, emulator.https_port), emulator.ca_file.read_bytes()
    assert https(emulator, "PUT", "/devices/extra?api-version=2021-04-12", {"deviceId": "extra"})[0] == 200
    https(emulator, "POST", "/_emulator/c2d/device1", {"data": "x"})
    conn = raw_sas_connect(emulator)
    emulator_thread.call(emulator.reset())
    assert conn.closed_by_server()
    assert (emulator.mqtt_port, emulator.https_port) == ports and emulator.ca_file.read_bytes() == ca
    assert https(emulator, "GET", "/devices/extra?api-version=2021-04-12")[0] == 404
    assert emulator.registry.view("device1")["cloudToDeviceMessageCount"] == 0
    raw_sas_connect(emulator).close()  # the well-known identities are back, the CA still trusted


def test_reset_refuses_a_data_folder_emulator(tmp_path):
    import pytest

    from azure_iot_harness.emulator.app import EmulatorThread
    from azure_iot_harness.errors import HarnessError

    with EmulatorThread(data_dir=tmp_path, mqtt_port=0, https_port=0) as emu:
        with pytest.raises(HarnessError, match="in-memory"):
            asyncio_run(emu)


def asyncio_run(emu):
    import asyncio

    return asyncio.run_coroutine_threadsafe(emu.reset(), emu.store._loop).result(10)


class _StandingClock:
    """2001-02-03T04:05:06Z, standing still (before any SAS token a test makes expires)."""

    def now(self):
        import datetime as dt

        return dt.datetime(2001, 2, 3, 4, 5, 6, tzinfo=dt.UTC)

    def time(self):
        return self.now().timestamp()

    def monotonic(self):
        return 0.0


def test_services_read_the_clock_they_are_given():
    from azure_iot_harness.emulator.app import EmulatorThread

    clock = _StandingClock()
    thread = EmulatorThread(in_memory=True, mqtt_port=0, https_port=0, clock=clock)
    with thread as emu:
        assert emu.registry.view("device1")["statusUpdatedTime"].startswith("2001-02-03T04:05:06")
        message = thread.call(emu.send_c2d("device1", "x", ttl=60))
        assert (message.enqueued, message.expiry) == (clock.time(), clock.time() + 60)
        body = {"attestation": {"type": "symmetricKey"}}
        enrollment = thread.call(emu.dps.put_enrollment("individual", "clocked-1", body, if_match=None))
        assert enrollment["createdDateTimeUtc"].startswith("2001-02-03T04:05:06")
