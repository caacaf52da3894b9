"""Summarize a py-spy ``--format raw`` profile (collapsed stacks) into where the time goes.

Each sample is attributed to the innermost frame that belongs to a known kind (websockets
framing, socket writes, the openai SDK, asyncio, JSON, base64, SQLite/SQLAlchemy, our own
code...). A sample on a line that calls ``transport.write`` counts as a socket write: the
line is read from the source, so summarize a profile with the tree it was taken from
(``PROFILE_SOURCE=DIR``, default this tree) — after an edit the line numbers point
elsewhere.
Usage: python benchmarks/profile_summary.py PROFILE.txt [PROFILE2.txt ...]
"""

from __future__ import annotations

import collections
import functools
import os
import re
import site
import sys
from pathlib import Path

ROOTS = [
    Path(os.environ.get("PROFILE_SOURCE") or Path(__file__).resolve().parents[1]),
    *map(Path, site.getsitepackages()),
]
FRAME = re.compile(r"\((?P<file>[^():]+\.py):(?P<line>\d+)\)$")

# (kind, substrings of "function (file:line)"), checked innermost frame first.
KINDS = [
    (
        "socket writes",
        ("transport.write", "_write_ready", "(uvloop", "sock_send", "write (asyncio/selector"),
    ),
    ("websockets framing/parsing", ("websockets/",)),
    ("JSON encode/decode", ("json/", "orjson")),
    ("base64", ("base64",)),
    ("openai SDK", ("openai/",)),
    ("database (SQLAlchemy/SQLite)", ("sqlalchemy/", "sqlite3")),
    ("pydantic", ("pydantic",)),
    ("logging", ("logging/",)),
    ("uvicorn/starlette/fastapi", ("uvicorn/", "starlette/", "fastapi/")),
    ("our code", ("telephony/", "agent/", "crm/")),
    ("asyncio queues and wake-ups", ("asyncio/", "anyio/")),
    ("threads (to_thread/idle)", ("threading.py", "concurrent/")),
]


@functools.cache
def source_lines(file: str) -> list[str]:
    """A source file py-spy names (relative to the tree or to site-packages), read once."""
    for root in ROOTS:
        path = root / file
        if path.is_file():
            return path.read_text(encoding="utf-8").splitlines()
    return []


def source_line(frame: str) -> str:
    """The source line a py-spy frame ("function (file:line)") points at, if found here."""
    match = FRAME.search(frame)
    if match is None:
        return ""
    lines = source_lines(match["file"])
    number = int(match["line"])
    return lines[number - 1] if 0 < number <= len(lines) else ""


def kind_of(stack: list[str]) -> str:
    if any("_find_and_load" in f for f in stack):
        return "start-up (imports)"
    # Without native frames, a sample inside a socket write shows as the Python line that
    # called ``transport.write``: count it as the write, not as that line's module.
    if "transport.write(" in source_line(stack[-1]):
        return "socket writes"
    for frame in reversed(stack):
        for kind, needles in KINDS:
            if any(n in frame for n in needles):
                return kind
    return "other"


def summarize(path: str) -> None:
    totals: collections.Counter[str] = collections.Counter()
    ours: collections.Counter[str] = collections.Counter()
    with open(path, encoding="utf-8") as profile:
        lines = profile.read().splitlines()
    for line in lines:
        stack_text, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        stack = stack_text.split(";")
        kind = kind_of(stack)
        totals[kind] += count
        for frame in reversed(stack):
            if any(p in frame for p in ("telephony/", "agent/", "crm/")):
                ours[frame.split(" (")[0] + " " + frame.split("/")[-1].split(":")[0]] += count
                break
    total = sum(totals.values()) or 1
    print(f"{path}: {total} GIL samples")
    for kind, count in totals.most_common():
        print(f"  {kind:32} {100 * count / total:5.1f} %")
    print("  innermost own frames:")
    for frame, count in ours.most_common(8):
        print(f"    {frame:50} {100 * count / total:5.1f} %")


if __name__ == "__main__":
    for name in sys.argv[1:]:
        summarize(name)
