"""DPS's device REST API on the HTTPS port, beside the hub's service API.

`PUT /{idScope}/registrations/{id}/register`, `GET /{idScope}/registrations/{id}/operations/{op}`
and `POST /{idScope}/registrations/{id}` (status lookup). A device authenticates with
`Authorization: SharedAccessSignature …` (skn=registration) or, without that header, with the
certificate it presented in the TLS handshake.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ..tls import client_certificate
from . import http
from .attestation import Attestation

if TYPE_CHECKING:
    from ..app import Emulator


def routes(emulator: "Emulator") -> list[BaseRoute]:
    def attest(request: Request) -> Attestation:
        dps = emulator.dps
        scope, registration_id = request.path_params["scope"], request.path_params["rid"]
        header = request.headers.get("authorization")
        certificate = None if header else client_certificate(request.scope)
        return dps.authenticate(scope, registration_id, password=header, certificate=certificate)

    async def register(request: Request) -> Response:
        att = attest(request)
        return http.answer_response(await emulator.dps.register(att, await http.body(request)))

    async def operation(request: Request) -> Response:
        att = attest(request)
        return http.answer_response(emulator.dps.poll(att.registration_id, request.path_params["op"]))

    async def lookup(request: Request) -> Response:
        att = attest(request)
        await http.body(request)  # a DeviceRegistration may come along; the credentials decide
        return http.answer_response(emulator.dps.lookup(att.registration_id))

    return [
        Route("/{scope}/registrations/{rid}/register", http.answering(register), methods=["PUT"]),
        Route("/{scope}/registrations/{rid}/operations/{op}", http.answering(operation), methods=["GET"]),
        Route("/{scope}/registrations/{rid}", http.answering(lookup), methods=["POST"]),
    ]
