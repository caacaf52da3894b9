"""The words the receptionist speaks and follows, as templated files, plus a tiny loader.

- ``receptionist.md`` — the Realtime agent's instructions (``$business_name``, ``$services``,
  ``$service_area``, ``$hours``, ``$today``, ``$now``, ``$on_call``);
- ``extraction.md`` — the post-call structured-extraction instructions (``$business_name``,
  ``$today``);
- ``intake.toml`` — the scripted intake's lines (used when no model is reachable).

Placeholders use ``string.Template`` syntax; a literal dollar sign is written ``$$``.
"""

from __future__ import annotations

import copy
import re
import tomllib
from functools import cache
from importlib import resources
from string import Template
from typing import Any

__all__ = ["intake_script", "render"]

_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")


@cache
def _read(filename: str) -> str:
    return resources.files(__name__).joinpath(filename).read_text(encoding="utf-8")


def render(name: str, **values: str) -> str:
    """``prompts/<name>.md`` with its ``$placeholders`` filled; a missing value raises KeyError."""
    if not _NAME_RE.match(name):
        raise ValueError(f"not a prompt name: {name!r}")
    return Template(_read(f"{name}.md")).substitute(values)


@cache
def _intake_script() -> dict[str, Any]:
    return tomllib.loads(_read("intake.toml"))


def intake_script() -> dict[str, Any]:
    """The scripted intake's wording from ``prompts/intake.toml`` (a fresh copy each call)."""
    return copy.deepcopy(_intake_script())
