"""DPS in the Emulator: settings, what `info` tells, and state that survives a restart."""

from __future__ import annotations

import pytest

from azure_iot_harness.config import WELL_KNOWN_DPS_POLICY, WELL_KNOWN_SYMMETRIC_GROUP_KEYS, Config
from azure_iot_harness.emulator.app import EmulatorThread
from azure_iot_harness.errors import ConfigError
from tests.emulator.dps.helpers import RawDps, group_key, token


@pytest.mark.parametrize(
    "overrides",
    [{"dps_id_scope": "0ne/0001"}, {"dps_id_scope": ""}, {"dps_assigning_polls": -1}, {"dps_retry_after": -1}],
)
def test_invalid_dps_settings(overrides):
    with pytest.raises(ConfigError):
        Config().with_overrides(**overrides)


def test_dps_settings_from_the_environment():
    cfg = Config.load(env={"AZURE_IOT_HARNESS_DPS_ID_SCOPE": "0ne0000ABCD", "AZURE_IOT_HARNESS_DPS_ASSIGNING_POLLS": "0"})
    assert (cfg.dps_id_scope, cfg.dps_assigning_polls) == ("0ne0000ABCD", 0)


def test_info_tells_the_dps_host_scope_and_identities(emulator):
    info = emulator.info()
    assert info["dps"] == {"host": "localhost", "idScope": "0ne00000001", "url": f"https://localhost:{emulator.https_port}"}
    assert info["connectionStrings"]["dpsService"] == (
        f"HostName=localhost:{emulator.https_port};SharedAccessKeyName=provisioningserviceowner;SharedAccessKey={WELL_KNOWN_DPS_POLICY.key}"
    )
    dps = info["wellKnownIdentities"]["dps"]
    assert dps["idScope"] == "0ne00000001" and dps["policies"][0]["key"] == WELL_KNOWN_DPS_POLICY.key
    assert dps["enrollmentGroups"] == [
        {"enrollmentGroupId": "symmetric-group1", "attestation": "symmetricKey",
         "primaryKey": WELL_KNOWN_SYMMETRIC_GROUP_KEYS[0], "secondaryKey": WELL_KNOWN_SYMMETRIC_GROUP_KEYS[1]},
        {"enrollmentGroupId": "x509-group1", "attestation": "x509"},
    ]  # fmt: skip


def test_another_id_scope():
    with EmulatorThread(in_memory=True, mqtt_port=0, https_port=0, dps_id_scope="0ne0000ABCD") as emu:
        c = RawDps(emu, "scoped-1", token(emu, "scoped-1", group_key("scoped-1")))
        assert c.connack == 0 and c.provision("scoped-1")["status"] == "assigned"
        c.close()


def test_enrollments_and_registrations_survive_a_restart(tmp_path):
    settings = dict(data_dir=tmp_path, mqtt_port=0, https_port=0, durability="normal")
    with EmulatorThread(**settings) as emu:
        c = RawDps(emu, "kept-1", token(emu, "kept-1", group_key("kept-1")))
        first = c.provision("kept-1")["registrationState"]
        c.close()
    thread = EmulatorThread(**settings)
    emu = thread.start()
    try:
        body = {"attestation": {"type": "symmetricKey"}}
        thread.call(emu.dps.put_enrollment("individual", "kept-2", body, if_match=None))
        assert emu.dps.get_registration("kept-1") == first
        assert [g["enrollmentGroupId"] for g in emu.dps.list_enrollments("group")] == ["symmetric-group1", "x509-group1"]
    finally:
        thread.stop()
    with EmulatorThread(**settings) as emu:
        assert emu.dps.get_enrollment("individual", "kept-2")["registrationId"] == "kept-2"
        c = RawDps(emu, "kept-1", token(emu, "kept-1", group_key("kept-1")))
        again = c.provision("kept-1")["registrationState"]
        c.close()
    assert again["createdDateTimeUtc"] == first["createdDateTimeUtc"]
