"""`client dps-rest`: provisioning over DPS's device REST API, as the docs' curl examples do it.

`PUT https://{dps}/{idScope}/registrations/{id}/register?api-version=2021-06-01` with
`Authorization: SharedAccessSignature …skn=registration` (individual or group-derived key) or a
TLS client certificate, then `GET …/operations/{operationId}` after each `Retry-After` until the
registration is assigned. `--then-send N` connects to the assigned hub over MQTT and sends
telemetry with the same credentials.
"""

from __future__ import annotations

import argparse
import http.client
import json
import ssl
import time
import urllib.parse

from .common import ClientError, WorkDir, tls_failure
from .dps_common import (
    REST_API_VERSION,
    DpsTarget,
    add_dps_arguments,
    assignment_result,
    dps_failure,
    print_assignment,
    registration_body,
    resolve_dps,
    send_after_assignment,
)

HELP = "provisioning over DPS's REST API (SAS header or client certificate), then telemetry with --then-send"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_dps_arguments(p, default_port=443)


def run(args: argparse.Namespace) -> int:
    work = WorkDir(None, "dps-rest")
    try:
        dps = resolve_dps(args, work, rest=True)
        state = register(dps, registration_body(args, dps.registration_id), args)
        print_assignment(state)
        return send_after_assignment(dps, state, args)
    finally:
        work.cleanup()


def register(dps: DpsTarget, body: bytes, args: argparse.Namespace) -> dict:
    base = f"/{urllib.parse.quote(dps.id_scope, safe='')}/registrations/{urllib.parse.quote(dps.registration_id, safe='')}"
    query = f"?api-version={REST_API_VERSION}"
    print(f"using {dps.describe('https')}", flush=True)
    deadline = time.monotonic() + args.timeout
    method, path, payload = "PUT", f"{base}/register{query}", body
    while True:
        status, headers, answer = _request(dps, method, path, payload, args.ttl)
        if status == 200:
            print(f"{method} {path} -> {status}: {answer.get('status')}", flush=True)
            return assignment_result(answer)
        print(f"{method} {path} -> {status}: {json.dumps(answer)}", flush=True)
        if status in (202, 429) or status >= 500:  # retried after Retry-After
            wait = float(headers.get("retry-after") or 2)
            if time.monotonic() + wait > deadline:
                raise ClientError(f"DPS did not assign the registration within {args.timeout:g} s")
            time.sleep(wait)
            operation = answer.get("operationId") if status == 202 else None
            if operation:
                method, path, payload = "GET", f"{base}/operations/{urllib.parse.quote(operation, safe='')}{query}", None
            continue
        raise dps_failure(status, answer)


def _request(dps: DpsTarget, method: str, path: str, body: bytes | None, ttl: int) -> tuple[int, dict, dict]:
    headers = {"Accept": "application/json", "User-Agent": "azure-iot-harness"}
    if body is not None:
        headers.update({"Content-Type": "application/json", "Content-Encoding": "utf-8"})
    token = dps.token(ttl)
    if token:
        headers["Authorization"] = token
    conn = http.client.HTTPSConnection(dps.address, dps.port, context=dps.ssl_context(), timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        raw = resp.read()
        answer_headers = {k.lower(): v for k, v in resp.getheaders()}
    except (OSError, ssl.SSLError) as exc:
        raise tls_failure(exc, dps.address, dps.port, dps.ca_file, "DPS") from None
    except http.client.HTTPException as exc:
        raise ClientError(f"DPS at {dps.address}:{dps.port} answered something that is not HTTP: {exc}") from None
    finally:
        conn.close()
    try:
        answer = json.loads(raw) if raw.strip() else {}
    except ValueError:
        answer = {"raw": raw.decode(errors="replace")[:300]}
    return resp.status, answer_headers, answer if isinstance(answer, dict) else {"raw": answer}
