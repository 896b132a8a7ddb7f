"""The Judge: what one attempt at a pod says about the pod, decided in one place."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from headless_resolver import PassiveHealth
from headless_resolver._verdict import DEFAULT_FAILURE_STATUSES, Judge, Verdict

REQUEST = httpx.Request("GET", "http://web.default.svc.cluster.local/")


def test_only_the_failure_statuses_are_failing_answers() -> None:
    judge = Judge({500})
    assert judge.answer(500) is Verdict.FAILING_STATUS
    assert [judge.answer(status) for status in (200, 404, 502, 503)] == [Verdict.OK] * 4
    assert Judge().failure_statuses == DEFAULT_FAILURE_STATUSES == {502, 503, 504}
    assert PassiveHealth().failure_statuses == DEFAULT_FAILURE_STATUSES


@pytest.mark.parametrize(
    ("error", "verdict"),
    [
        (httpx.ConnectError("refused", request=REQUEST), Verdict.CONNECT_FAILURE),
        (httpx.ConnectTimeout("slow accept", request=REQUEST), Verdict.CONNECT_FAILURE),
        (httpx.ReadError("reset", request=REQUEST), Verdict.CONNECT_FAILURE),
        (httpx.RemoteProtocolError("no response", request=REQUEST), Verdict.CONNECT_FAILURE),
        (httpx.ReadTimeout("slow answer", request=REQUEST), Verdict.TIMEOUT),
        (httpx.WriteTimeout("slow read", request=REQUEST), Verdict.TIMEOUT),
        (httpx.PoolTimeout("own pool full", request=REQUEST), Verdict.NOT_THE_PODS),
        (httpx.LocalProtocolError("bad header", request=REQUEST), Verdict.NOT_THE_PODS),
        (asyncio.CancelledError(), Verdict.NOT_THE_PODS),
        (KeyboardInterrupt(), Verdict.NOT_THE_PODS),
    ],
)
def test_errors_before_the_answer(error: BaseException, verdict: Verdict) -> None:
    assert Judge().error(error) is verdict


@pytest.mark.parametrize(
    ("error", "verdict"),
    [
        (httpx.ReadError("reset", request=REQUEST), Verdict.BODY_CUT_SHORT),
        (httpx.RemoteProtocolError("incomplete body", request=REQUEST), Verdict.BODY_CUT_SHORT),
        (httpx.ReadTimeout("stalled", request=REQUEST), Verdict.TIMEOUT),
        (asyncio.CancelledError(), Verdict.NOT_THE_PODS),
    ],
)
def test_errors_while_reading_the_body(error: BaseException, verdict: Verdict) -> None:
    assert Judge().body_error(error) is verdict


def test_a_verdict_reads_as_the_ok_of_older_strategies() -> None:
    assert [bool(verdict) for verdict in Verdict] == [v is Verdict.OK for v in Verdict]
    assert Verdict.of(True) is Verdict.OK
    assert Verdict.of(False) is Verdict.CONNECT_FAILURE
    assert Verdict.of(False, 503) is Verdict.FAILING_STATUS
    assert Verdict.of(Verdict.TIMEOUT, 200) is Verdict.TIMEOUT
