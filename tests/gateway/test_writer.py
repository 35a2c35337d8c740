"""The batch writer with a stand-in for the store: group commit, spooling while the store
fails, draining in order, and a row the store keeps refusing set aside, not lost."""

from __future__ import annotations

import asyncio
import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

from gateway.spool import Spool
from gateway.writer import BatchWriter, WorkItem
from store.records import IngestBatch, PositionRow, WriteResult

START = datetime(2026, 6, 1, tzinfo=UTC)


def _item(index: int, done: list[int]) -> WorkItem:
    row = PositionRow("T1", START + timedelta(seconds=index), START, "jt808", True, 31.0, 121.0)
    return WorkItem([row], [], lambda: done.append(index))


class FlakyStore:
    """Fails while ``down`` is set; refuses rows whose second is in ``poison`` even when up."""

    def __init__(self) -> None:
        self.down = threading.Event()
        self.poison: set[int] = set()
        self.rows: list[int] = []
        self.batches: list[int] = []

    def write(self, batch: IngestBatch) -> WriteResult:
        if self.down.is_set():
            raise ConnectionError("database is down")
        seconds = [int((p.fix_time - START).total_seconds()) for p in batch.positions]
        if self.poison & set(seconds):
            raise ValueError("row refused")
        self.rows.extend(seconds)
        self.batches.append(len(seconds))
        return WriteResult(inserted=len(seconds))

    def probe(self) -> None:
        if self.down.is_set():
            raise ConnectionError("database is down")


def _run(store: FlakyStore, tmp_path: Path, scenario: object) -> list[IngestBatch]:
    committed: list[IngestBatch] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()

        def on_durable(items: list[WorkItem], batch: IngestBatch | None) -> None:
            for item in items:
                if item.on_durable:
                    item.on_durable()
            if batch is not None and len(batch):
                committed.append(batch)

        writer = BatchWriter(
            lambda: store.write,
            Spool(tmp_path / "spool", 1_000_000),
            loop,
            on_durable,
            batch_max_rows=1000,
            queue_max_frames=1000,
            probe=store.probe,
        )
        writer.start()
        try:
            await scenario(writer)  # type: ignore[operator]
        finally:
            await loop.run_in_executor(None, writer.stop)

    asyncio.run(main())
    return committed


async def _until(check: object, timeout: float = 10.0) -> None:
    for _ in range(int(timeout / 0.01)):
        if check():  # type: ignore[operator]
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met")


def test_spooled_while_down_acknowledged_then_drained_in_order(tmp_path: Path) -> None:
    store = FlakyStore()
    done: list[int] = []

    async def scenario(writer: BatchWriter) -> None:
        for index in range(5):
            writer.submit(_item(index, done))
        await _until(lambda: len(done) == 5)
        store.down.set()
        for index in range(5, 15):
            writer.submit(_item(index, done))
        await _until(lambda: len(done) == 15)  # acknowledged from the spool
        assert not writer.database_ok and writer.spool.records > 0
        store.down.clear()
        for index in range(15, 20):
            writer.submit(_item(index, done))
        await _until(lambda: len(done) == 20 and writer.spool.empty and len(store.rows) == 20)

    committed = _run(store, tmp_path, scenario)
    assert done == list(range(20))
    assert store.rows == list(range(20))  # oldest first: nothing overtook the spool
    assert sorted(int((p.fix_time - START).total_seconds()) for b in committed for p in b.positions) == list(
        range(20)
    )


def test_a_row_the_store_refuses_is_set_aside_and_the_rest_drains(tmp_path: Path) -> None:
    store = FlakyStore()
    store.poison = {3}
    done: list[int] = []

    async def scenario(writer: BatchWriter) -> None:
        for index in range(6):
            writer.submit(_item(index, done))
        await _until(lambda: len(done) == 6 and writer.spool.empty)

    _run(store, tmp_path, scenario)
    assert sorted(store.rows) == [0, 1, 2, 4, 5]
    rejected = (tmp_path / "spool" / "rejected.jsonl").read_text().splitlines()
    assert len(rejected) == 1 and json.loads(rejected[0])["p"][0][1].startswith("2026-06-01T00:00:03")
