"""`azure-iot-harness client VARIANT`: every variant is on the command line with its help."""

from __future__ import annotations

from azure_iot_harness.clients import VARIANTS
from tests.cli_helpers import no_traceback, run_cli


def test_every_variant_has_help():
    listing = run_cli("client", "--help")
    assert listing.returncode == 0
    for variant in VARIANTS:
        assert variant in listing.stdout
        res = run_cli("client", variant, "--help")
        assert res.returncode == 0 and "--data-dir" in res.stdout and no_traceback(res.stderr), res.stderr


def test_unknown_variant_is_a_usage_error():
    res = run_cli("client", "no-such-variant")
    assert res.returncode == 2 and "invalid choice" in res.stderr and no_traceback(res.stderr)
