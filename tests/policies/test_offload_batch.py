"""Inline detector scans of requests that arrive together: the first of a loop turn runs at
once, the rest back to back in one callback at the end of the turn. What a user would
notice if that went wrong: one request getting another's verdict, one request's detector
error failing its neighbours, work done for a request that is already gone, or a lone
request waiting on the loop."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from keeptrusts.policies.base import PolicyEnv
from keeptrusts.policies.offload import run_detector

CALLS: list[str] = []


def shout(text: str) -> str:
    CALLS.append(text)
    if text == "boom":
        raise ValueError("detector failed on this text")
    return text.upper()


def shout_all(calls: list[tuple[str]]) -> list[str]:
    CALLS.append(f"batch of {len(calls)}")
    if any(text == "boom" for (text,) in calls):
        raise ValueError("the batch failed")
    return [text.upper() for (text,) in calls]


def length(text: str) -> int:
    CALLS.append(f"len:{text}")
    return len(text)


@pytest.fixture
def env(tmp_path: Path) -> PolicyEnv:
    CALLS.clear()
    return PolicyEnv(state_dir=tmp_path)


async def test_each_request_gets_its_own_result(env):
    texts = [f"request {i}" for i in range(50)]
    got = await asyncio.gather(*(run_detector(env, len(t), shout, t) for t in texts))
    assert got == [t.upper() for t in texts]


async def test_a_failing_scan_fails_only_its_own_request(env):
    results = await asyncio.gather(
        run_detector(env, 1, shout, "a"),
        run_detector(env, 4, shout, "boom"),
        run_detector(env, 1, shout, "c"),
        return_exceptions=True,
    )
    assert results[0] == "A" and results[2] == "C"
    assert isinstance(results[1], ValueError)


async def test_a_lone_scan_runs_at_once(env):
    task = asyncio.ensure_future(run_detector(env, 1, shout, "solo"))
    await asyncio.sleep(0)  # one step of the task: no extra trip through the loop
    assert task.done() and task.result() == "SOLO"


async def test_scans_due_together_run_back_to_back_per_detector(env):
    async def request(name: str) -> None:
        await run_detector(env, 1, shout, name)
        CALLS.append(f"after {name}")
        await run_detector(env, 1, length, name)

    await asyncio.gather(request("x"), request("y"), request("z"))
    # x's first scan ran at once and x went on; y's and z's first scans ran together,
    # before either of them went on.
    assert CALLS[:2] == ["x", "after x"]
    assert CALLS.index("z") == CALLS.index("y") + 1
    assert CALLS.index("after y") > CALLS.index("z")
    assert len(CALLS) == 9 and {"len:x", "len:y", "len:z"} <= set(CALLS)


async def test_no_work_for_a_request_that_is_gone(env):
    first = asyncio.ensure_future(run_detector(env, 1, shout, "first"))
    gone = asyncio.ensure_future(run_detector(env, 1, shout, "abandoned"))
    kept = asyncio.ensure_future(run_detector(env, 1, shout, "kept"))
    await asyncio.sleep(0)  # "first" ran; the other two are due
    gone.cancel()
    assert await kept == "KEPT" and await first == "FIRST"
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert CALLS == ["first", "kept"]


async def test_a_detector_with_a_batch_form_scans_them_in_one_call(env):
    texts = ["a", "b", "c", "d"]
    got = await asyncio.gather(*(run_detector(env, 1, shout, t, batch=shout_all) for t in texts))
    assert got == ["A", "B", "C", "D"]
    assert CALLS == ["a", "batch of 3"]  # the turn's first at once, then the rest


async def test_a_failing_batch_falls_back_so_the_error_stays_with_its_request(env):
    results = await asyncio.gather(
        *(run_detector(env, 1, shout, t, batch=shout_all) for t in ("a", "b", "boom", "c")),
        return_exceptions=True,
    )
    assert results[0] == "A" and results[1] == "B" and results[3] == "C"
    assert isinstance(results[2], ValueError) and "this text" in str(results[2])
    assert CALLS == ["a", "batch of 3", "b", "boom", "c"]


async def test_a_lone_scan_does_not_use_the_batch_form(env):
    assert await run_detector(env, 1, shout, "solo", batch=shout_all) == "SOLO"
    assert CALLS == ["solo"]
