"""`client dps-mqtt`: provisioning over raw MQTT, as a user does it by hand in an MQTT client.

Client id = registration id, username `{idScope}/registrations/{id}/api-version=2019-03-31&…`
(no `?`), password a SAS token with `skn=registration` (individual or group-derived key) or a
client certificate; subscribe `$dps/registrations/res/#`, publish the register request, poll
with the operation id after each `retry-after`, print the assignment. `--then-send N` connects
to the assigned hub with the same credentials and sends telemetry.
"""

from __future__ import annotations

import argparse
import json
import queue
import time

from .common import ClientError, WorkDir
from .dps_common import (
    POLL_TOPIC,
    REGISTER_TOPIC,
    RESPONSE_FILTER,
    DpsTarget,
    add_dps_arguments,
    assignment_result,
    dps_failure,
    parse_response_topic,
    print_assignment,
    registration_body,
    resolve_dps,
    send_after_assignment,
)
from .link import MqttLink

HELP = "provisioning over raw MQTT (SAS individual or group key, or X.509), then telemetry with --then-send"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_dps_arguments(p, default_port=8883)


def run(args: argparse.Namespace) -> int:
    work = WorkDir(None, "dps-mqtt")
    try:
        dps = resolve_dps(args, work, rest=False)
        body = registration_body(args, dps.registration_id)
        state = register(dps, body, args)
        print_assignment(state)
        return send_after_assignment(dps, state, args)
    finally:
        work.cleanup()


def register(dps: DpsTarget, body: bytes, args: argparse.Namespace) -> dict:
    link = MqttLink(
        address=dps.address,
        port=dps.port,
        client_id=dps.registration_id,
        username=dps.mqtt_username(),
        password=dps.token(args.ttl),
        tls=dps.ssl_context(),
        ca_file=dps.ca_file,
        what="DPS",
    )
    answers: queue.Queue = queue.Queue()
    link.on_message = answers.put
    link.connect()
    print(f"connected to {dps.describe('mqtts')}", flush=True)
    try:
        link.subscribe(RESPONSE_FILTER, qos=1)
        deadline = time.monotonic() + args.timeout
        rid = 1
        topic, payload = REGISTER_TOPIC.format(rid=rid), body
        while True:
            link.publish(topic, payload, qos=1)
            print(f"published {topic}", flush=True)
            status, params, answer = _answer(link, answers, str(rid), deadline)
            if status == 200:
                print(f"answer {status}: {answer.get('status')}", flush=True)
                return assignment_result(answer)
            print(f"answer {status}: {json.dumps(answer)}", flush=True)
            if status == 202 or status == 429 or status >= 500:  # SDKs retry these after retry-after
                operation = answer.get("operationId") if status == 202 else None
                wait = float(params.get("retry-after") or 2)
                if time.monotonic() + wait > deadline:
                    raise ClientError(f"DPS did not assign the registration within {args.timeout:g} s")
                time.sleep(wait)
                rid += 1
                if operation:
                    topic, payload = POLL_TOPIC.format(rid=rid, op=operation), b""
                elif topic.startswith("$dps/registrations/PUT/"):  # throttled: register again
                    topic = REGISTER_TOPIC.format(rid=rid)
                else:  # a poll answered 429/5xx: poll again
                    topic = topic.replace(f"$rid={rid - 1}&", f"$rid={rid}&")
                continue
            raise dps_failure(status, answer)
    finally:
        link.close()


def _answer(link: MqttLink, answers: queue.Queue, rid: str, deadline: float) -> tuple[int, dict, dict]:
    """The answer to request `rid`: (status, topic parameters, body)."""
    while True:
        try:
            msg = answers.get(timeout=max(0.0, min(deadline - time.monotonic(), 0.5)))
        except queue.Empty:
            if not link.connected:
                raise ClientError("DPS closed the connection") from None
            if time.monotonic() >= deadline:
                raise ClientError("DPS did not answer in time") from None
            continue
        parsed = parse_response_topic(msg.topic)
        if parsed is None or parsed[1].get("$rid") != rid:
            continue
        try:
            answer = json.loads(msg.payload or b"{}")
        except ValueError:
            answer = {"raw": msg.payload.decode(errors="replace")}
        return parsed[0], parsed[1], answer
