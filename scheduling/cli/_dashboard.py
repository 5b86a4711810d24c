"""``cqrs-scheduling dashboard``: serve the dashboard of a store until a signal (the serving plumbing is
``scheduling.web._serve``)."""

from __future__ import annotations

import secrets
from typing import Annotated

import typer

from stores.base import ScheduledCommandStore

from ._common import (
    StoreOption,
    _run_with_store,
    fail,
)

DASHBOARD_TOKEN_ENV = "CQRS_SCHEDULING_DASHBOARD_TOKEN"


def dashboard(
    store: StoreOption = None,
    host: Annotated[
        str, typer.Option(help="Interface to listen on; anything but loopback exposes the dashboard to the network.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on (0: any free one).")] = 8080,
    token: Annotated[
        str | None,
        typer.Option(
            envvar=DASHBOARD_TOKEN_ENV,
            show_envvar=True,
            help="The access token (prefer the environment variable: options show in process lists). "
            "Default: a random one, printed in the login URL.",
        ),
    ] = None,
    read_only: Annotated[bool, typer.Option("--read-only", help="Refuse and hide every change.")] = False,
    allowed_origin: Annotated[
        list[str] | None,
        typer.Option(
            "--allowed-origin",
            help="Also accept changes from pages served at this origin, e.g. https://dash.example.com behind a "
            "proxy that rewrites Host (repeatable).",
        ),
    ] = None,
    forwarded_allow_ips: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated proxy addresses (or *) whose X-Forwarded-Proto and X-Forwarded-For are trusted "
            "(uvicorn's option; default: $FORWARDED_ALLOW_IPS or 127.0.0.1).",
        ),
    ] = None,
) -> None:
    """Serve the web dashboard and admin JSON API of a store until SIGINT or SIGTERM (extra: web).

    Every request needs the token: as ``Authorization: Bearer <token>``, or once in the URL (``/?token=...``), which
    logs a browser in with a session cookie. See docs/dashboard.md.
    """
    try:
        import uvicorn
        from pydantic import ValidationError

        from scheduling.web import DashboardSettings, create_dashboard_app
        from scheduling.web._serve import is_loopback, listen, serve_until_signal
    except ImportError as exc:
        fail(f"the dashboard needs the web extra ({exc}): pip install 'cqrs-scheduling[web]'")
    if token is not None and not token.strip():
        fail(f"--token (or ${DASHBOARD_TOKEN_ENV}) is empty: give a token, or none to get a random one", 2)
    generated = token is None
    secret = token if token is not None else secrets.token_urlsafe(24)
    try:
        settings = DashboardSettings(token=secret, read_only=read_only, allowed_origins=allowed_origin or [])
    except ValidationError as exc:
        fail(f"--allowed-origin: {'; '.join(str(e.get('ctx', {}).get('error', e['msg'])) for e in exc.errors())}", 2)
    if not is_loopback(host):
        typer.echo(
            f"warning: listening on {host}, beyond this machine: anyone who can reach it and has the token can "
            "change the queue; put it behind TLS",
            err=True,
        )
    try:
        listener = listen(host, port)
    except OSError as exc:
        fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")

    async def work(opened: ScheduledCommandStore) -> int:
        config = uvicorn.Config(
            create_dashboard_app(opened, settings=settings),
            lifespan="off",
            log_level="warning",
            timeout_graceful_shutdown=5,
            forwarded_allow_ips=forwarded_allow_ips,
        )
        bound_host, bound_port = listener.getsockname()[:2]
        url = f"http://{f'[{bound_host}]' if ':' in bound_host else bound_host}:{bound_port}/"
        login = f"{url}?token={secret}" if generated else f"{url} (log in with your token)"
        banner = f"Dashboard of {opened.description}{' (read-only)' if read_only else ''} at {login}"
        await serve_until_signal(uvicorn.Server(config), listener, banner)
        return 0

    with listener:
        _run_with_store(store, work)
