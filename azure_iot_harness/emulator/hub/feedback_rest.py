"""The service REST API's feedback routes: `GET /messages/serviceBound/feedback` (a batch under a
lock token, 204 when none), `DELETE …/feedback/{lockToken}` (complete),
`POST …/feedback/{lockToken}/abandon`. ServiceConnect, as IoT Hub asks."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ...config import SERVICE_CONNECT
from ..protocol.errors import hub_error
from .context import HubContext
from .feedback import CONTENT_TYPE, Feedback
from .http import endpoint

PATH = "/messages/serviceBound/feedback"


def routes(hub: HubContext, feedback: Feedback) -> list[BaseRoute]:
    async def receive(request: Request) -> Response:
        batch = feedback.take()
        if batch is None:
            return Response(status_code=204)
        return Response(batch.body, media_type=CONTENT_TYPE, headers={"ETag": f'"{batch.lock_token}"', "iothub-sequencenumber": str(batch.seq)})

    async def complete(request: Request) -> Response:
        if not feedback.complete(_token(request)):
            raise hub_error("PreconditionFailed", f"no feedback batch is locked with {_token(request)!r}")
        return Response(status_code=204)

    async def abandon(request: Request) -> Response:
        if not feedback.abandon(_token(request)):
            raise hub_error("PreconditionFailed", f"no feedback batch is locked with {_token(request)!r}")
        return Response(status_code=204)

    return [
        Route(PATH, endpoint(hub, receive, SERVICE_CONNECT), methods=["GET"]),
        Route(PATH + "/{token}", endpoint(hub, complete, SERVICE_CONNECT), methods=["DELETE"]),
        Route(PATH + "/{token}/abandon", endpoint(hub, abandon, SERVICE_CONNECT), methods=["POST"]),
    ]


def _token(request: Request) -> str:
    return request.path_params["token"].strip('"')
