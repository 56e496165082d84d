"""An emulator with the explorer page and an edge, and a real browser (Debian's chromium, driven
by Playwright through its executable path) per test module; every test opens its own page."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from azure_iot_harness.emulator.app import Emulator, EmulatorThread
from azure_iot_harness.errors import ConfigError
from tests.conftest import free_loopback_address

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# What the browser needs as root in a container, and nothing that reaches out on its own.
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def explorer_thread() -> Iterator[EmulatorThread]:
    last: Exception | None = None
    for _ in range(20):  # the edge takes a random loopback address: draw again when it is taken
        thread = EmulatorThread(
            in_memory=True,
            mqtt_port=0,
            https_port=0,
            explorer=True,
            edge=True,
            edge_bind=free_loopback_address(),
            edge_mqtt_port=0,
            dps_assigning_polls=0,
        )
        try:
            thread.start()
        except ConfigError as exc:
            last = exc
            continue
        try:
            yield thread
        finally:
            thread.stop()
        return
    raise ConfigError(f"no free loopback address for the edge: {last}")


@pytest.fixture(scope="module")
def explorer_emulator(explorer_thread: EmulatorThread) -> Emulator:
    return explorer_thread.emulator


expect.set_options(timeout=15_000)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not shutil.which(CHROMIUM):
        pytest.fail(f"no chromium at {CHROMIUM}: `bash scripts/install-tools` installs Debian's chromium")
    with sync_playwright() as p:
        # Playwright gives the browser a fresh temporary profile (--user-data-dir) of its own.
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser: Browser, explorer_emulator: Emulator) -> Iterator[Page]:
    with open_page(browser, explorer_emulator) as pg:
        yield pg


@contextmanager
def open_page(browser: Browser, emulator: Emulator) -> Iterator[Page]:
    """A page of the emulator's explorer in a fresh browser context, failing the test on a script
    error in the page."""
    context = browser.new_context(base_url=emulator.explorer_url, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(15_000)
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.on("dialog", lambda dialog: dialog.accept())
    try:
        yield pg
        assert not errors, f"script errors in the page: {errors}"
    finally:
        context.close()

