"""`serve` shows the explorer page unless told not to: its address in the banner, in `info` and
from `azure-iot-harness explorer`."""

from __future__ import annotations

import urllib.request
from pathlib import Path

from tests.cli_helpers import Serve, run_cli


def test_serve_prints_the_explorer_address_and_serves_the_page(tmp_path: Path) -> None:
    with Serve(tmp_path) as serve:
        url = serve.info["explorer"]["url"]
        assert url.startswith("http://127.0.0.1:") and serve.info["explorer"]["signIn"] is False
        assert f"  explorer:       {url}" in serve.banner
        assert serve.banner[-1].startswith("ready mqtts://")  # the ready line itself is unchanged
        res = run_cli("explorer", "--data-dir", str(tmp_path))
        assert (res.returncode, res.stdout) == (0, url + "\n")
        with urllib.request.urlopen(url + "devices", timeout=30) as resp:
            assert resp.status == 200 and b'data-page="devices"' in resp.read()


def test_no_explorer_means_none(tmp_path: Path) -> None:
    with Serve(tmp_path, "--no-explorer") as serve:
        assert serve.info["explorer"] is None
        assert not any(line.startswith("  explorer:") for line in serve.banner)
        res = run_cli("explorer", "--data-dir", str(tmp_path))
        assert res.returncode == 1 and "--no-explorer" in res.stderr


def test_the_explorer_follows_the_configuration_file(tmp_path: Path) -> None:
    config = tmp_path / "settings.toml"
    config.write_text("explorer = false\n")
    with Serve(tmp_path / "data", "--config", str(config)) as serve:
        assert serve.info["explorer"] is None
    with Serve(tmp_path / "data", "--config", str(config), "--explorer") as serve:  # the flag wins
        assert serve.info["explorer"]["url"].startswith("http://")
