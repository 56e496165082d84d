"""Emulators for the client variants: one `serve` per test module and xdist worker, each with its
own data folder. The tools the variants run (mosquitto, Node-RED) are fixtures of tests/conftest.py."""

from __future__ import annotations

import pytest

from tests.clients.helpers import ServeWith


def _serve(tmp_path_factory: pytest.TempPathFactory, *extra: str):
    # DPS answers "assigning" once, with retry-after 1 s: the variants poll, and quickly.
    serve = ServeWith(tmp_path_factory.mktemp("clients"), *extra, AZURE_IOT_HARNESS_DPS_RETRY_AFTER="1")
    with serve:
        yield serve


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory):
    """`serve` on ephemeral ports."""
    yield from _serve(tmp_path_factory)


@pytest.fixture(scope="module")
def edge_hub(tmp_path_factory: pytest.TempPathFactory):
    """`serve --edge`: the edgeHub on an ephemeral port of 127.0.0.2."""
    yield from _serve(tmp_path_factory, "--edge", "--edge-mqtt-port", "0")
