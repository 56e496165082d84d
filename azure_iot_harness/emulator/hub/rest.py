"""IoT Hub's service REST API (identity registry). Filled in by the registry REST work."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.routing import BaseRoute

if TYPE_CHECKING:
    from ..app import Emulator


def routes(emulator: "Emulator") -> list[BaseRoute]:
    return []
