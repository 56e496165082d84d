from pathlib import Path

import pytest

from azure_iot_harness.config import Config
from azure_iot_harness.errors import ConfigError


def test_file_then_environment_then_flags(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text('host = "file-host"\nmqtt_port = 1000\nhttps_port = 2000\nhost_names = ["a.example"]\n')
    env = {"AZURE_IOT_HARNESS_MQTT_PORT": "3000", "AZURE_IOT_HARNESS_IN_MEMORY": "true"}
    cfg = Config.load(toml, env=env, flags={"https_port": 4000, "host": None})
    assert cfg.host == "file-host"  # a flag left at None was not passed
    assert cfg.mqtt_port == 3000  # environment over file
    assert cfg.https_port == 4000  # flag over everything
    assert cfg.in_memory is True
    assert cfg.host_names == ["a.example"]


def test_config_file_from_environment(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text('data_dir = "~/x"\n')
    cfg = Config.load(env={"AZURE_IOT_HARNESS_CONFIG": str(toml)})
    assert cfg.data_dir == Path("~/x").expanduser()


def test_list_from_environment():
    cfg = Config.load(env={"AZURE_IOT_HARNESS_HOST_NAMES": "a.example, b.example"})
    assert cfg.host_names == ["a.example", "b.example"]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"env": {"AZURE_IOT_HARNESS_MQTT_PORT": "eighty"}}, "invalid value for mqtt_port"),
        ({"env": {"AZURE_IOT_HARNESS_IN_MEMORY": "maybe"}}, "invalid value for in_memory"),
        ({"env": {}, "flags": {"https_port": 70000}}, "https_port must be between"),
        ({"env": {}, "flags": {"durability": "sometimes"}}, "durability"),
        ({"env": {}, "flags": {"host": "a/b"}}, "host must be a host name"),
    ],
)
def test_invalid_settings_are_named(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        Config.load(**kwargs)


def test_unknown_setting_in_file(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text("mqtt_prot = 1\n")
    with pytest.raises(ConfigError, match="unknown setting.*mqtt_prot"):
        Config.load(toml, env={})


def test_unreadable_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config file"):
        Config.load(tmp_path / "missing.toml", env={})


def test_overrides_are_converted():
    cfg = Config().with_overrides(data_dir="/tmp/x", mqtt_port="0")
    assert cfg.data_dir == Path("/tmp/x") and cfg.mqtt_port == 0
    with pytest.raises(ConfigError):
        Config().with_overrides(nope=1)
