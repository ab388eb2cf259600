"""A small HTTP/1.1 load generator for the service benchmark (loopback, keep-alive).

Why not httpx in threads: on this 2-core machine the load generator shares the cores with
the server, and 20 httpx client threads cost ~1 ms of CPU (and the GIL) per request; here
each request is pre-encoded bytes written to a kept-alive socket, so the client costs a
few tens of microseconds and the figures are the server's.

Two ways to load the server, both with a fixed number of concurrent clients
(connections), each sending its next request only after the previous answer:

- closed loop (`rate=None`): every client sends again at once. Gives the most requests
  a second the server sustains; latency is then set by the queue (clients / throughput).
- paced (`rate=R`): the clients together start R requests a second on a fixed schedule
  (client i starts at t0 + (i + k * clients) / R). Latency is measured from the scheduled
  start, not the actual send, so a slow server that makes clients fall behind shows as
  latency instead of being hidden (no "coordinated omission").
"""

from __future__ import annotations

import asyncio
import gc
import json
import time
from collections import Counter
from dataclasses import dataclass, field


@dataclass
class LoadResult:
    latencies: list[float] = field(default_factory=list)  # seconds, one per request
    started: list[float] = field(default_factory=list)    # seconds after the phase began
    statuses: Counter = field(default_factory=Counter)    # HTTP status (-1: connection error)
    outcomes: Counter = field(default_factory=Counter)    # the body's "outcome" on a 200
    wall: float = 0.0
    late_starts: int = 0  # paced: requests started more than 10 ms after their slot
    clients: int = 0
    rate: float | None = None

    @property
    def count(self) -> int:
        return len(self.latencies)

    def slowest(self, n: int = 5) -> list[tuple[float, float]]:
        """(started at, latency) of the n slowest requests, in seconds."""
        return sorted(zip(self.started, self.latencies, strict=True), key=lambda sl: -sl[1])[:n]

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies)
        if not ordered:
            return float("nan")
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def encode_post(host: str, path: str, token: str, body: dict) -> bytes:
    payload = json.dumps(body, separators=(",", ":")).encode()
    head = (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n")
    return head.encode() + payload


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length = 0
    chunked = False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    if not chunked:
        return status, await reader.readexactly(length)
    body = bytearray()
    while True:
        size = int((await reader.readuntil(b"\r\n")).strip(), 16)
        chunk = await reader.readexactly(size + 2)
        if size == 0:
            return status, bytes(body)
        body += chunk[:-2]


async def _client(index: int, host: str, port: int, requests: list[bytes], clients: int,
                  rate: float | None, start: float, stop: float, result: LoadResult,
                  budget: list[int]) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    k = 0
    try:
        while True:
            if rate:
                slot = start + (index + k * clients) / rate
                if slot >= stop:
                    return
                delay = slot - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                elif delay < -0.010:
                    result.late_starts += 1
                t0 = slot
            else:
                t0 = time.perf_counter()
                if t0 >= stop:
                    return
            if budget[0] <= 0:
                return
            budget[0] -= 1
            request = requests[(index + k * clients) % len(requests)]
            k += 1
            try:
                writer.write(request)
                status, body = await _read_response(reader)
            except (OSError, asyncio.IncompleteReadError, ValueError):
                status, body = -1, b""
                writer.close()
                reader, writer = await asyncio.open_connection(host, port)
            result.latencies.append(time.perf_counter() - t0)
            result.started.append(t0 - start)
            result.statuses[status] += 1
            if status == 200:
                try:
                    result.outcomes[json.loads(body).get("outcome")] += 1
                except ValueError:
                    result.outcomes["unreadable"] += 1
    finally:
        writer.close()


async def _run(host: str, port: int, requests: list[bytes], clients: int, seconds: float,
               rate: float | None, max_requests: int) -> LoadResult:
    result = LoadResult(clients=clients, rate=rate)
    start = time.perf_counter() + 0.05
    stop = start + seconds
    budget = [max_requests]  # requests left to send, shared by the clients
    tasks = [_client(i, host, port, requests, clients, rate, start, stop, result, budget)
             for i in range(clients)]
    began = time.perf_counter()
    await asyncio.gather(*tasks)
    result.wall = time.perf_counter() - max(began, start)
    return result


def run_load(host: str, port: int, requests: list[bytes], clients: int = 20, seconds: float = 60,
             rate: float | None = None, max_requests: int = 1_000_000) -> LoadResult:
    """Drive the server with `clients` keep-alive connections; see the module docstring.

    Python's cyclic garbage collector is off while the load runs: the process that calls
    this may hold a large heap (the benchmark builds its demo home in-process), and a full
    collection would pause every client at once and show as server latency (seen: all 20
    clients ~350 ms slower at one instant). The load itself creates no reference cycles."""
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:  # pragma: no cover - uvloop is a dependency
        runner = asyncio.run
    was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        return runner(_run(host, port, requests, clients, seconds, rate, max_requests))
    finally:
        if was_enabled:
            gc.enable()
