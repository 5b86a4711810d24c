"""Mediator dispatch overhead: microseconds per ``send()``/``publish()`` against calling the handler directly.

Run with ``make bench`` (never part of ``make test``). Prints exactly one JSON line to stdout: per-operation
medians (µs) of ``REPEATS`` runs of ``ITERATIONS`` calls each, and the overhead of each mediator path over its
direct baseline.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import platform
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from injector import Binder, Injector, Module, inject, singleton

from mediator import Command, CommandHandler, Mediator, MediatorModule, Notification, NotificationHandler
from mediator.behaviors import Next, PipelineBehavior

REPEATS = 7
ITERATIONS = 20_000


# -- messages and handlers ---------------------------------------------------------------------------------------


class Ping(Command[int]):
    """Handled by a singleton handler."""


class PingFresh(Command[int]):
    """Handled by an unscoped handler without dependencies: built anew per dispatch."""


class PingFreshWithDependency(Command[int]):
    """Handled by an unscoped handler with one injected singleton dependency."""


class PingWithBehavior(Command[int]):
    """Handled by a singleton handler; one behavior is registered but switched off for it."""


class Pinged(Notification):
    """Published to three handlers."""


class Clock:
    """A singleton dependency."""

    def now(self) -> int:
        return 0


class PingHandler(CommandHandler[Ping, int]):
    async def handle(self, command: Ping) -> int:
        return 1


class PingFreshHandler(CommandHandler[PingFresh, int]):
    async def handle(self, command: PingFresh) -> int:
        return 1


class PingFreshWithDependencyHandler(CommandHandler[PingFreshWithDependency, int]):
    @inject
    def __init__(self, clock: Clock) -> None:
        self.clock = clock

    async def handle(self, command: PingFreshWithDependency) -> int:
        return 1


class PingWithBehaviorHandler(CommandHandler[PingWithBehavior, int]):
    async def handle(self, command: PingWithBehavior) -> int:
        return 1


class SwitchedOff(PipelineBehavior):
    @classmethod
    def applies_to(cls, message_type: type[Any]) -> bool:
        return False

    async def handle(self, message: Any, next: Next) -> Any:  # pragma: no cover - never called
        return await next()


class First(NotificationHandler[Pinged]):
    async def handle(self, notification: Pinged) -> None:
        return None


class Second(NotificationHandler[Pinged]):
    async def handle(self, notification: Pinged) -> None:
        return None


class Third(NotificationHandler[Pinged]):
    async def handle(self, notification: Pinged) -> None:
        return None


class Bindings(Module):
    def configure(self, binder: Binder) -> None:
        binder.bind(Clock, scope=singleton)
        binder.bind(PingHandler, scope=singleton)
        binder.bind(PingWithBehaviorHandler, scope=singleton)


def build_injector(*, with_behavior: bool) -> Injector:
    handlers = [PingHandler, PingFreshHandler, PingFreshWithDependencyHandler, PingWithBehaviorHandler]
    return Injector(
        [
            Bindings(),
            MediatorModule(
                [*handlers, First, Second, Third],
                behaviors=[SwitchedOff] if with_behavior else [],
            ),
        ]
    )


# -- measuring -----------------------------------------------------------------------------------------------------


async def per_call_us(call: Callable[[], Awaitable[Any]]) -> float:
    """Median over REPEATS runs of the µs one ``await call()`` takes."""
    for _ in range(1000):  # warm up: builds and caches dispatch plans
        await call()
    samples = []
    for _ in range(REPEATS):
        start = time.perf_counter_ns()
        for _ in range(ITERATIONS):
            await call()
        samples.append((time.perf_counter_ns() - start) / ITERATIONS / 1000)
    return statistics.median(samples)


def per_sync_call_us(call: Callable[[], Any], iterations: int) -> float:
    """Median over REPEATS runs of the µs one ``call()`` takes (for slow calls: fewer iterations)."""
    for _ in range(100):
        call()
    samples = []
    for _ in range(REPEATS):
        start = time.perf_counter_ns()
        for _ in range(iterations):
            call()
        samples.append((time.perf_counter_ns() - start) / iterations / 1000)
    return statistics.median(samples)


async def measure() -> dict[str, Any]:
    injector = build_injector(with_behavior=False)
    mediator = injector.get(Mediator)
    mediator_with_behavior = build_injector(with_behavior=True).get(Mediator)

    ping, fresh, fresh_dep = Ping(), PingFresh(), PingFreshWithDependency()
    ping_b, pinged = PingWithBehavior(), Pinged()
    singleton_handler = injector.get(PingHandler)
    fresh_handler = PingFreshHandler()
    fresh_dep_handler = PingFreshWithDependencyHandler(injector.get(Clock))
    listeners = (First(), Second(), Third())

    async def direct_publish() -> None:
        for listener in listeners:
            await listener.handle(pinged)

    us = {
        "direct_handle": await per_call_us(lambda: singleton_handler.handle(ping)),
        "send_singleton": await per_call_us(lambda: mediator.send(ping)),
        "direct_handle_fresh": await per_call_us(lambda: fresh_handler.handle(fresh)),
        "send_fresh": await per_call_us(lambda: mediator.send(fresh)),
        "direct_handle_fresh_with_dependency": await per_call_us(lambda: fresh_dep_handler.handle(fresh_dep)),
        "send_fresh_with_dependency": await per_call_us(lambda: mediator.send(fresh_dep)),
        "send_no_behavior": await per_call_us(lambda: mediator.send(ping_b)),
        "send_behavior_switched_off": await per_call_us(lambda: mediator_with_behavior.send(ping_b)),
        "direct_loop_three_handlers": await per_call_us(direct_publish),
        "publish_three_handlers": await per_call_us(lambda: mediator.publish(pinged)),
        "injector_get_handler": per_sync_call_us(lambda: injector.get(PingFreshHandler), ITERATIONS // 20),
        "injector_get_handler_with_dependency": per_sync_call_us(
            lambda: injector.get(PingFreshWithDependencyHandler), ITERATIONS // 20
        ),
    }
    overhead = {
        "send_singleton": us["send_singleton"] - us["direct_handle"],
        "send_fresh": us["send_fresh"] - us["direct_handle_fresh"],
        "send_fresh_with_dependency": us["send_fresh_with_dependency"] - us["direct_handle_fresh_with_dependency"],
        "behavior_switched_off": us["send_behavior_switched_off"] - us["send_no_behavior"],
        "publish_three_handlers": us["publish_three_handlers"] - us["direct_loop_three_handlers"],
    }
    return {
        "benchmark": "mediator_overhead",
        "date": dt.datetime.now(dt.UTC).date().isoformat(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "repeats": REPEATS,
        "iterations": ITERATIONS,
        "us_per_op": {k: round(v, 3) for k, v in us.items()},
        "overhead_us": {k: round(v, 3) for k, v in overhead.items()},
    }


def main() -> None:
    result = asyncio.run(measure())
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
