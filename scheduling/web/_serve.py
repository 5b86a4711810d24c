"""Serving the dashboard from the command line: the listening socket (bound before the store opens, so a taken port
is one clear line) and uvicorn run until SIGINT or SIGTERM with a clean exit."""

from __future__ import annotations

from typing import Any

import typer


def is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def listen(host: str, port: int) -> Any:
    """A listening socket on ``host:port``, bound before the store is opened so that a taken port is one clear line."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
        sock.set_inheritable(True)
    except OSError:
        sock.close()
        raise
    return sock


async def serve_until_signal(server: Any, listener: Any, banner: str) -> None:
    """Print ``banner`` and run uvicorn until SIGINT or SIGTERM, then return (exit code 0) instead of dying of the
    signal.

    uvicorn handles the signals while it serves and raises them again once it has stopped; the handlers in place
    before and after only ask the server to stop, so a signal at any moment closes the store normally and the process
    exits 0.
    """
    import signal

    def stop(number: int, frame: Any) -> None:
        server.should_exit = True

    handled = (signal.SIGINT, signal.SIGTERM)
    previous = {sig: signal.signal(sig, stop) for sig in handled}
    try:
        typer.echo(banner)
        await server.serve(sockets=[listener])
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
