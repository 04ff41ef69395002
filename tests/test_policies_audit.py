"""Issue 10 lines the first policy tests left unproved: retry backoff with jitter (each attempt's
due time), backfill's own overlap policy, catch-up ``all`` capped by ``buffer_limit``, and
bad policy input at the API's update. Both embedded backends, injected clock."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from omnicron_core import JobValidationError
from omnicron_core._duration import Duration
from omnicron_core._runs import Policy, RetryPolicy, deterministic_jitter
from tests.test_policies import (  # noqa: F401  (fixtures)
    Clock,
    Gate,
    Make,
    clock,
    job,
    m,
    make,
    outcomes,
    settle,
    store_url,
)


async def test_retry_backoff_doubles_is_capped_and_jitters_deterministically(
    make: Make, clock: Clock
) -> None:
    gate = Gate(block=False)
    gate.fail_first = 3
    s = make(gate)
    retry = RetryPolicy(
        attempts=3, backoff=Duration("4ms"), max_backoff=Duration("10ms"), jitter=0.5
    )
    await s.add_job(job(policy=Policy(retry=retry)))
    clock.set(m(1))  # the clock stands still: each attempt is due at m(1) + its delay
    await s.run_due()
    await s.wait_idle()
    records = list(reversed(await s.history("j")))
    assert [(r.attempt, str(r.outcome)) for r in records] == [
        (1, "failed"),
        (2, "failed"),
        (3, "failed"),
        (4, "succeeded"),
    ]
    for record, base_ms in zip(records[1:], (4, 8, 10), strict=True):  # doubled, then capped
        base = timedelta(milliseconds=base_ms)
        extra = deterministic_jitter("j", m(1), base * 0.5, salt=str(record.attempt - 1))
        assert record.due_at == m(1) + base + extra
        assert timedelta(0) <= extra < base * 0.5
    # each attempt's due times differ (the jitter depends on the attempt), recomputable
    assert len({r.due_at for r in records[1:]}) == 3


async def test_backfill_overlap_skip_and_allow_all(make: Make, clock: Clock) -> None:
    gate = Gate()
    s = make(gate)
    await s.add_job(job(created=m(-10), policy=Policy(concurrency=2)))
    clock.set(m(-1) + timedelta(seconds=30))
    task = asyncio.ensure_future(s.backfill("j", m(-9), m(-7), overlap="skip", rate=1000))
    while not gate.started:
        await asyncio.sleep(0.001)
    while not task.done() and len(await s.history("j", outcome="skipped")) < 2:
        await asyncio.sleep(0.001)
    gate.release_all()
    skipped = await task
    assert (skipped.fires, skipped.started, skipped.skipped) == (3, 1, 2)
    assert [(o[0], o[2]) for o in await outcomes(s)] == [
        ("succeeded", m(-9)),
        ("skipped", m(-8)),
        ("skipped", m(-7)),
    ]
    # allow_all: up to the job's concurrency at once
    gate2 = Gate()
    s2 = make(gate2, url="memory://")
    await s2.add_job(job(created=m(-10), policy=Policy(concurrency=2)))
    task2 = asyncio.ensure_future(s2.backfill("j", m(-9), m(-6), overlap="allow_all", rate=1000))
    while len(gate2.started) < 2:
        await asyncio.sleep(0.001)
    for _ in range(20):
        await settle()
        await asyncio.sleep(0.002)
    assert len(gate2.started) == 2  # the third waits for a slot
    gate2.release_all()
    both = await task2
    assert (both.fires, both.started, both.skipped) == (4, 4, 0)
    with pytest.raises(ValueError, match="overlap must be"):
        await s.backfill("j", m(-9), m(-7), overlap="cancel_other")


async def test_catch_up_all_is_capped_by_the_buffer_limit(make: Make, clock: Clock) -> None:
    gate = Gate(block=False)
    s = make(gate)
    await s.add_job(
        job(policy=Policy(catch_up_window=Duration("1h"), catch_up="all", buffer_limit=2))
    )
    clock.set(m(6) + timedelta(seconds=5))  # fires 1..6 due at once
    await s.run_due()
    await s.wait_idle()
    got = await outcomes(s)
    ran = [o[2] for o in got if o[0] == "succeeded"]
    full = [o[2] for o in got if o[0] == "skipped"]
    assert ran == [m(1), m(2), m(3)]  # one runs, two wait (the cap), in order
    assert sorted(full) == [m(4), m(5), m(6)]
    assert len(got) == 6 and len(gate.started) == 3


async def test_bad_policy_on_update_is_located_and_nothing_is_saved(make: Make) -> None:
    s = make(Gate())
    await s.add_job(job(policy=Policy(max_runs=5)))
    bad = job(policy=Policy(start_at=m(10), end_at=m(5)))
    with pytest.raises(JobValidationError) as info:
        await s.update_job(bad)
    assert info.value.field == "policy.end_at"
    stored = await s.get_job("j")
    assert stored.policy == Policy(max_runs=5)
    neg = job(policy=Policy(timeout=Duration(0)))
    with pytest.raises(JobValidationError) as info:
        await s.update_job(neg)
    assert info.value.field == "policy.timeout"
    assert (await s.get_job("j")).policy == Policy(max_runs=5)
