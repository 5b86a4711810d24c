"""``cqrs-scheduling dashboard`` as a new user runs it: real processes, a real SQLite file filled by the demo, HTTP
over 127.0.0.1, and SIGTERM/SIGINT to stop it."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]


def environment(**extra: str) -> dict[str, str]:
    env = os.environ | {"PYTHONPATH": str(ROOT)} | extra
    for name in ("CQRS_SCHEDULING_STORE", "CQRS_SCHEDULING_DASHBOARD_TOKEN"):
        if name not in extra:
            env.pop(name, None)
    return env


@pytest.fixture(scope="module")
def demo_store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A SQLite store holding the demo's history (``cqrs-scheduling demo --store ...``)."""
    url = f"sqlite:///{tmp_path_factory.mktemp('dashboard') / 'demo.db'}"
    result = subprocess.run(
        [sys.executable, "-m", "scheduling", "demo", "--store", url],
        capture_output=True,
        text=True,
        env=environment(),
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return url


class Dashboard:
    """A running ``cqrs-scheduling dashboard`` process and the URL it printed."""

    def __init__(self, *args: str, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "scheduling", "dashboard", "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self._lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.banner = self._lines.get(timeout=30)
        match = re.search(r"at (http://[^/\s]+:\d+/)", self.banner)
        assert match, self.banner
        self.url = match.group(1)
        self.stderr = ""

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line)

    def stop(self, sig: signal.Signals) -> int:
        """Send ``sig``, wait for the exit (15 s at most), keep stderr in ``self.stderr``; the exit code."""
        self.process.send_signal(sig)
        code = self.process.wait(timeout=15)
        self.close()
        return code

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=15)
        assert self.process.stderr is not None and self.process.stdout is not None
        if not self.process.stderr.closed:
            self.stderr = self.process.stderr.read()
            self.process.stderr.close()
        self.process.stdout.close()


@pytest.fixture
def running() -> Iterator[list[Dashboard]]:
    """Dashboards started by a test; any still running at the end are killed."""
    started: list[Dashboard] = []
    yield started
    for dashboard in started:
        dashboard.close()


def test_dashboard_after_the_demo_shows_its_history(demo_store: str, running: list[Dashboard]) -> None:
    """No token given: one is generated and printed in a login URL; the API shows the demo's history; SIGTERM
    stops it promptly with exit code 0."""
    dashboard = Dashboard("--store", demo_store, env=environment())
    running.append(dashboard)
    match = re.search(r"\?token=([\w-]+)", dashboard.banner)
    assert match, dashboard.banner
    token = match.group(1)
    assert len(token) >= 24

    with httpx.Client(base_url=dashboard.url, timeout=10) as client:
        assert client.get("api/overview").status_code == 401
        overview = client.get("api/overview", headers={"Authorization": f"Bearer {token}"}).json()
        assert overview["counts"]["COMPLETED"] >= 5 and overview["counts"]["FAILED"] >= 1
        assert overview["dead_letters_by_type"] == {"scheduling.demo.SyncInventory": overview["counts"]["FAILED"]}
        assert sum(overview["throughput"]["totals"].values()) == overview["total"]  # all finished a moment ago

        login = client.get("", params={"token": token})
        assert login.status_code == 303 and login.headers["location"] == "/"
        page = client.get("", headers={"Accept": "text/html"})
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")

    assert dashboard.stop(signal.SIGTERM) == 0
    assert "Traceback" not in dashboard.stderr


def test_token_from_the_environment_read_only_and_sigint(demo_store: str, running: list[Dashboard]) -> None:
    """$CQRS_SCHEDULING_DASHBOARD_TOKEN is used (and never printed); --read-only refuses changes; SIGINT stops it
    with exit code 0."""
    token = "env-token-for-the-dashboard"
    dashboard = Dashboard("--store", demo_store, "--read-only", env=environment(CQRS_SCHEDULING_DASHBOARD_TOKEN=token))
    running.append(dashboard)
    assert token not in dashboard.banner and "read-only" in dashboard.banner
    with httpx.Client(base_url=dashboard.url, timeout=10, headers={"Authorization": f"Bearer {token}"}) as client:
        assert client.get("api/entries", params={"status": "FAILED"}).json()["entries"]
        refused = client.post("api/dead-letters/requeue")
        assert refused.status_code == 403 and "read-only" in refused.json()["detail"]
    assert dashboard.stop(signal.SIGINT) == 0


def one_line_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode == 1, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_a_missing_store_a_taken_port_and_a_missing_extra_are_one_line_errors(demo_store: str, tmp_path: Path) -> None:
    def dashboard(*args: str, prelude: str = "") -> subprocess.CompletedProcess[str]:
        code = f"{prelude}import sys; from scheduling.cli import main; sys.argv[0] = 'cqrs-scheduling'; main()"
        return subprocess.run(
            [sys.executable, "-c", code, "dashboard", *args],
            capture_output=True,
            text=True,
            env=environment(),
            timeout=60,
        )

    one_line_error(dashboard("--store", f"sqlite:///{tmp_path / 'nope.db'}", "--port", "0"), "no store at")

    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        one_line_error(dashboard("--store", demo_store, "--port", port), f"cannot listen on 127.0.0.1:{port}")

    blocked = dashboard("--store", demo_store, prelude="import sys; sys.modules['fastapi'] = None; ")
    one_line_error(blocked, "pip install 'cqrs-scheduling[web]'")


def test_a_non_loopback_host_is_warned_about(demo_store: str, running: list[Dashboard]) -> None:
    """Listening beyond loopback needs an explicit --host and prints a warning on stderr."""
    dashboard = Dashboard("--store", demo_store, "--host", "0.0.0.0", env=environment())
    running.append(dashboard)
    assert dashboard.stop(signal.SIGTERM) == 0
    assert "warning: listening on 0.0.0.0" in dashboard.stderr


def test_behind_a_proxy_allowed_origins_and_forwarded_proto(demo_store: str, running: list[Dashboard]) -> None:
    """--allowed-origin accepts changes from the public origin; --forwarded-allow-ips makes uvicorn trust the
    proxy's X-Forwarded-Proto (here the proxy is 127.0.0.1), so an https Origin matches the forwarded scheme."""
    token = "proxy-token-for-the-dashboard"
    dashboard = Dashboard(
        "--store",
        demo_store,
        "--allowed-origin",
        "https://dash.example.com",
        "--allowed-origin",
        "https://other.example.com",
        "--forwarded-allow-ips",
        "127.0.0.1",
        env=environment(CQRS_SCHEDULING_DASHBOARD_TOKEN=token),
    )
    running.append(dashboard)
    host = dashboard.url.removeprefix("http://").rstrip("/")
    with httpx.Client(base_url=dashboard.url, timeout=10, headers={"Authorization": f"Bearer {token}"}) as client:
        body = {"older_than": "1d", "dry_run": True}
        for origin in ("https://dash.example.com", "https://other.example.com"):
            assert client.post("api/purge", json=body, headers={"Origin": origin}).status_code == 200
        refused = client.post("api/purge", json=body, headers={"Origin": "https://evil.example.com"})
        assert refused.status_code == 403
        forwarded = {"Origin": f"https://{host}", "X-Forwarded-Proto": "https"}
        assert client.post("api/purge", json=body, headers=forwarded).status_code == 200
        assert client.post("api/purge", json=body, headers={"Origin": f"https://{host}"}).status_code == 403
    assert dashboard.stop(signal.SIGTERM) == 0


def test_a_bad_allowed_origin_is_a_usage_error(demo_store: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "scheduling", "dashboard", "--store", demo_store, "--allowed-origin", "dash.example"],
        capture_output=True,
        text=True,
        env=environment(),
        timeout=60,
    )
    assert (
        result.returncode == 2 and "not an origin: 'dash.example'" in result.stderr and "Traceback" not in result.stderr
    )
