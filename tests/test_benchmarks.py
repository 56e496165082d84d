"""The benchmark harness runs end to end in miniature (no timing is asserted: the numbers only
have to exist and be consistent)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from benchmarks.report import Row, Section, render
from benchmarks.stats import Samples, cell, ratio

ROOT = Path(__file__).parent.parent


def test_cells_and_ratios() -> None:
    assert cell(Samples([3.0, 1.0, 2.0])) == "2.00 (1.00–3.00)"
    assert cell(Samples([12345.0])) == "12,345"
    assert cell(None) == "–"
    assert ratio(Samples([4.0]), Samples([2.0])) == 2.0
    assert ratio(Samples([4.0]), Samples([])) is None
    table = render([Section("x", [Row("ingest", "msg/s", Samples([4.0]), "mosquitto", Samples([2.0]), "≥ 1.0×", True)], ["DPS: not built"])])
    assert "| ingest | msg/s | 4.00 | mosquitto | 2.00 | 2.00× | ≥ 1.0× | yes |" in table
    assert "not measured" in table


def test_harness_runs_a_tiny_configuration(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    res = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--only", "telemetry,connect,memory,dps",
         "--servers", "emulator,mosquitto,amqtt", "--repeat", "1", "--connect-repeat", "1", "--messages", "40", "--publishers", "2",
         "--connections", "4", "--memory-devices", "4", "--dps-devices", "4", "--dps-concurrency", "2", "--settle", "0.1", "--quiet-wait", "0",
         "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    doc = json.loads(out.read_text())
    titles = [s["title"] for s in doc["sections"]]
    assert titles == ["Telemetry ingest", "Connect", "Provisioning storm", "Memory"]
    for section in doc["sections"]:
        for row in section["rows"]:
            assert row["emulator"]["median"] is not None, row
            assert "failed" not in (row["note"] or ""), row
    # Ratios against the amqtt Broker need no mosquitto (the ingest comparison needs mosquitto_sub).
    connect = doc["sections"][1]["rows"]
    assert any(r["against"] == "amqtt Broker" and r["ratio"] for r in connect)
    assert any(r["name"].startswith("Ingest, 2 paho publishers") for r in doc["sections"][0]["rows"])
    assert "| Measurement |" in res.stdout and doc["table"] in res.stdout


def test_the_scale_section_runs_in_miniature(tmp_path: Path) -> None:
    out = tmp_path / "scale.json"
    res = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--only", "scale", "--servers", "emulator", "--idle-devices", "6", "--rate-devices", "3",
         "--rate-per-device", "5", "--rate-seconds", "1", "--settle", "0.1", "--quiet-wait", "0", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    (section,) = json.loads(out.read_text())["sections"]
    names = [r["name"] for r in section["rows"]]
    assert names[0] == "Scale, resident memory per idle connected device (6 connected)"
    assert any(n.endswith("p99 PUBACK latency") for n in names)
    for row in section["rows"]:
        assert row["emulator"]["median"] is not None and not row["note"], row


def test_the_timers_section_measures_what_the_tests_only_assert(tmp_path: Path) -> None:
    # tests/emulator/hub/test_connect.py and tests/emulator/test_web.py assert that these
    # connections end; how soon they end is a figure of this section.
    out = tmp_path / "timers.json"
    res = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--only", "timers", "--servers", "emulator,mosquitto", "--repeat", "1",
         "--quiet-wait", "0", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    [section] = json.loads(out.read_text())["sections"]
    assert section["title"] == "Timers"
    names = {row["name"] for row in section["rows"]}
    assert names == {
        "Keep-alive 1 s, nothing sent: closed after",
        "SAS token valid 2 s: closed after its expiry by",
        "Stop, in-process Emulator with an idle HTTPS keep-alive connection",
    }
    assert all(row["emulator"]["median"] is not None for row in section["rows"])


def test_the_memory_breakdown_runs_in_miniature() -> None:
    res = subprocess.run(
        [sys.executable, "-m", "benchmarks.memory_cost", "--devices", "8", "--top", "5"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    head, columns, *lines = res.stdout.splitlines()
    assert re.fullmatch(r"8 idle devices: resident memory \+[\d.]+ KB each .*, Python heap \+[\d.]+ KB each", head), head
    assert columns.split() == ["bytes", "objects", "where"]
    assert len(lines) == 5 and all(re.match(r"\s*-?\d+\s+-?[\d.]+\s+\S+:\d+", ln) for ln in lines), lines
