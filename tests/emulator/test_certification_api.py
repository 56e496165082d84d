"""`/_emulator/certification/reports`: certify's reports kept by the emulator (what the explorer
lists; real certify runs posting them are in the explorer's browser test). The API refuses what
is not a report; `certify --no-publish` posts nothing."""

from __future__ import annotations

import copy
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from azure_iot_harness.emulator import certification
from azure_iot_harness.emulator.app import Emulator, EmulatorThread
from azure_iot_harness.emulator.certification_api import PATH
from tests.certify.helpers import reference_command
from tests.helpers import https

REPORT = {
    "tool": "azure-iot-harness 0.0.0",
    "device": {"deviceId": "dev-1", "auth": "sas", "provisioning": "none", "command": None},
    "profile": "basic",
    "started": "2026-12-03T22:00:00Z",
    "finished": "2026-12-03T22:00:09Z",
    "exitCode": 1,
    "counts": {"PASS": 1, "FAIL": 1},
    "checks": [{"id": "connect.connects", "result": "PASS"}, {"id": "twin.get", "result": "FAIL"}],
    "deviceLog": [],
}


@pytest.fixture
def emu() -> Iterator[Emulator]:
    thread = EmulatorThread(in_memory=True, mqtt_port=0, https_port=0)
    try:
        yield thread.start()
    finally:
        thread.stop()


def test_a_posted_report_is_listed_read_and_deleted(emu: Emulator) -> None:
    status, headers, summary = https(emu, "POST", PATH, {"report": REPORT, "html": "<h1>page</h1>", "junit": "<testsuite/>"})
    assert status == 201, summary
    assert headers["location"] == f"{PATH}/{summary['id']}"
    assert summary["deviceId"] == "dev-1" and summary["verdict"] == "NOT CERTIFIED" and summary["counts"] == {"PASS": 1, "FAIL": 1}
    assert summary["formats"] == ["json", "html", "junit"] and summary["checks"] == 2
    bare = copy.deepcopy(REPORT) | {"exitCode": 0}
    status, _, second = https(emu, "POST", PATH, {"report": bare})
    assert status == 201 and second["verdict"] == "CERTIFIED" and second["formats"] == ["json"]

    status, _, runs = https(emu, "GET", PATH)
    assert status == 200 and [r["id"] for r in runs] == [second["id"], summary["id"]]  # newest first
    assert runs[1] == summary
    assert https(emu, "GET", f"{PATH}/{summary['id']}")[2] == REPORT  # as certify wrote it
    status, headers, page = https(emu, "GET", f"{PATH}/{summary['id']}/html")
    assert (status, page) == (200, "<h1>page</h1>")
    assert headers["content-type"].startswith("text/html") and headers["content-security-policy"] == "sandbox"
    status, headers, junit = https(emu, "GET", f"{PATH}/{summary['id']}/junit")
    assert (status, junit, headers["content-type"].split(";")[0]) == (200, "<testsuite/>", "application/xml")
    status, headers, _ = https(emu, "GET", f"{PATH}/{second['id']}/html")
    assert status == 404 and headers["iothub-errorcode"] == "NotFound"

    assert https(emu, "DELETE", f"{PATH}/{summary['id']}")[0] == 204
    for method in ("GET", "DELETE"):
        status, headers, _ = https(emu, method, f"{PATH}/{summary['id']}")
        assert (status, headers["iothub-errorcode"]) == (404, "NotFound"), method
    assert [r["id"] for r in https(emu, "GET", PATH)[2]] == [second["id"]]
    assert https(emu, "GET", f"{PATH}/99999999999999999999999")[0] == 404  # beyond SQLite's integers


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"report": REPORT, "pdf": "x"}, "unknown field(s): pdf"),
        ({"html": "<p>"}, "report must be"),
        ({"report": REPORT | {"device": {"auth": "sas"}}}, "deviceId"),
        ({"report": REPORT | {"profile": 3}}, "report.profile"),
        ({"report": REPORT | {"exitCode": 7}}, "report.exitCode"),
        ({"report": REPORT | {"exitCode": True}}, "report.exitCode"),
        ({"report": REPORT | {"counts": {"PASS": "1"}}}, "report.counts"),
        ({"report": REPORT | {"checks": {}}}, "report.checks"),
        ({"report": REPORT, "html": 5}, "html must be a string"),
    ],
)
def test_what_is_not_a_report_is_refused(emu: Emulator, body: dict, says: str) -> None:
    status, headers, answer = https(emu, "POST", PATH, body)
    assert (status, headers["iothub-errorcode"]) == (400, "ArgumentInvalid")
    assert says in answer["Message"]
    assert https(emu, "GET", PATH)[2] == []


def test_reports_need_a_service_token_and_the_newest_are_kept(emu: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    status, headers, _ = https(emu, "POST", PATH, {"report": REPORT}, token=False)
    assert status == 401
    assert https(emu, "GET", PATH, token=False)[0] == 401
    device_token = https(emu, "GET", PATH, token="SharedAccessSignature sr=x&sig=y&se=1")
    assert device_token[0] == 401
    monkeypatch.setattr(certification, "MAX_REPORTS", 3)
    ids = [https(emu, "POST", PATH, {"report": REPORT})[2]["id"] for _ in range(5)]
    assert [r["id"] for r in https(emu, "GET", PATH)[2]] == ids[:1:-1]


def test_certify_no_publish_keeps_the_report_from_the_running_emulator(tmp_path: Path) -> None:
    """(That certify posts its reports otherwise is tested with the explorer's page.)"""
    data = tmp_path / "data"
    thread = EmulatorThread(data_dir=data, in_memory=False, mqtt_port=0, https_port=0, durability="normal")
    emu = thread.start()
    try:
        quiet = subprocess.run(
            [sys.executable, "-m", "azure_iot_harness", "certify", "--device-id", "cert-quiet", "--use-running", "--data-dir", str(data),
             "--run", reference_command(), "--check", "connect.connects", "--no-publish"],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert quiet.returncode == 0, quiet.stdout + quiet.stderr
        assert "CERTIFIED: cert-quiet" in quiet.stdout and "report stored" not in quiet.stdout
        assert https(emu, "GET", PATH)[2] == []
    finally:
        thread.stop()
