"""The explorer: a page in the browser over the emulator's REST API (issue 19).

`build_explorer(ExplorerContext)` is the ASGI app `Emulator` serves on plain HTTP when
`Config.explorer` is on (`serve` turns it on): `site` holds the routes, `access` who may use
them, `templates/` the pages and `static/` the script, the styles and the vendored chart library.
"""

from __future__ import annotations

from .site import ExplorerContext, build_explorer

__all__ = ["ExplorerContext", "build_explorer"]
