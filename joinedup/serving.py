"""Running the HTTP API: one process, or N worker processes on one port.

With N workers each process binds its own listening socket with SO_REUSEPORT, so the
kernel spreads new connections evenly over the processes. (uvicorn's own multi-worker mode
shares one socket, and the process that wakes first accepts a whole burst of connections:
with keep-alive clients one process then served nearly all of them while the other idled;
see bench/RESULTS-service.md.) Linux lets only processes of the same user bind the port
alongside. The parent starts the workers, restarts one that dies, and stops them all on
SIGINT or SIGTERM.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import uvicorn

log = logging.getLogger("uvicorn.error")

def default_workers() -> int:
    """One worker per CPU core, at most 4 (each worker holds the run's index in memory)."""
    return max(1, min(4, os.cpu_count() or 1))


def serve(home_root: Path, host: str, port: int, workers: int = 1, access_log: bool = True) -> int:
    """Serve until interrupted; returns the exit status."""
    if workers == 1:
        from joinedup.api import create_app

        app = create_app(home_root)
        _follow_ledger(app)
        try:
            uvicorn.run(_checkpoint_at_shutdown(app), host=host, port=port,
                        access_log=access_log, log_level="info")
        finally:
            _checkpoint_ledgers()
        return 0
    return _Supervisor(home_root, host, port, workers, access_log).run()


def _listening_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


def _worker(home_root: str, host: str, port: int, workers: int, access_log: bool, ready) -> None:
    from joinedup.api import create_app

    # Ready first, then take the port: with SO_REUSEPORT the kernel hands a bound socket its
    # share of new connections at once, so a worker that bound before opening the home (and
    # finishing what a crash interrupted) or compiling the policy would leave them waiting.
    app = create_app(home_root, workers=workers)
    app.state.ctx.policy  # noqa: B018  (compiled now, not on the first request)
    _follow_ledger(app)
    sock = _listening_socket(host, port)
    # Ready once the app's startup has run, in its lifespan, before any request is served:
    # a worker killed after serving is then always replaced, never taken for one that
    # could not start (a thread polling `server.started` could lag behind a fast kill).
    config = uvicorn.Config(_checkpoint_at_shutdown(app, on_started=ready.set), host=host,
                            port=port, access_log=access_log, log_level="info")
    server = uvicorn.Server(config)
    try:
        server.run(sockets=[sock])
    finally:
        _checkpoint_ledgers()


def _follow_ledger(app) -> None:
    """Before the worker takes connections: the current run's index loaded (still
    encrypted content; joinedup.collate.prepare), and the worker's ledger verifier and
    report index kept up to date in the background (operations.audit.follow_ledger)."""
    from joinedup import collate
    from joinedup.operations.audit import follow_ledger

    try:
        collate.prepare(app.state.ctx)
    except Exception as exc:  # noqa: BLE001 - the first request loads it, or says why not
        log.warning("could not load the current run's index at start: %s", exc)
    follow_ledger(app.state.ctx)


def _checkpoint_at_shutdown(app, on_started: Callable[[], object] | None = None):
    """Run _checkpoint_ledgers when the app shuts down (and `on_started` once it has
    started). (After uvicorn returns is too late on SIGTERM: uvicorn re-raises the signal
    once it has shut down, which ends the process.)"""
    inner = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(the_app):
        async with inner(the_app) as state:
            if on_started is not None:
                on_started()
            yield state
        _checkpoint_ledgers()

    app.router.lifespan_context = lifespan
    return app


def _checkpoint_ledgers() -> None:
    """At shutdown: a signed checkpoint (copied to the witness) covering every entry this
    process appended, so that `audit verify` catches a cut of any length."""
    from audit import LedgerError, checkpoint_open_ledgers

    try:
        checkpoint_open_ledgers()
    except LedgerError as exc:
        log.error("audit checkpoint at shutdown failed: %s", exc)


class _Supervisor:
    def __init__(self, home_root: Path, host: str, port: int, workers: int, access_log: bool):
        self.args = (str(home_root), host, port, workers, access_log)
        self.workers = workers
        self.context = multiprocessing.get_context("spawn")
        self.stopping = False

    def _start(self) -> tuple[multiprocessing.process.BaseProcess, Any]:
        ready = self.context.Event()
        process = self.context.Process(target=_worker, args=(*self.args, ready), daemon=False)
        process.start()
        return process, ready

    def _stop(self, *_: object) -> None:
        self.stopping = True

    def run(self) -> int:
        # Fail early and clearly if the port cannot be bound (the workers would each fail).
        try:
            _listening_socket(self.args[1], self.args[2]).close()
        except OSError as exc:
            log.error("cannot listen on %s:%s: %s", self.args[1], self.args[2], exc.strerror or exc)
            return 1
        previous = {s: signal.signal(s, self._stop) for s in (signal.SIGINT, signal.SIGTERM)}
        running = [self._start() for _ in range(self.workers)]
        status = 0
        try:
            while not self.stopping:
                time.sleep(0.2)
                for i, (process, ready) in enumerate(running):
                    if process.is_alive() or self.stopping:
                        continue
                    if not ready.is_set():  # it never served: restarting would fail the same way
                        log.error("worker %s exited with %s while starting; stopping",
                                  process.pid, process.exitcode)
                        self.stopping, status = True, 1
                        break
                    log.warning("worker %s exited with %s; starting another",
                                process.pid, process.exitcode)
                    running[i] = self._start()
        finally:
            for process, _ in running:
                if process.is_alive():
                    process.terminate()  # uvicorn shuts down gracefully on SIGTERM
            for process, _ in running:
                process.join(timeout=30)
                if process.is_alive():
                    process.kill()
                    process.join()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return status
