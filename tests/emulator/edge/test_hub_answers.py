"""How the edge reads the hub's answers to $upstream (pure)."""

from __future__ import annotations

import pytest

from azure_iot_harness.emulator.edge.hub_answers import POISON_AFTER, Answer, HubAnswer, Verdict, backoff, judge


def _judge(kind, code=None, *, edge=None, device=None, closes=0):
    return judge(HubAnswer(kind, "", code), edge_problem=edge, device_problem=device, closes_in_a_row=closes)


@pytest.mark.parametrize(
    "answer, kw, verdict",
    [
        ((Answer.UNREACHABLE,), {}, Verdict.RETRY),
        ((Answer.NO_ANSWER,), {}, Verdict.RETRY),
        ((Answer.REFUSED, 5), {}, Verdict.DROP_DEVICE),
        ((Answer.REFUSED, 5), {"device": "leaf is not registered"}, Verdict.DROP_DEVICE),
        ((Answer.REFUSED, 5), {"edge": "the edge device's keys changed"}, Verdict.RETRY),
        ((Answer.REFUSED, 3), {}, Verdict.RETRY_DEVICE),
        ((Answer.REFUSED, 3), {"device": "leaf is disabled"}, Verdict.DROP_DEVICE),
        ((Answer.REFUSED, 3), {"edge": "the edge device is disabled"}, Verdict.RETRY),
        ((Answer.REFUSED, 2), {}, Verdict.DROP_DEVICE),
        ((Answer.CLOSED,), {"closes": 1}, Verdict.RETRY_DEVICE),
        ((Answer.CLOSED,), {"closes": POISON_AFTER - 1}, Verdict.RETRY_DEVICE),
        ((Answer.CLOSED,), {"closes": POISON_AFTER}, Verdict.DROP_MESSAGE),
    ],
)
def test_judge(answer, kw, verdict):
    assert _judge(*answer, **kw) is verdict


def test_backoff_doubles_up_to_a_cap():
    waits = [backoff(n) for n in range(10)]
    assert waits[:3] == [0.1, 0.2, 0.4] and max(waits) == waits[-1] == 2.0
    assert backoff(10_000) == 2.0


def test_an_answer_reads_well_in_a_log_line():
    assert str(HubAnswer(Answer.REFUSED, "not authorized", 5)) == "refused (CONNACK 5): not authorized"
