"""The test suite's PostgreSQL helpers leave the machine as they found it.

A throwaway server is started, stopped, restarted and removed, and databases come and go on the shared server, also
with a test body that fails: afterwards the shared server has not been restarted (same
``pg_postmaster_start_time()``), holds no database of this run but the run's own, the run's database has the same
schemas, and no server directory or process is left.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import psycopg
import pytest
from postgres_servers import (
    POSTGRES_BIN_ENV,
    SERVER_DIRECTORY_PREFIX,
    ThrowawayPostgres,
    admin_conninfo,
    postgres_database,
    postmaster_start_time,
    throwaway_postgres,
)


class BodyFailedError(Exception):
    """Raised by a test body on purpose, to show that the helpers clean up after a failure too."""


def databases(url: str) -> set[str]:
    with psycopg.connect(admin_conninfo(url)) as conn:
        return {str(row[0]) for row in conn.execute("SELECT datname FROM pg_database")}


def schemas(url: str) -> set[str]:
    with psycopg.connect(admin_conninfo(url)) as conn:
        return {str(row[0]) for row in conn.execute("SELECT nspname FROM pg_namespace")}


def server_directories() -> set[Path]:
    """This process's throwaway server directories (other processes, parallel test workers say, have their own)."""
    return set(Path(tempfile.gettempdir()).glob(f"{SERVER_DIRECTORY_PREFIX}{os.getpid()}-*"))


def refuses_connections(url: str) -> bool:
    try:
        with psycopg.connect(admin_conninfo(url), connect_timeout=2):
            return False
    except psycopg.OperationalError:
        return True


def exercise_throwaway_server(ours: list[ThrowawayPostgres]) -> None:
    """Everything the reliability tests do to a throwaway server: databases, a stop, a start, a restart."""
    with throwaway_postgres() as server:
        ours.append(server)
        assert server.directory.is_dir()
        started = postmaster_start_time(server.url)
        store_url = server.create_database("store")
        with psycopg.connect(admin_conninfo(store_url), autocommit=True) as conn:
            conn.execute("CREATE SCHEMA scratch")
        server.stop()
        assert not server.running
        assert refuses_connections(server.url)
        server.start()
        server.restart()
        assert postmaster_start_time(server.url) != started, "the throwaway server itself was restarted"
        assert "store" in databases(server.url)


def fail_inside_a_throwaway_server(ours: list[ThrowawayPostgres]) -> None:
    with throwaway_postgres() as failing:
        ours.append(failing)
        failing.create_database("doomed")
        raise BodyFailedError


def fail_inside_a_database(base_url: str, created: list[str]) -> None:
    """A body that fails after leaving its database refusing connections, as the outage tests do."""
    with postgres_database(base_url, "helpers") as url:
        created.append(url)
        with psycopg.connect(admin_conninfo(base_url), autocommit=True) as conn:
            conn.execute(f'ALTER DATABASE "{url.rsplit("/", 1)[1]}" ALLOW_CONNECTIONS false')
        raise BodyFailedError


def test_throwaway_servers_and_databases_leave_the_shared_server_and_the_machine_as_they_were(
    postgres_url: str,
) -> None:
    started = postmaster_start_time(postgres_url)
    databases_before = databases(postgres_url)
    schemas_before = schemas(postgres_url)
    directories_before = server_directories()
    ours: list[ThrowawayPostgres] = []

    exercise_throwaway_server(ours)
    with pytest.raises(BodyFailedError):
        fail_inside_a_throwaway_server(ours)

    created: list[str] = []
    with postgres_database(postgres_url, "helpers") as url:
        created.append(url)
        with psycopg.connect(admin_conninfo(url), autocommit=True) as conn:
            conn.execute("CREATE SCHEMA scratch")
            conn.execute("CREATE TABLE scratch.t (n int)")
        assert url.rsplit("/", 1)[1] in databases(postgres_url)
    with pytest.raises(BodyFailedError):
        fail_inside_a_database(postgres_url, created)

    assert postmaster_start_time(postgres_url) == started, "the shared server was not restarted"
    # Other clients of the shared server may create databases meanwhile: only this process's names are ours.
    new_databases = databases(postgres_url) - databases_before
    assert not [name for name in new_databases if f"_{os.getpid()}_" in name], "no database is left"
    assert not {url.rsplit("/", 1)[1] for url in created} & databases(postgres_url)
    assert schemas(postgres_url) == schemas_before, "no schema is left in the run's database"
    assert len(ours) == 2
    for server in ours:
        assert not server.directory.exists(), f"{server.directory} was removed"
        assert refuses_connections(server.url), f"the server on port {server.port} was stopped"
    assert server_directories() <= directories_before, "no server directory is left"


def test_the_fixture_gives_a_running_server_of_the_tests_own(throwaway_postgres: ThrowawayPostgres) -> None:
    assert throwaway_postgres.running
    assert throwaway_postgres.directory.is_relative_to(tempfile.gettempdir())
    assert "store" not in databases(throwaway_postgres.url)


@pytest.mark.parametrize(("ci", "outcome"), [(None, "1 skipped"), ("1", "1 error")])
def test_without_server_binaries_the_fixture_skips_and_under_ci_fails(
    ci: str | None, outcome: str, tmp_path: Path
) -> None:
    """With no initdb where $CQRS_SCHEDULING_TEST_POSTGRES_BIN points, a test that needs a throwaway server is
    skipped, saying why; when CI is set it fails instead (an error in its set-up)."""
    env = {key: value for key, value in os.environ.items() if key != "CI"} | {POSTGRES_BIN_ENV: str(tmp_path)}
    if ci is not None:
        env["CI"] = ci
    probe = f"{Path(__file__).name}::test_the_fixture_gives_a_running_server_of_the_tests_own"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rsf", "-p", "no:cacheprovider", probe],
        cwd=Path(__file__).parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert outcome in result.stdout, result.stdout
    assert f"no PostgreSQL server binaries (initdb, pg_ctl, postgres) in {tmp_path}" in result.stdout
    assert not list(tmp_path.iterdir()), "nothing was created"
