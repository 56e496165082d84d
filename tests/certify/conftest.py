"""tests/certify's fixtures. Its long runs (`certify_long`) are left out of the default suite by
tests/conftest.py: `pytest -m certify_long tests/certify` runs them."""

from __future__ import annotations

from ..node.test_node_sdks import node  # noqa: F401 -- the fixture that installs the Node.js SDKs (node_sdk_device.js)
