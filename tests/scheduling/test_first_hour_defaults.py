"""What a newcomer gets without asking: the durable default store, stores that open themselves and are closed by
whoever opened them, a clear refusal of commands no worker could import, and start-up hooks."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from injector import Injector
from scheduling_app import START, Record, make_app

from mediator import MediatorModule
from scheduling import CommandScheduler, ManualClock, ScheduledCommandService, SchedulingModule
from scheduling.errors import UnimportableCommandError
from stores import MemoryStore, ScheduledCommandStore, SqlStore
from stores.default import DEFAULT_STORE_URL, STORE_ENV, default_store_url
from stores.errors import StoreUnavailableError


def _store_of(module: SchedulingModule) -> ScheduledCommandStore:
    return Injector([MediatorModule(handlers=[]), module]).get(ScheduledCommandStore)  # type: ignore[type-abstract]


@pytest.mark.parametrize(
    ("explicit", "environment", "expected"),
    [
        (None, None, DEFAULT_STORE_URL),
        (None, "sqlite:///from-env.db", "sqlite:///from-env.db"),
        ("sqlite:///explicit.db", "sqlite:///from-env.db", "sqlite:///explicit.db"),
    ],
)
def test_default_store_url_is_explicit_then_environment_then_sqlite(
    explicit: str | None, environment: str | None, expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One rule for the CLI's --store and SchedulingModule(): explicit, $CQRS_SCHEDULING_STORE, the SQLite file."""
    if environment is None:
        monkeypatch.delenv(STORE_ENV, raising=False)
    else:
        monkeypatch.setenv(STORE_ENV, environment)
    assert default_store_url(explicit) == expected


def test_scheduling_module_without_a_store_uses_the_environment_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SchedulingModule() names no store: a SqlStore on $CQRS_SCHEDULING_STORE, never a MemoryStore."""
    monkeypatch.setenv(STORE_ENV, f"sqlite:///{tmp_path / 'env.db'}")
    store = _store_of(SchedulingModule())
    assert isinstance(store, SqlStore)
    assert store.url == f"sqlite+aiosqlite:///{tmp_path / 'env.db'}"


def test_scheduling_module_without_store_or_environment_uses_the_embedded_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(STORE_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    store = _store_of(SchedulingModule())
    assert isinstance(store, SqlStore)
    assert store.url == "sqlite+aiosqlite:///scheduled-commands.db"


def _in_main(command_class: type) -> type:
    """The class as a script run with ``python script.py`` defines it."""
    command_class.__module__ = "__main__"
    return command_class


async def test_schedule_refuses_a_command_class_of_main_on_a_durable_store(tmp_path: Path) -> None:
    """A worker process can never import __main__.X: refused with what to do, and nothing is stored."""

    class Script(Record):
        pass

    _in_main(Script)
    store = SqlStore(f"sqlite:///{tmp_path / 'durable.db'}")
    app = make_app(store=store, handlers=[_handler_for(Script)])
    try:
        with pytest.raises(UnimportableCommandError) as raised:
            await app.scheduler.schedule(Script(value="x"))
        message = str(raised.value)
        assert "__main__" in message and "importable module" in message and "MemoryStore" in message
        with pytest.raises(UnimportableCommandError):
            await app.scheduler.schedule_many([Record(value="ok"), Script(value="x")])
        with pytest.raises(UnimportableCommandError):  # refused again: a refused class is not remembered
            await app.scheduler.schedule(Script(value="x"))

        class Unhandled(Record):
            pass

        _in_main(Unhandled)  # both refusals apply: the same one, alone or in a batch
        with pytest.raises(UnimportableCommandError):
            await app.scheduler.schedule(Unhandled(value="x"))
        with pytest.raises(UnimportableCommandError):
            await app.scheduler.schedule_many([Unhandled(value="x")])
        assert sum((await store.count_by_status()).values()) == 0
    finally:
        await store.close()


async def test_a_memory_store_accepts_a_command_class_of_main() -> None:
    """One process schedules and runs: the class is importable where it runs."""

    class Script(Record):
        pass

    _in_main(Script)
    app = make_app(store=MemoryStore(), handlers=[_handler_for(Script)])
    await app.scheduler.schedule(Script(value="x"))
    assert await app.service.run_until_idle() == 1


def _handler_for(command_class: type) -> type:
    from mediator import CommandHandler

    class Handler(CommandHandler[command_class, None]):  # type: ignore[valid-type]
        async def handle(self, command: object) -> None:
            return None

    return Handler


async def test_a_store_opens_itself_on_first_use_and_the_service_closes_what_it_opened(tmp_path: Path) -> None:
    """No open(): schedule() opens the store; the service takes it over and closes it when it stops."""
    store = SqlStore(f"sqlite:///{tmp_path / 'lazy.db'}")
    app = make_app(store=store)
    command_id = await app.scheduler.schedule(Record(value="a"))  # first use opens it
    assert not store.opened_explicitly
    assert await app.service.run_until_idle() == 1
    assert store._engine is None, "the service closed the store it opened"
    entry = await app.scheduler.get_status(command_id)  # and it opens again on next use
    assert entry is not None and entry.status == "COMPLETED"
    async with app.service:
        pass
    assert store._engine is None
    await store.close()


async def test_the_service_leaves_open_a_store_its_caller_opened(tmp_path: Path) -> None:
    store = SqlStore(f"sqlite:///{tmp_path / 'explicit.db'}")
    app = make_app(store=store)
    async with store:
        async with app.service:
            pass
        assert store.opened_explicitly
        assert await app.scheduler.schedule(Record(value="still open"))
    assert not store.opened_explicitly and store._engine is None


async def test_open_fails_fast(tmp_path: Path) -> None:
    """An explicit open() reports an unusable store at once."""
    store = SqlStore(f"sqlite:///{tmp_path / 'missing' / 'dir.db'}")
    with pytest.raises(StoreUnavailableError, match="does not exist"):
        await store.open()


async def test_start_up_hooks_run_once_before_the_first_claim() -> None:
    """SchedulingModule(on_start=[...]): called with the scheduler when the service starts, once per service."""
    calls: list[CommandScheduler] = []

    async def hook(scheduler: CommandScheduler) -> None:
        calls.append(scheduler)
        await scheduler.schedule(Record(value="from the hook"))

    injector = Injector(
        [
            MediatorModule(handlers=_record_handlers()),
            SchedulingModule(store=MemoryStore(), clock=ManualClock(START), on_start=[hook]),
        ]
    )
    service = injector.get(ScheduledCommandService)
    assert await service.run_until_idle() == 1
    assert await service.run_until_idle() == 0
    assert calls == [injector.get(CommandScheduler)]


async def test_a_failing_start_up_hook_stops_the_start() -> None:
    async def hook(scheduler: CommandScheduler) -> None:
        raise RuntimeError("bad declaration")

    injector = Injector(
        [
            MediatorModule(handlers=_record_handlers()),
            SchedulingModule(store=MemoryStore(), clock=ManualClock(START), on_start=[hook]),
        ]
    )
    service = injector.get(ScheduledCommandService)
    with pytest.raises(RuntimeError, match="bad declaration"):
        await service.start()
    assert not service.is_running


def _record_handlers() -> list[type]:
    from scheduling_app import HANDLERS

    return list(HANDLERS)


def test_a_store_open_in_a_running_loop_refuses_another_loop(tmp_path: Path) -> None:
    """Two threads' event loops cannot share one open store: the second is told so, the first keeps it."""
    import asyncio
    import threading

    store = SqlStore(f"sqlite:///{tmp_path / 'threads.db'}")
    opened, release = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    async def hold_open() -> None:
        async with store:
            opened.set()
            while not release.is_set():
                await asyncio.sleep(0.01)

    owner = threading.Thread(target=asyncio.run, args=(hold_open(),))
    owner.start()
    try:
        assert opened.wait(10)

        async def use_elsewhere() -> None:
            try:
                await store.count_by_status()
            except Exception as exc:  # noqa: BLE001 - asserted below
                errors.append(exc)

        asyncio.run(use_elsewhere())
    finally:
        release.set()
        owner.join(10)
    assert len(errors) == 1 and "is open in another event loop, which is still running" in str(errors[0])


def test_a_store_follows_asyncio_run_to_the_next_loop(tmp_path: Path) -> None:
    """After asyncio.run returns, the same store works under the next event loop (it closed with the first)."""
    import asyncio

    store = SqlStore(f"sqlite:///{tmp_path / 'loops.db'}")
    app = make_app(store=store)
    first = asyncio.run(app.scheduler.schedule(Record(value="1")))
    assert store._engine is None, "closed when its event loop ended"
    entry = asyncio.run(app.scheduler.get_status(first))
    assert entry is not None and entry.status == "PENDING"


async def test_a_store_that_does_not_track_its_opener_is_never_closed_by_the_service() -> None:
    """A custom store written before stores tracked their opener keeps its old lifecycle: the application closes it."""

    class CustomStore(MemoryStore):
        closed = 0

        async def close(self) -> None:
            self.closed += 1

    store = CustomStore()
    app = make_app(store=store)
    await app.scheduler.schedule(Record(value="a"))
    assert await app.service.run_until_idle() == 1
    async with app.service:
        pass
    assert store.closed == 0


def test_a_worker_factory_may_return_a_child_of_the_injector_holding_scheduling_module(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``--app`` accepts a child injector (``create_child_injector``): it gets the parent's SchedulingModule, and
    ``--store`` and the settings options rebind where that module bound them, so the service (built in the parent)
    runs on them. An injector with no SchedulingModule anywhere up its chain is still refused, in one line."""
    import sys
    import types

    from scheduling._worker import AppLoadError, apply_overrides, load_app

    root = Injector([MediatorModule(handlers=_record_handlers()), SchedulingModule(store=MemoryStore())])
    factories = types.ModuleType("child_injector_app")
    factories.child = root.create_child_injector  # type: ignore[attr-defined]
    factories.bare_child = Injector([MediatorModule(handlers=[])]).create_child_injector  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "child_injector_app", factories)

    child = load_app("child_injector_app:child")
    override = MemoryStore()
    settings = apply_overrides(child, store=override, concurrency=3)
    service = child.get(ScheduledCommandService)  # built in the parent: it must see the overrides too
    assert service._store is override, "--store rebound in the child only: the worker would run another store"
    assert settings.max_concurrency == 3 and service._settings.max_concurrency == 3
    with pytest.raises(AppLoadError, match="has no SchedulingModule"):
        load_app("child_injector_app:bare_child")


def test_a_start_up_hook_that_is_not_async_is_refused_by_name() -> None:
    """A plain ``def`` hook is refused when the module is built, naming it and saying to make it async; a callable
    object that returns no awaitable is refused in the same words when the service starts, before its first claim."""

    def declare(scheduler: CommandScheduler) -> None:
        return None

    with pytest.raises(TypeError, match=r"on_start hook .*declare is not async: define it with 'async def'"):
        SchedulingModule(store=MemoryStore(), on_start=[declare])  # type: ignore[list-item]

    class Declarer:
        def __call__(self, scheduler: CommandScheduler) -> None:
            return None

    injector = Injector(
        [
            MediatorModule(handlers=_record_handlers()),
            SchedulingModule(store=MemoryStore(), clock=ManualClock(START), on_start=[Declarer()]),  # type: ignore[list-item]
        ]
    )
    with pytest.raises(TypeError, match=r"on_start hook .*Declarer is not async"):
        asyncio.run(injector.get(ScheduledCommandService).run_until_idle())
