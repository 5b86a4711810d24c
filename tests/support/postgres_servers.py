"""PostgreSQL for tests: databases of their own on the shared server, and throwaway servers of their own.

A test may create databases on the shared test server (``postgres_database``, always dropped afterwards), but it never
restarts, stops or reconfigures that server: other clients may be using it. A test that needs to restart or stop
PostgreSQL starts a ``ThrowawayPostgres`` instead: ``initdb`` into a temporary directory, a free port on 127.0.0.1,
its unix socket in that directory, durability off (it is thrown away), stopped and removed when the test ends, also
when it fails.

``initdb`` and ``postgres`` refuse to run as root, so under root they run as the ``postgres`` OS user (``runuser``),
which then owns the temporary directory. The server binaries are found through ``$CQRS_SCHEDULING_TEST_POSTGRES_BIN``,
or else ``initdb`` on ``PATH``, ``pg_config --bindir``, or Debian's ``/usr/lib/postgresql/<version>/bin`` (newest
first).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
from sqlalchemy.engine import make_url

__all__ = [
    "POSTGRES_BIN_ENV",
    "SERVER_DIRECTORY_PREFIX",
    "PostgresUnavailableError",
    "ThrowawayPostgres",
    "admin_conninfo",
    "find_postgres_bin",
    "postgres_database",
    "postmaster_start_time",
    "throwaway_postgres",
]

POSTGRES_BIN_ENV = "CQRS_SCHEDULING_TEST_POSTGRES_BIN"
#: The OS user the server runs as when the tests run as root (initdb and postgres refuse root).
SERVER_OS_USER = "postgres"
#: The start of a throwaway server's directory name (in the temporary directory), before the process id.
SERVER_DIRECTORY_PREFIX = "cqrs-pg-"


class PostgresUnavailableError(RuntimeError):
    """The server binaries (or, under root, the ``postgres`` OS user) are not on this machine."""


def admin_conninfo(url: str, database: str | None = None) -> str:
    """A libpq connection string for ``url`` (or for another database on the same server)."""
    parsed = make_url(url).set(drivername="postgresql")
    if database is not None:
        parsed = parsed.set(database=database)
    return parsed.render_as_string(hide_password=False)


def postmaster_start_time(url: str) -> object:
    """When the server behind ``url`` started: it changes if, and only if, the server was restarted."""
    with psycopg.connect(admin_conninfo(url), connect_timeout=5) as conn:
        row = conn.execute("SELECT pg_postmaster_start_time()").fetchone()
    assert row is not None
    return row[0]


@contextlib.contextmanager
def postgres_database(base_url: str, hint: str) -> Iterator[str]:
    """The URL of a new, empty database on the server of ``base_url``, dropped afterwards (also when the body fails,
    and also if the body left it refusing connections)."""
    name = f"cqrs_{hint}_{os.getpid()}_{uuid.uuid4().hex[:8]}".lower()
    with psycopg.connect(admin_conninfo(base_url), autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(base_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin_conninfo(base_url), autocommit=True, connect_timeout=30) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def find_postgres_bin() -> Path:
    """The directory holding ``initdb``, ``pg_ctl`` and ``postgres``; PostgresUnavailableError if there is none, or
    if this process runs as root and there is no ``postgres`` OS user to run them as."""
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(SERVER_OS_USER)
        except KeyError as exc:
            raise PostgresUnavailableError(
                f"running as root, and there is no {SERVER_OS_USER!r} OS user to run the PostgreSQL server as"
            ) from exc
    configured = os.environ.get(POSTGRES_BIN_ENV)
    candidates = [configured] if configured else _discovered_bin_dirs()  # said explicitly: no looking elsewhere
    for candidate in candidates:
        directory = Path(candidate)
        if all((directory / tool).is_file() for tool in ("initdb", "pg_ctl", "postgres")):
            return directory
    raise PostgresUnavailableError(
        f"no PostgreSQL server binaries (initdb, pg_ctl, postgres) in {', '.join(candidates) or 'any known place'}; "
        f"set ${POSTGRES_BIN_ENV} to their directory"
    )


def _discovered_bin_dirs() -> list[str]:
    candidates: list[str] = []
    if on_path := shutil.which("initdb"):
        candidates.append(str(Path(on_path).parent))
    if pg_config := shutil.which("pg_config"):
        result = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        if result.returncode == 0:
            candidates.append(result.stdout.strip())
    debian = glob.glob("/usr/lib/postgresql/*/bin")
    candidates += sorted(debian, key=lambda d: int(Path(d).parent.name) if Path(d).parent.name.isdigit() else 0)[::-1]
    return candidates


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class ThrowawayPostgres:
    """A PostgreSQL server of the test's own, in ``directory``; see the module docstring.

    ``url`` reaches its ``postgres`` database as the superuser ``postgres`` (trust authentication, 127.0.0.1 only).
    ``stop``, ``start`` and ``restart`` are the test's to call; ``remove`` ends it for good.
    """

    bin_dir: Path
    directory: Path
    port: int = 0

    @property
    def data_dir(self) -> Path:
        return self.directory / "data"

    @property
    def log_file(self) -> Path:
        return self.directory / "server.log"

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def database_url(self, name: str) -> str:
        return make_url(self.url).set(database=name).render_as_string(hide_password=False)

    def create_database(self, name: str) -> str:
        """Create database ``name`` (it goes with the server) and return its URL."""
        with psycopg.connect(admin_conninfo(self.url), autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.database_url(name)

    # -- life cycle ------------------------------------------------------------------------------------------------

    def _run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        command = [str(self.bin_dir / args[0]), *args[1:]]
        if os.geteuid() == 0:
            command = ["runuser", "-u", SERVER_OS_USER, "--", *command]
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)

    def _check(self, result: subprocess.CompletedProcess[str], what: str) -> None:
        if result.returncode != 0:
            log = self.log_file.read_text(errors="replace")[-2000:] if self.log_file.exists() else ""
            raise RuntimeError(f"{what} failed ({result.returncode}): {result.stderr.strip()}\n{log}")

    def init(self) -> None:
        if os.geteuid() == 0:
            owner = pwd.getpwnam(SERVER_OS_USER)
            os.chown(self.directory, owner.pw_uid, owner.pw_gid)
        result = self._run(
            "initdb",
            "-D",
            str(self.data_dir),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        )
        self._check(result, "initdb")

    def start(self) -> None:
        """Start the server and wait until it accepts connections (a new free port if the last one was taken)."""
        for _ in range(3):
            self.port = self.port or _free_port()
            options = (
                f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.directory} "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
            )
            result = self._run(
                "pg_ctl", "start", "-w", "-t", "60", "-D", str(self.data_dir), "-l", str(self.log_file), "-o", options
            )
            if result.returncode == 0:
                return
            if "could not bind" not in self.log_file.read_text(errors="replace"):
                break
            self.port = 0  # someone took the port in between: try another
        self._check(result, "pg_ctl start")

    def stop(self) -> None:
        """Stop the server (fast shutdown: open connections are terminated)."""
        self._check(self._run("pg_ctl", "stop", "-w", "-m", "fast", "-D", str(self.data_dir)), "pg_ctl stop")

    def restart(self) -> None:
        """Fast shutdown, then start again on the same port."""
        self.stop()
        self.start()

    @property
    def running(self) -> bool:
        return self._run("pg_ctl", "status", "-D", str(self.data_dir)).returncode == 0

    def remove(self) -> None:
        """Stop the server if it runs (killing it if it will not stop) and delete its directory."""
        try:
            if self.data_dir.exists() and self.running:
                result = self._run("pg_ctl", "stop", "-w", "-t", "30", "-m", "immediate", "-D", str(self.data_dir))
                if result.returncode != 0:
                    self._kill_postmaster()
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)

    def _kill_postmaster(self) -> None:
        pid_file = self.data_dir / "postmaster.pid"
        with contextlib.suppress(OSError, ValueError, IndexError):
            pid = int(pid_file.read_text().splitlines()[0])
            os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                os.kill(pid, 0)  # raises once the process is gone
                time.sleep(0.05)


@contextlib.contextmanager
def throwaway_postgres() -> Iterator[ThrowawayPostgres]:
    """A started ``ThrowawayPostgres``; stopped and its directory removed afterwards, also when the body fails.

    Raises PostgresUnavailableError (before creating anything) when the server binaries are missing.
    """
    bin_dir = find_postgres_bin()
    # The process id in the name tells this process's servers from those of others (parallel test workers).
    server = ThrowawayPostgres(bin_dir, Path(tempfile.mkdtemp(prefix=f"{SERVER_DIRECTORY_PREFIX}{os.getpid()}-")))
    try:
        server.init()
        server.start()
        yield server
    finally:
        server.remove()
