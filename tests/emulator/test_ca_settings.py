"""CA certificates trusted from the start: the `ca_certificates` / `dps_ca_certificates` settings
(`NAME=PATH` or `PATH`), from a TOML file or the environment."""

from __future__ import annotations

import pytest

from azure_iot_harness.certs.chain import issue
from azure_iot_harness.config import Config
from azure_iot_harness.emulator.app import EmulatorThread
from azure_iot_harness.errors import ConfigError


def test_settings_upload_verified_cas_at_start(tmp_path):
    root, other = issue("Settings Root", ca=True), issue("Other Root", ca=True)
    (tmp_path / "team-root.pem").write_bytes(root.cert_pem)
    (tmp_path / "other.pem").write_bytes(other.cert_pem)
    (tmp_path / "settings.toml").write_text(
        f'ca_certificates = ["{tmp_path / "team-root.pem"}"]\ndps_ca_certificates = ["factory={tmp_path / "other.pem"}"]\n'
    )
    cfg = Config.load(tmp_path / "settings.toml", env={}, flags={"in_memory": True, "mqtt_port": 0, "https_port": 0})
    thread = EmulatorThread(cfg)
    emu = thread.start()
    try:
        hub = {r["name"]: r for r in emu.ca_certificates().list()}
        assert hub["team-root"]["isVerified"] is True and hub["team-root"]["certificate"] == root.cert_pem.decode()
        assert [(r["name"], r["isVerified"]) for r in emu.ca_certificates(dps=True).list()] == [("factory", True)]
        thread.call(emu.reset())  # the settings' CAs come back after a reset
        assert "team-root" in {r["name"] for r in emu.ca_certificates().list()}
    finally:
        thread.stop()


def test_environment_takes_a_comma_separated_list(tmp_path):
    cfg = Config.load(env={"AZURE_IOT_HARNESS_CA_CERTIFICATES": "a=/x/a.pem, /y/b.pem"})
    assert cfg.ca_certificates == ["a=/x/a.pem", "/y/b.pem"]


@pytest.mark.parametrize("content, why", [(None, "cannot read CA certificate 'missing'"), (b"junk", "PEM")])
def test_unreadable_or_bad_files_stop_the_start(tmp_path, content, why):
    path = tmp_path / "missing.pem"
    if content is not None:
        path.write_bytes(content)
    thread = EmulatorThread(in_memory=True, mqtt_port=0, https_port=0, ca_certificates=[str(path)])
    with pytest.raises(ConfigError, match=why):
        thread.start()
