"""Fixtures for the service tests: a fresh home, and the real API served by uvicorn on a
free loopback port in a background thread (driven with httpx over real HTTP)."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn

from joinedup.home import Home, init_home

# One TLS context for every test HTTP client. httpx otherwise builds a fresh one (loading the
# CA bundle: ~100 ms, more under load) for each client and each httpx.get, although the
# servers here are plain HTTP on loopback and never use it.
LOOPBACK_SSL = ssl.create_default_context()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class LiveServer:
    url: str
    app: object
    server: uvicorn.Server
    thread: threading.Thread

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30, verify=LOOPBACK_SSL)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def serve(app) -> LiveServer:
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    return LiveServer(f"http://127.0.0.1:{port}", app, server, thread)


@pytest.fixture
def home(tmp_path: Path) -> Home:
    return init_home(tmp_path / "home", project_id="test-project")


@pytest.fixture
def live(home: Home) -> Iterator[LiveServer]:
    from joinedup.api import create_app

    server = serve(create_app(home))
    try:
        yield server
    finally:
        server.stop()
        server.app.state.ctx.close()


@pytest.fixture(scope="session")
def linked_home(demo_run) -> Home:
    """The shared demo home (tests/conftest.py), read-only."""
    from joinedup.home import load_home

    return load_home(demo_run[0])


def claimants(home: Home, n: int) -> list[dict]:
    """Raw identifiers of the first n DWP claimants, as an adviser would be told them."""
    from connectors.sources import read_records

    people = []
    for record in read_records("dwp", str(home.root / "sources" / "dwp_claimants.csv")):
        people.append({k: v for k, v in record.identity.items() if v and k != "local_id"})
        if len(people) == n:
            break
    return people
