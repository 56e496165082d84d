"""The README stays true to the code: generated sections current, every setting documented."""

import dataclasses
import re
from pathlib import Path

import pytest

from azure_iot_harness import support
from azure_iot_harness.config import (
    ENV_PREFIX,
    WELL_KNOWN_DPS_POLICY,
    WELL_KNOWN_POLICIES,
    WELL_KNOWN_SAS_DEVICE_KEYS,
    WELL_KNOWN_SYMMETRIC_GROUP_KEYS,
    Config,
)

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def test_differences_section_is_generated_from_the_support_matrix():
    section = support.render(support.load())
    assert section in README, "README is stale: run `python -m azure_iot_harness.support --write-readme`"


def test_every_setting_is_in_the_configuration_table():
    for field in dataclasses.fields(Config):
        assert f"| `{field.name}` |" in README, field.name
        assert f"`{ENV_PREFIX}{field.name.upper()}`" in README, field.name


def test_every_flag_in_the_configuration_table_is_a_serve_flag(capsys):
    from azure_iot_harness.cli import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--help"])
    flags = set(re.findall(r"--[a-z][a-z-]*", capsys.readouterr().out))
    table = README.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    rows = [line.split("|") for line in table.splitlines() if line.startswith("| `")]
    documented = {cell.strip().split("`")[1] for _, _, cell, *_ in rows if cell.strip()}
    assert documented and documented <= flags, documented - flags
    assert "--host-name" in documented


def test_published_keys_are_the_real_ones():
    for policy in WELL_KNOWN_POLICIES:
        assert f"`{policy.name}` | `{policy.key}`" in README
    assert all(key in README for key in WELL_KNOWN_SAS_DEVICE_KEYS)
    assert f"`{WELL_KNOWN_DPS_POLICY.name}` | `{WELL_KNOWN_DPS_POLICY.key}`" in README
    assert all(key in README for key in WELL_KNOWN_SYMMETRIC_GROUP_KEYS)


def test_readme_starts_with_the_two_commands():
    blocks = README.split("```sh\n")
    assert blocks[1].startswith("python3 -m venv .venv && .venv/bin/pip install . && .venv/bin/azure-iot-harness serve")
    assert blocks[2].startswith("bash scripts/test")
