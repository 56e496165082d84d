"""The long certify runs (`certify_long`) are left out of the default suite (deselected, not
skipped): `pytest -m certify_long tests/certify` runs them."""

from __future__ import annotations

import pytest

from ..node.test_node_sdks import node  # noqa: F401 -- the fixture that installs the Node.js SDKs (node_sdk_device.js)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if "certify_long" in (config.option.markexpr or ""):
        return
    long = [item for item in items if item.get_closest_marker("certify_long")]
    if long:
        config.hook.pytest_deselected(items=long)
        items[:] = [item for item in items if not item.get_closest_marker("certify_long")]
