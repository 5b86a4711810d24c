"""``cqrs-scheduling workers``: the live fleet and the recently gone, read from the store's worker registry."""

from __future__ import annotations

from datetime import UTC, datetime

from stores.base import ScheduledCommandStore

from ._common import JsonOption, StoreOption, _console, _emit_json, _run_with_store, _when


def workers(store: StoreOption = None, as_json: JsonOption = False) -> None:
    """Every registered worker: host, pid, state (running, stopping, gone), entries held, queues, command types,
    last heartbeat; and how many entries are stuck with gone workers."""
    from scheduling.workers import Fleet

    async def work(opened: ScheduledCommandStore) -> int:
        fleet = await Fleet.read(opened, datetime.now(UTC))
        if as_json:
            _emit_json(fleet.model_dump(mode="json"))
            return 0
        from rich.table import Table

        table = Table("worker", "host", "pid", "state", "running", "queues", "command types", "last seen", "started")
        for worker in fleet.workers:
            table.add_row(
                worker.worker_id,
                worker.host,
                str(worker.pid),
                worker.state,
                str(worker.running),
                ", ".join(worker.queues) or "(all)",
                ", ".join(name.rsplit(".", 1)[-1] for name in worker.command_types) or "(none)",
                _when(worker.last_seen_at, fleet.now),
                _when(worker.started_at, fleet.now),
            )
        console = _console()
        console.print(table, markup=False)
        console.print(", ".join(f"{count} {state}" for state, count in fleet.by_state.items()))
        if fleet.stuck:
            console.print(
                f"{fleet.stuck} stuck: PROCESSING under an expired lease (worker gone; a live worker recovers them)"
            )
        return 0

    _run_with_store(store, work)
