"""Must show (issue 11): kill -9 at random moments of consent, referral, link and ledger
append, with the server under load (bounded request loops on loopback). Afterwards, once
the service has opened again (which finishes recorded actions): no consent row, referral
row or runs/CURRENT switch without its ledger event, and the ledger verifies."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from audit import verify_ledger
from joinedup.home import load_home
from joinedup.users import open_user_store

from .conftest import LOOPBACK_SSL, claimants, free_port

CATEGORIES = ["dwp", "council", "nhs", "housing", "MH", "PH", "DIS", "SUB", "HOU", "FIN",
              "SKL", "CAR", "CLV", "FAM", "WRK"]
ROUNDS = 4
MAX_REQUESTS_PER_LOOP = 300


def _joinedup() -> str:
    return str(Path(sys.executable).with_name("joinedup"))


def _start(root: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([_joinedup(), "serve", "--home", str(root), "--port", str(port),
                             "--workers", "1", "--no-access-log"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/v1/health", timeout=1, verify=LOOPBACK_SSL).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("server did not start")


def _load(url: str, token: str, people: list[dict], stop: threading.Event, seed: int) -> None:
    """Grant, refer, withdraw, in a bounded loop, until stopped or the server dies."""
    rng = random.Random(seed)
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=url, headers=headers, timeout=5, verify=LOOPBACK_SSL) as c:
        for _ in range(MAX_REQUESTS_PER_LOOP):
            if stop.is_set():
                return
            person = rng.choice(people)
            try:
                r = c.post("/v1/consent", json={"identifiers": person,
                                                "purposes": ["employment_support"],
                                                "categories": CATEGORIES})
                if r.status_code != 201:
                    continue
                c.post("/v1/referrals", json={"identifiers": person, "provider": "provider-a",
                                              "barriers": ["MH"]})
                c.post(f"/v1/consent/{r.json()['receipt_id']}/withdraw")
            except httpx.HTTPError:
                return  # the server was killed


@pytest.mark.slow
def test_kill_9_never_leaves_an_effect_without_its_event(demo_run, tmp_path):
    root = tmp_path / "home"
    shutil.copytree(demo_run[0], root)
    home = load_home(root)
    token = open_user_store(home).add("adviser", "csc-margate")[1]
    people = claimants(home, 120)[60:]
    rng = random.Random(11)
    for round_ in range(ROUNDS):
        proc, url = _start(root)
        stop = threading.Event()
        loops = [threading.Thread(target=_load, args=(url, token, people, stop, round_ * 10 + i))
                 for i in range(2)]
        for t in loops:
            t.start()
        time.sleep(rng.uniform(0.5, 3.0))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        stop.set()
        for t in loops:
            t.join(timeout=30)
    # kill -9 in the middle of a link run (its CURRENT switch is recorded first)
    link_kills = 0
    for _ in range(2):
        link = subprocess.Popen([_joinedup(), "link", "--home", str(root), "--out",
                                 f"crash-run-{_}"], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(1.0, 6.0))
        if link.poll() is None:
            os.kill(link.pid, signal.SIGKILL)
            link_kills += 1
        link.wait()

    from joinedup.operations import recover
    from joinedup.service_context import ServiceContext

    ctx = ServiceContext(home)
    try:
        finished = recover(ctx)  # what the next start does (open_service): finish what was recorded
        events = list(ctx.ledger.events())
        with ctx.store() as cur:
            consent_rows = cur.execute(
                "SELECT receipt_id, event_type FROM consent_events").fetchall()
            referral_rows = [r[0] for r in cur.execute(
                "SELECT referral_id FROM referrals").fetchall()]
        recorded = {(e.get("receipt_id"), e["type"].split(".")[1]) for e in events
                    if e["type"] in ("consent.granted", "consent.withdrawn")}
        referred = {e.get("referral_id") for e in events if e["type"] == "referral.created"}
        assert [r for r in consent_rows if tuple(r) not in recorded] == []
        assert [r for r in referral_rows if r not in referred] == []
        from joinedup.operations.recovery import recorded_run

        runs = [recorded_run(home.runs_dir, e) for e in events
                if e["type"] in ("linkage.run", "linkage.rollback")]
        current = (home.runs_dir / "CURRENT").read_text().strip()
        assert runs and current == runs[-1]  # CURRENT is the last run the ledger recorded
        pem = ctx.ledger.public_key_path.read_bytes()
    finally:
        ctx.close()
    result = verify_ledger(home.ledger_dir, pem)
    assert result.ok, result.problems
    assert len(consent_rows) > 0  # the load did write something
    print(f"{ROUNDS} kills under load + {link_kills} during link: {len(consent_rows)} consent "
          f"rows, {len(referral_rows)} referrals, {len(events)} ledger entries, all with events; "
          f"finished on reopening: {finished.reapplied}")
