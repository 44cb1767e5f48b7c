"""ray-job's registry journal against the real GCS of the session's cluster: group commit,
read back in order, compaction to the live records, stale generations gone."""

from __future__ import annotations

import asyncio
import uuid

import pytest

pytestmark = pytest.mark.ray


@pytest.fixture
def journal_ns(ray_cluster, monkeypatch):
    from raydrive.drivers.ray.connection import connect
    from raydrive.drivers.ray_job import journal

    connect(ray_cluster.address)
    namespace = f"raydrive-test-journal-{uuid.uuid4().hex[:8]}"
    monkeypatch.setattr(journal, "KV_NAMESPACE", namespace)
    yield namespace
    from raydrive.drivers.ray.compat import kv_del

    kv_del(b"", namespace, by_prefix=True)


def test_events_come_back_in_order_and_compaction_keeps_only_the_live(journal_ns, monkeypatch):
    from raydrive.drivers.ray.compat import kv_list
    from raydrive.drivers.ray_job import journal

    monkeypatch.setattr(journal, "COMPACT_AFTER", 4)
    live: list[tuple] = []

    async def scenario() -> int:
        log = journal.JobJournal(lambda: list(live))
        assert log.load() == []
        writes = 0
        for n in range(12):
            event = ("accept", f"job-{n}", {"n": n}, 0.0, False)
            log.record(event)
            live.append(event)
            await log.commit()  # one segment per commit here: compaction comes every few
            writes += 1
        return writes

    assert asyncio.run(scenario()) == 12
    back = journal.JobJournal(lambda: [])
    assert back.load() == live  # every event, in order, whatever was compacted
    generations = {key.split(b"/")[0] for key in kv_list(b"g", journal_ns)}
    assert len(generations) == 1  # the old generations were deleted


def test_a_burst_of_records_is_one_write(journal_ns):
    from raydrive.drivers.ray.compat import kv_list
    from raydrive.drivers.ray_job import journal

    async def burst() -> None:
        log = journal.JobJournal(lambda: [])
        log.load()
        for n in range(200):
            log.record(("accept", f"job-{n}", {}, 0.0, False))
        await log.commit()

    asyncio.run(burst())
    assert len(kv_list(b"g", journal_ns)) == 1
    assert len(journal.JobJournal(lambda: []).load()) == 200
