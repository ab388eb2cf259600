"""`joinedup serve --workers 2`: two real server processes on one home, over real HTTP.

What one process writes (a consent, its withdrawal) must decide the very next request in
the other process, and every request still makes exactly one ledger entry in one ledger
that verifies. Each keep-alive connection stays with the process that accepted it, and
/v1/health says which process that is, so the test holds one connection to each."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from audit import Ledger
from joinedup.home import load_home
from joinedup.users import open_user_store

from .conftest import LOOPBACK_SSL, claimants, free_port

pytestmark = pytest.mark.slow


def _start(home_root: Path, port: int) -> subprocess.Popen:
    joinedup = Path(sys.executable).with_name("joinedup")
    return subprocess.Popen(
        [str(joinedup), "serve", "--home", str(home_root), "--port", str(port),
         "--no-access-log", "--workers", "2"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )


def _connections_to_each_worker(url: str, token: str, server: subprocess.Popen) -> list[httpx.Client]:
    """Open keep-alive connections until two of them are served by different processes."""
    by_process: dict[str, httpx.Client] = {}
    spare: list[httpx.Client] = []
    deadline = time.monotonic() + 60
    while len(by_process) < 2:
        assert server.poll() is None, server.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline, f"only processes {list(by_process)} answered"
        client = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"},
                              timeout=30, verify=LOOPBACK_SSL)
        try:
            pid = client.get("/v1/health").json()["process"]
        except httpx.HTTPError:
            client.close()
            time.sleep(0.2)
            continue
        if pid in by_process:
            spare.append(client)  # keep it open so the next connection may go elsewhere
        else:
            by_process[pid] = client
    for client in spare:
        client.close()
    return list(by_process.values())


def test_two_processes_share_consent_and_ledger(linked_home, tmp_path):
    root = tmp_path / "home"
    shutil.copytree(linked_home.root, root)
    home = load_home(root)
    token = open_user_store(home).add("adviser", "csc-margate")[1]
    person = claimants(home, 1)[0]
    with Ledger(home.ledger_dir) as ledger:
        before = ledger.size
    port = free_port()
    server = _start(root, port)
    try:
        first, second = _connections_to_each_worker(f"http://127.0.0.1:{port}", token, server)
        summary = {"identifiers": person, "purpose": "employment_support"}
        assert second.post("/v1/summaries", json=summary).status_code == 403  # no consent yet
        granted = first.post("/v1/consent", json={
            "identifiers": person, "purposes": ["employment_support"],
            "categories": ["dwp", "council", "nhs", "housing", "MH", "HOU", "FIN"]})
        assert granted.status_code == 201, granted.text
        receipt = granted.json()["receipt_id"]
        for client in (second, first):  # the other process sees the grant at once
            r = client.post("/v1/summaries", json=summary)
            assert r.status_code == 200 and r.json()["outcome"] == "matched", r.text
        assert first.post(f"/v1/consent/{receipt}/withdraw").status_code == 200
        for client in (second, first):  # ... and the withdrawal
            r = client.post("/v1/summaries", json=summary)
            assert r.status_code == 403, r.text
            assert any("withdrawn" in reason for reason in r.json()["reasons"])
        requests = 7  # /v1/health is not decided, so not recorded
        for client in (first, second):
            client.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
    with Ledger(home.ledger_dir) as ledger:
        assert ledger.size - before == requests  # one entry per decided request
    result = subprocess.run(
        [str(Path(sys.executable).with_name("joinedup")), "audit", "verify", "--home", str(root)],
        capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_workers_refuse_a_port_already_taken(linked_home, tmp_path):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [str(Path(sys.executable).with_name("joinedup")), "serve", "--home",
             str(linked_home.root), "--port", str(port), "--workers", "2"],
            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "cannot listen on 127.0.0.1" in result.stderr and "could not start" in result.stderr


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url, timeout=5, verify=LOOPBACK_SSL).status_code == 200
    except httpx.HTTPError:
        return False


def _workers_of(pid: int) -> set[int]:
    """The worker processes (multiprocessing spawns) whose parent is `pid`."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (entry / "cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            continue
        if parent == pid and b"spawn_main" in cmdline:
            found.add(int(entry.name))
    return found


def test_a_worker_that_dies_is_replaced_and_all_stop_together(linked_home, tmp_path):
    import os
    import signal

    root = tmp_path / "home"
    shutil.copytree(linked_home.root, root)
    token = open_user_store(load_home(root)).add("adviser", "csc-margate")[1]
    port = free_port()
    server = _start(root, port)
    url = f"http://127.0.0.1:{port}/v1/health"
    try:
        deadline = time.monotonic() + 60
        while len(_workers_of(server.pid)) < 2 or not _healthy(url):
            assert time.monotonic() < deadline and server.poll() is None
            time.sleep(0.2)
        before = _workers_of(server.pid)
        # Both must have finished starting (a worker that dies while starting stops all):
        # each has served a request, not merely a fixed wait (which a loaded machine outran).
        for client in _connections_to_each_worker(f"http://127.0.0.1:{port}", token, server):
            client.close()
        os.kill(min(before), signal.SIGKILL)
        while True:
            now = _workers_of(server.pid)
            if len(now) == 2 and now != before:
                break
            assert time.monotonic() < deadline and server.poll() is None, (
                "no replacement", server.stderr.read().decode()[-3000:] if server.poll() else "")
            time.sleep(0.2)
        assert _healthy(url)
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert server.returncode == 0
    time.sleep(0.5)
    assert not _workers_of(server.pid)
