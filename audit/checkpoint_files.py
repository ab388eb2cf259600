"""Append-only line files of checkpoints (the ledger's and the witness's): durable appends
that survive a torn last line, and reading the last checkpoint without reading the file."""

from __future__ import annotations

import json
import os
from pathlib import Path

CHECKPOINTS_FILE = "checkpoints.jsonl"


def append_line(path: Path, line: bytes, mode: int = 0o600) -> None:
    """Append one line durably. A torn last line (crash mid-write) is left where it is and
    ended with a newline first, so it cannot swallow this one (readers skip it)."""
    created = not path.exists()
    if created:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, mode)
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            line = b"\n" + line
        written = 0
        while written < len(line):
            written += os.write(fd, line[written:])
        os.fsync(fd)
    finally:
        os.close(fd)
    if created:
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def read_checkpoint_lines(path: Path) -> tuple[list[dict], list[int]]:
    """The checkpoints in a checkpoints file, and the line numbers that are not one."""
    if not path.exists():
        return [], []
    out: list[dict] = []
    unreadable: list[int] = []
    for n, line in enumerate(path.read_bytes().splitlines(), start=1):
        take_checkpoint_line(line, n, out, unreadable)
    return out, unreadable


def take_checkpoint_line(line: bytes, n: int, out: list[dict], unreadable: list[int]) -> None:
    """Line `n` of a checkpoints file: a checkpoint goes to `out`, anything else but a blank
    line to `unreadable` (by number)."""
    if not line.strip():
        return
    try:
        value = json.loads(line)
    except ValueError:
        value = None
    if isinstance(value, dict):
        out.append(value)
    else:
        unreadable.append(n)


def last_checkpoint_in(path: Path, chunk: int = 8192) -> dict | None:
    """The last readable checkpoint of a file, reading only as much of its tail as needed."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        size = os.fstat(fd).st_size
        while True:
            start = max(0, size - chunk)
            lines = os.pread(fd, size - start, start).splitlines()
            if start:
                lines = lines[1:]  # the first line may be cut by the chunk
            for line in reversed(lines):
                try:
                    value = json.loads(line)
                except ValueError:
                    continue
                if isinstance(value, dict):
                    return value
            if not start:
                return None
            chunk *= 8
    finally:
        os.close(fd)
