"""`/_emulator/certification/reports`: certify's reports, posted after a run and read back by
the explorer (or anyone). Service SAS (ServiceConnect), as the other `/_emulator` routes.

- `POST /_emulator/certification/reports` `{"report": {certify's JSON}, "html": "...",
  "junit": "..."}` → 201 with the run's summary (`id`, `deviceId`, `profile`, `started`,
  `verdict`, `counts`, …); up to `MAX_REPORT_BYTES`.
- `GET /_emulator/certification/reports` → every run's summary, newest first.
- `GET /_emulator/certification/reports/{id}` → the JSON report as certify wrote it;
  `…/{id}/html` its HTML page, `…/{id}/junit` its JUnit XML; `DELETE …/{id}` removes the run.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from .certification import CertificationReports
from .hub import http

MAX_REPORT_BYTES = 16 * 1024 * 1024  # a long run's trace excerpts, three times over
PATH = "/_emulator/certification/reports"
_MEDIA = {"html": "text/html; charset=utf-8", "junit": "application/xml; charset=utf-8"}


def routes(reports: CertificationReports, authorize: Callable[[Request], None]) -> list[BaseRoute]:
    async def add(request: Request) -> Response:
        authorize(request)
        summary = await reports.add(await http.json_object(request, MAX_REPORT_BYTES))
        return JSONResponse(summary, status_code=201, headers={"Location": f"{PATH}/{summary['id']}"})

    async def listing(request: Request) -> Response:
        authorize(request)
        return JSONResponse(await reports.list())

    async def one(request: Request) -> Response:
        authorize(request)
        return JSONResponse(await reports.get(request.path_params["id"]))

    async def text(request: Request) -> Response:
        authorize(request)
        fmt = request.path_params["format"]
        body = await reports.text(request.path_params["id"], fmt)
        # A page someone posted: shown as a document of its own, never running scripts here.
        return Response(body, media_type=_MEDIA[fmt], headers={"Content-Security-Policy": "sandbox"})

    async def remove(request: Request) -> Response:
        authorize(request)
        await reports.delete(request.path_params["id"])
        return Response(status_code=204)

    return [
        Route(PATH, add, methods=["POST"]),
        Route(PATH, listing, methods=["GET"]),
        Route(PATH + "/{id:int}", one, methods=["GET"]),
        Route(PATH + "/{id:int}", remove, methods=["DELETE"]),
        Route(PATH + "/{id:int}/{format}", text, methods=["GET"]),
    ]
