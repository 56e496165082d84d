"""The pytest plugin as another repository sees it: loaded through its entry point in a fresh
pytest run (pytester, in a subprocess)."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

# A paho device for the generated test files: what a firmware test would have.
PAHO = '''
import ssl, threading
import paho.mqtt.client as mqtt

def connect(creds):
    c = mqtt.Client(client_id=creds.client_id, protocol=mqtt.MQTTv311)
    c.username_pw_set(creds.username, creds.password)  # X.509 devices send the username too
    ctx = ssl.create_default_context(cafile=creds.ca_file)
    if creds.cert_file:
        ctx.load_cert_chain(creds.cert_file, creds.key_file)
    c.tls_set_context(ctx)
    rc, connack = [], threading.Event()
    c.on_connect = lambda cl, u, f, r: (rc.append(r), connack.set())
    c.connect(creds.host, creds.mqtt_port)
    c.loop_start()
    assert connack.wait(10) and rc == [0], rc
    return c

def send(creds, body, bag=""):
    c = connect(creds)
    c.publish(f"devices/{creds.device_id}/messages/events/{bag}", body, qos=1).wait_for_publish(10)
    c.disconnect(); c.loop_stop()
'''


def _run(pytester: pytest.Pytester, *args: str):
    pytester.makepyfile(paho_device=PAHO)
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", *args, timeout=170)


def test_fixtures_work_and_state_is_reset_between_tests(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_it='''
        from paho_device import send

        def test_first(azure_iot_service, azure_iot_device):
            send(azure_iot_device, '{"t": 1}', "unit=C")
            [msg] = azure_iot_service.wait_for_telemetry("test-device", body={"t": 1}, properties={"unit": "C"})
            azure_iot_service.create_device("left-behind")

        def test_second_sees_a_fresh_emulator(azure_iot_emulator, azure_iot_service, azure_iot_ca_file):
            assert azure_iot_ca_file.read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")
            assert azure_iot_emulator.registry.get("left-behind") is None
            assert azure_iot_emulator.registry.get("test-device") is None
            assert azure_iot_service.telemetry() == []
            assert azure_iot_emulator.registry.get("device1") is not None  # well-known identities stay

        def test_x509_device_and_twin(azure_iot_service, azure_iot_x509_device):
            from paho_device import connect
            c = connect(azure_iot_x509_device)
            c.disconnect(); c.loop_stop()
            azure_iot_service.patch_desired("test-x509-device", {"rate": 5})
            assert azure_iot_service.get_twin("test-x509-device")["properties"]["desired"]["rate"] == 5
        '''
    )
    result = _run(pytester, "-v")
    result.assert_outcomes(passed=3)


def test_same_ports_and_ca_across_tests(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_it='''
        seen = []

        def test_a(azure_iot_emulator):
            seen.append((azure_iot_emulator.mqtt_port, azure_iot_emulator.https_port, azure_iot_emulator.ca_file.read_bytes()))

        def test_b(azure_iot_emulator):
            assert seen == [(azure_iot_emulator.mqtt_port, azure_iot_emulator.https_port, azure_iot_emulator.ca_file.read_bytes())]
            assert azure_iot_emulator.mqtt_port not in (0, 8883)
        '''
    )
    _run(pytester).assert_outcomes(passed=2)


def test_near_miss_in_failure_output(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_it='''
        from paho_device import send

        def test_wrong_body(azure_iot_service, azure_iot_device):
            for i in range(3):
                send(azure_iot_device, f"reading {i}")
            azure_iot_service.wait_for_telemetry("test-device", body="reading 7", timeout=2)
        '''
    )
    result = _run(pytester)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*3 messages from test-device, none matched body='reading 7'*", "*body='reading 2'*"])


def test_emulator_error_fails_the_test_that_caused_it(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_it='''
        from paho_device import send

        def boom(batch):
            raise RuntimeError("listener exploded")

        def test_causes_an_emulator_error(azure_iot_emulator_thread, azure_iot_emulator, azure_iot_service, azure_iot_device):
            azure_iot_emulator_thread.loop.call_soon_threadsafe(azure_iot_emulator.store.add_telemetry_listener, boom)
            send(azure_iot_device, "x")
            azure_iot_service.wait_for_telemetry("test-device", body="x")

        def test_next_one_is_clean(azure_iot_service, azure_iot_device):
            send(azure_iot_device, "y")
            azure_iot_service.wait_for_telemetry("test-device", body="y")
        '''
    )
    result = _run(pytester)
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(["*EmulatorErrors: the emulator logged errors during this test:*", "*listener exploded*"])


def test_settings_fixture_override_and_option(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        '''
        import pytest

        @pytest.fixture(scope="session")
        def azure_iot_settings(azure_iot_settings):
            return {**azure_iot_settings, "c2d_lock_seconds": 7}
        '''
    )
    pytester.makepyfile(
        test_it='''
        def test_settings(azure_iot_emulator):
            assert azure_iot_emulator.config.c2d_lock_seconds == 7
            assert azure_iot_emulator.config.dps_id_scope == "0ne0000abc"
        '''
    )
    _run(pytester, "--azure-iot-setting", "dps_id_scope=0ne0000abc").assert_outcomes(passed=1)


def test_standard_ports_marker(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_it='''
        import pytest

        @pytest.mark.azure_iot_standard_ports
        def test_sdk_ports(azure_iot_emulator, azure_iot_device):
            assert (azure_iot_emulator.mqtt_port, azure_iot_emulator.https_port) == (8883, 443)
            assert azure_iot_emulator.host.startswith("127.") and azure_iot_device.host == azure_iot_emulator.host
            from azure.iot.device import IoTHubDeviceClient
            import os
            os.environ["SSL_CERT_FILE"] = str(azure_iot_emulator.ca_file)  # the SDK trusts through it
            client = IoTHubDeviceClient.create_from_connection_string(azure_iot_device.connection_string)
            client.connect()
            client.send_message("from the sdk")
            client.shutdown()

        def test_ephemeral_by_default(azure_iot_emulator):
            assert azure_iot_emulator.mqtt_port != 8883
        '''
    )
    _run(pytester).assert_outcomes(passed=2)


def test_parallel_workers(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_it='''
        import pytest
        from paho_device import send

        @pytest.mark.parametrize("i", range(6))
        def test_each(azure_iot_service, azure_iot_device, i):
            send(azure_iot_device, f"n{i}")
            [m] = azure_iot_service.wait_for_telemetry("test-device")
            assert m["body"] == f"n{i}"  # only this test's message: state was reset
        '''
    )
    _run(pytester, "-n", "2").assert_outcomes(passed=6)


def test_the_projects_own_suite_is_unaffected(pytester: pytest.Pytester) -> None:
    # A repository with its own `emulator` fixture keeps it: the plugin adds azure_iot_* only.
    pytester.makeconftest(
        '''
        import pytest

        @pytest.fixture
        def emulator():
            return "mine"
        '''
    )
    pytester.makepyfile(test_it="def test_mine(emulator):\n    assert emulator == 'mine'\n")
    _run(pytester).assert_outcomes(passed=1)


def test_ca_fixture_and_chain_devices(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_chain='''
        from azure_iot_harness.certs.chain import issue
        from paho_device import send

        def test_device_presenting_a_chain(azure_iot_service, azure_iot_devices):
            creds = azure_iot_devices.x509_chain("chain-device")
            send(creds, "chained")
            azure_iot_service.wait_for_telemetry("chain-device", body="chained")

        def test_proof_of_possession(azure_iot_ca):
            root = issue("Plugin Root", ca=True)
            assert azure_iot_ca.upload("plugin-root", root.cert_pem)["isVerified"] is False
            code = azure_iot_ca.verification_code("plugin-root")
            assert azure_iot_ca.verify("plugin-root", issue(code, root, ca=False).cert_pem)["isVerified"] is True
            assert "plugin-root" in {c["name"] for c in azure_iot_ca.list()}

        def test_uploads_do_not_outlive_their_test(azure_iot_ca):
            assert "plugin-root" not in {c["name"] for c in azure_iot_ca.list()}
        '''
    )
    result = _run(pytester, "-v", "-p", "no:randomly")
    result.assert_outcomes(passed=3)
