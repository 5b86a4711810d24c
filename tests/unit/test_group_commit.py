"""``GroupCommit``, the one batching helper of the stores: requests arriving while a batch is written go together
in the next; a failure is split per request unless it is one that fails the batch's every request."""

from __future__ import annotations

import asyncio

import pytest

from stores._group_commit import GroupCommit


class Unavailable(Exception):
    pass


class Ledger:
    """A write function that records each batch it writes, and refuses requests it is told are bad."""

    def __init__(self, bad: frozenset[str] = frozenset(), away: bool = False) -> None:
        self.batches: list[list[str]] = []
        self.bad = bad
        self.away = away

    async def write(self, requests: list[str]) -> list[str]:
        await asyncio.sleep(0)  # a real write yields to the loop while it is on its way
        if self.away:
            raise Unavailable("away")
        if self.bad & set(requests):
            raise ValueError(f"bad request in {requests}")
        self.batches.append(requests)
        return [f"done:{r}" for r in requests]


async def test_requests_arriving_together_share_a_batch_and_get_their_own_results() -> None:
    ledger = Ledger()
    commit: GroupCommit[str, str] = GroupCommit(ledger.write, max_batch=100)
    results = await asyncio.gather(*(commit.submit(str(i)) for i in range(50)))
    assert results == [f"done:{i}" for i in range(50)]
    assert len(ledger.batches) == 1


async def test_max_batch_caps_a_batch() -> None:
    ledger = Ledger()
    commit: GroupCommit[str, str] = GroupCommit(ledger.write, max_batch=20)
    await asyncio.gather(*(commit.submit(str(i)) for i in range(50)))
    assert [len(b) for b in ledger.batches] == [20, 20, 10]


async def test_a_bad_request_fails_alone() -> None:
    ledger = Ledger(bad=frozenset({"3"}))
    commit: GroupCommit[str, str] = GroupCommit(ledger.write, max_batch=100)
    results = await asyncio.gather(*(commit.submit(str(i)) for i in range(6)), return_exceptions=True)
    assert isinstance(results[3], ValueError)
    assert [r for i, r in enumerate(results) if i != 3] == [f"done:{i}" for i in (0, 1, 2, 4, 5)]


async def test_fail_together_errors_reach_every_request_without_retrying_each() -> None:
    ledger = Ledger(away=True)
    calls: list[int] = []
    original = ledger.write

    async def counted(requests: list[str]) -> list[str]:
        calls.append(len(requests))
        return await original(requests)

    commit: GroupCommit[str, str] = GroupCommit(counted, max_batch=100, fail_together=(Unavailable,))
    results = await asyncio.gather(*(commit.submit(str(i)) for i in range(5)), return_exceptions=True)
    assert all(isinstance(r, Unavailable) for r in results)
    assert calls == [5]


async def test_requests_with_equal_keys_never_share_a_batch() -> None:
    ledger = Ledger()
    commit: GroupCommit[str, str] = GroupCommit(ledger.write, max_batch=100, key=lambda r: r.split(":")[0])
    await asyncio.gather(*(commit.submit(r) for r in ["a:1", "b:1", "a:2", "c:1", "a:3"]))
    assert ledger.batches == [["a:1", "b:1", "c:1"], ["a:2"], ["a:3"]]


async def test_a_cancelled_caller_does_not_cancel_the_batch() -> None:
    ledger = Ledger()
    commit: GroupCommit[str, str] = GroupCommit(ledger.write, max_batch=100)
    leaving = asyncio.create_task(commit.submit("leaving"))
    staying = asyncio.create_task(commit.submit("staying"))
    await asyncio.sleep(0)
    leaving.cancel()
    assert await staying == "done:staying"
    with pytest.raises(asyncio.CancelledError):
        await leaving
    assert ledger.batches == [["leaving", "staying"]]


async def test_a_caller_cancelled_while_its_batch_is_written_leaves_the_writer_and_the_next_batch_alone() -> None:
    """The callers await their own futures: cancelling one while its batch is on the way cancels neither the
    writer nor the others' results, its request is still written, and requests queued meanwhile go next."""
    ledger = Ledger()
    commit: GroupCommit[str, str] = GroupCommit(ledger.write, max_batch=100)
    leaving = asyncio.create_task(commit.submit("leaving"))
    staying = asyncio.create_task(commit.submit("staying"))
    await asyncio.sleep(0)  # both queued, the writer started: the batch is on its way
    later = asyncio.create_task(commit.submit("later"))
    await asyncio.sleep(0)
    leaving.cancel()
    assert await staying == "done:staying"
    assert await later == "done:later"
    with pytest.raises(asyncio.CancelledError):
        await leaving
    assert ledger.batches == [["leaving", "staying"], ["later"]]


def test_max_batch_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_batch must be at least 1, got 0"):
        GroupCommit(Ledger().write, max_batch=0)
