"""certify against real devices: the conformant reference devices PASS every check; each
deliberately broken device fails exactly the checks of the rule it breaks.

A short slice is in the default suite (the reference devices on the basic and edge profiles, and
the broken devices judged within seconds); the runs that wait for back-offs, storms, DPS, the
soak or a check's whole timeout are marked `certify_long` (pytest -m certify_long tests/certify)."""

from __future__ import annotations

import pytest

from azure_iot_harness.certify import catalogue, profiles

from .helpers import broken_command, certify, explain, reference_command, results

BASIC = list(profiles.BASIC)
LONG = pytest.mark.certify_long


def test_reference_paho_device_passes_the_basic_profile() -> None:
    lines: list[str] = []
    report = certify(reference_command(), "ref-basic", lines=lines)
    got = results(report)
    assert list(got) == BASIC  # the catalogue's order
    assert {k for k, v in got.items() if v not in ("PASS",)} == {"provisioning.registers"}, explain(report)
    assert got["provisioning.registers"] == "SKIP" and report.exit_code == 0
    assert any(line.startswith(f"[ 1/{len(BASIC)}] connect.connects PASS") for line in lines)


@LONG
def test_reference_paho_device_passes_the_resilience_profile() -> None:
    report = certify(reference_command(), "ref-resilience", profile="resilience")
    bad = {k: v for k, v in results(report).items() if v != "PASS" and not k.startswith("provisioning.")}
    assert bad == {}, explain(report)


@LONG
def test_reference_paho_device_copes_with_hostile_tls() -> None:
    checks = [c for c in catalogue.ids() if c.startswith("tls.")]
    report = certify(reference_command(), "ref-tls", checks=checks)
    assert set(results(report).values()) == {"PASS"}, explain(report)


@LONG
def test_reference_paho_device_through_dps() -> None:
    report = certify(reference_command(), "ref-dps", provisioning="dps",
                     checks=["connect.connects", "provisioning.registers", "telemetry.publishes", "provisioning.retry-after",
                             "provisioning.backoff", "provisioning.reprovision", "provisioning.follows-hub", "credentials.username"])
    assert set(results(report).values()) == {"PASS"}, explain(report)


def test_reference_paho_device_through_the_edge_gateway() -> None:
    report = certify(reference_command(), "ref-edge", profile="edge")
    got = results(report)
    assert list(got) == [c for c in catalogue.ids() if c in profiles.EDGE]
    assert set(got.values()) == {"PASS"}, explain(report)


def test_reference_paho_device_as_an_edge_module() -> None:
    report = certify(reference_command(), "edge-device1", module_id="filter", profile="edge")
    got = results(report)
    assert {k for k, v in got.items() if v != "PASS"} == {"c2d.receive"}, explain(report)
    assert got["c2d.receive"] == "SKIP"  # IoT Hub sends no cloud-to-device messages to modules


@LONG
def test_edge_module_that_ignores_its_module_id_fails_the_identity_checks() -> None:
    checks = ["connect.connects", "mqtt.client-id", "credentials.username"]
    report = certify(broken_command("ignores_module_id"), "edge-device1", module_id="filter", checks=[*checks, "edge.connects"],
                     connect_timeout=4)
    assert {k for k, v in results(report).items() if v == "FAIL"} == {*checks, "edge.connects"}, explain(report)


@LONG
def test_reference_paho_device_with_x509() -> None:
    report = certify(reference_command(), "ref-x509", auth="x509", checks=BASIC)
    got = results(report)
    assert {k for k, v in got.items() if v != "PASS"} == {"provisioning.registers", "credentials.sas-token"}, explain(report)
    assert got["credentials.sas-token"] == "SKIP"


# (device, checks to run, the checks that must FAIL, extra device flags, long)
TLS_REFUSALS = ["tls.rejects-wrong-host", "tls.rejects-unknown-root", "tls.rejects-expired", "tls.rejects-not-yet-valid"]
NO_CONNECT = ("connect-timeout", 4)
DPS = ("provisioning", "dps")  # devices that never get a connection accepted: judge them quickly
RESILIENCE = ["resilience.reconnect-delay", "resilience.backoff", "resilience.takeover", "credentials.permanent-refusal"]
BROKEN = [
    ("c2d_no_puback", ["c2d.receive"], {"c2d.receive"}, (), False),
    ("wrong_rid", ["methods.answer", "methods.unknown"], {"methods.answer", "methods.unknown"}, (), True),
    ("silent_unknown_method", ["methods.answer", "methods.unknown"], {"methods.unknown"}, (), True),
    ("qos2", ["connect.connects", "mqtt.no-qos2"], {"mqtt.no-qos2"}, (), False),
    ("subscribes_all", ["connect.connects", "mqtt.subscriptions"], {"mqtt.subscriptions"}, (), False),
    ("no_twin_get", ["twin.get", "twin.desired"], {"twin.get"}, (), True),
    ("no_reported", ["twin.get", "twin.desired", "twin.reported"], {"twin.desired", "twin.reported"}, (), True),
    ("no_telemetry", ["telemetry.publishes", "twin.get"], {"telemetry.publishes"}, (), True),
    ("bad_model_id", ["connect.connects", "credentials.username"], {"credentials.username"}, (), False),
    ("unencoded_properties", ["connect.connects", "telemetry.property-bag"], {"telemetry.property-bag"}, (), False),
    ("foreign_topic", ["connect.connects", "mqtt.topics"], {"mqtt.topics"}, (), False),
    ("will_elsewhere", ["connect.connects", "mqtt.will"], {"connect.connects", "mqtt.will"}, NO_CONNECT, True),
    ("wrong_client_id", ["connect.connects", "mqtt.client-id"], {"connect.connects", "mqtt.client-id"}, NO_CONNECT, False),
    ("ping_before_connect", ["connect.connects", "mqtt.connect-first"], {"connect.connects", "mqtt.connect-first"}, NO_CONNECT, True),
    ("tls_1_1", ["connect.connects", "tls.version"], {"connect.connects", "tls.version"}, NO_CONNECT, True),
    ("chacha_only", ["connect.connects", "tls.cipher"], {"tls.cipher"}, (), False),
    ("long_keep_alive", ["mqtt.keep-alive", "resilience.dead-link"], {"mqtt.keep-alive", "resilience.dead-link"}, (), False),
    ("reconnect_at_once", RESILIENCE, set(RESILIENCE), (), True),
    ("constant_retry", RESILIENCE, set(RESILIENCE) - {"resilience.reconnect-delay"}, (), True),
    ("linear_retry", ["resilience.reconnect-delay", "resilience.backoff"], {"resilience.backoff"}, (), True),
    ("no_dup", ["telemetry.resend-dup", "telemetry.no-loss"], {"telemetry.resend-dup"}, (), True),
    ("drops_unacked", ["telemetry.resend-dup", "telemetry.no-loss"], {"telemetry.resend-dup", "telemetry.no-loss"}, (), True),
    ("never_renews", ["connect.connects", "credentials.token-renewal"], {"credentials.token-renewal"}, ("--token-ttl", "2"), True),
    ("gives_up", ["resilience.reconnect-delay", "resilience.azure-faults"], {"resilience.reconnect-delay", "resilience.azure-faults"}, (), True),
    ("gives_up_on_429", ["twin.desired", "twin.throttled"], {"twin.throttled"}, (), True),
    ("hangs_on_connack", ["connect.connects", "resilience.connack-timeout"], {"resilience.connack-timeout"}, (), True),
    ("c2d_no_puback", ["c2d.queued"], {"c2d.queued"}, (), True),
    ("no_twin_get", ["twin.reconcile"], {"twin.reconcile"}, (), True),
    ("accepts_any_certificate", TLS_REFUSALS, set(TLS_REFUSALS), (), True),
    ("pinned_root", ["tls.large-certificate", "tls.rotated-root"], {"tls.rotated-root"}, (), True),
    ("small_tls_buffer", ["tls.large-certificate", "tls.max-records", "tls.rotated-root"], {"tls.large-certificate", "tls.max-records"}, (), True),
    ("ignores_retry_after", ["provisioning.registers", "provisioning.retry-after"], {"provisioning.retry-after"}, DPS, True),
    ("dps_constant_retry", ["provisioning.registers", "provisioning.backoff"], {"provisioning.backoff"}, DPS, True),
    ("never_reprovisions", ["provisioning.registers", "provisioning.reprovision"], {"provisioning.reprovision"}, DPS, True),
    ("wrong_dps_username", ["connect.connects", "provisioning.registers"], {"provisioning.registers"}, DPS, True),
    ("audience_is_address", ["connect.connects", "credentials.sas-token"], {"connect.connects", "credentials.sas-token"}, NO_CONNECT, True),
    ("long_lived_token", ["connect.connects", "credentials.sas-token"], {"credentials.sas-token"}, (), False),
    ("renews_when_closed", ["connect.connects", "credentials.sas-token"], {"credentials.sas-token"}, ("--token-ttl", "2"), True),
    ("keeps_cached_hub", ["provisioning.registers", "provisioning.follows-hub"], {"provisioning.follows-hub"}, DPS, True),
    ("hub_server_name", ["connect.connects", "edge.connects"], {"edge.connects"}, (), False),
    ("ignores_gateway", ["connect.connects", "edge.connects"], {"connect.connects", "edge.connects"}, NO_CONNECT, True),
    ("no_telemetry", ["edge.connects", "edge.store-and-forward"], {"edge.store-and-forward"}, (), True),
]


@pytest.mark.parametrize(
    ("device", "checks", "failing", "flags"),
    [pytest.param(d, c, f, x, id=f"{d}-{'-'.join(sorted(f))}", marks=[LONG] if long else []) for d, c, f, x, long in BROKEN],
)
def test_a_broken_device_fails_exactly_its_checks(device: str, checks: list[str], failing: set[str], flags: tuple) -> None:
    options: dict = {}
    if flags[:1] == ("connect-timeout",):
        options["connect_timeout"], flags = flags[1], ()
    if flags[:1] == ("provisioning",):
        options["provisioning"], flags = flags[1], ()
    report = certify(broken_command(device, *flags), "broken-" + device.replace("_", "-"), checks=checks, **options)
    got = results(report)
    assert {k for k, v in got.items() if v == "FAIL"} == failing, explain(report)
    assert {v for k, v in got.items() if k not in failing} <= {"PASS", "PASS_WITH_WARNINGS"}, explain(report)
    assert report.exit_code == (1 if failing - profiles.OPTIONAL else 0)


def test_every_check_is_shown_failing_by_a_broken_device() -> None:
    shown = {check for _device, _checks, failing, _flags, _long in BROKEN for check in failing}
    # The soak fails on drops_unacked: its own test.
    assert set(catalogue.ids()) - shown - {"soak.accounting"} == set()


@LONG
@pytest.mark.parametrize(("device", "result"), [("reference", "PASS"), ("drops_unacked", "FAIL")])
def test_soak_accounts_for_every_message(device: str, result: str) -> None:
    command = reference_command() if device == "reference" else broken_command(device)
    report = certify(command, f"soak-{device.replace('_', '-')}", checks=["connect.connects", "soak.accounting"], duration=25)
    assert results(report)["soak.accounting"] == result, explain(report)
    assert any("acknowledged" in note for note in report.result("soak.accounting").evidence.notes)
