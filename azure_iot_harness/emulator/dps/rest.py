"""DPS's device REST API on the HTTPS port, beside the hub's service API.

`PUT /{idScope}/registrations/{id}/register`, `GET /{idScope}/registrations/{id}/operations/{op}`
and `POST /{idScope}/registrations/{id}` (status lookup). A device authenticates with
`Authorization: SharedAccessSignature …` (skn=registration) or, without that header, with the
certificates it presented in the TLS handshake (its own and the intermediates).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from . import http
from .attestation import Attestation
from .context import DpsContext


def routes(ctx: DpsContext) -> list[BaseRoute]:
    dps = ctx.dps

    def attest(request: Request) -> Attestation:
        scope, registration_id = request.path_params["scope"], request.path_params["rid"]
        header = request.headers.get("authorization")
        chain = () if header else ctx.client_chain(request.scope)
        return dps.authenticate(scope, registration_id, password=header, chain=chain)

    async def register(request: Request) -> Response:
        att = attest(request)
        return http.answer_response(await dps.register(att, await http.body(request)))

    async def operation(request: Request) -> Response:
        att = attest(request)
        return http.answer_response(dps.poll(att.registration_id, request.path_params["op"]))

    async def lookup(request: Request) -> Response:
        att = attest(request)
        await http.body(request)  # a DeviceRegistration may come along; the credentials decide
        return http.answer_response(dps.lookup(att.registration_id))

    return [
        Route("/{scope}/registrations/{rid}/register", http.answering(register, dps.clock), methods=["PUT"]),
        Route("/{scope}/registrations/{rid}/operations/{op}", http.answering(operation, dps.clock), methods=["GET"]),
        Route("/{scope}/registrations/{rid}", http.answering(lookup, dps.clock), methods=["POST"]),
    ]
