"""The Lua scripts of the session service: one file each in `lua/` (packaged with the service),
read once per process and registered with redis-py (EVALSHA, loaded on a NOSCRIPT miss).

Contract:
- `source(name)` is the code of `lua/<name>.lua`, read on first use and cached. A line
  `--#include <file>.lua` is replaced by that file's code (shared Lua functions:
  `index_user.lua`); a `#!lua flags=…` shebang stays the script's first line. Lines that are
  only a comment are left out: they document the file, and a script run by EVAL in a
  pipeline (lease renewal, the index on a Redis Cluster) sends its text every time.
- `register(client, name)` gives the callable redis-py script (`await script(keys=, args=)`);
  every store class registers its scripts once, in its constructor.
- Each file's header names its KEYS, ARGV and replies; every key of one call shares one hash
  tag (keys.py), so a script runs on one Redis Cluster slot.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files

from redis.commands.core import AsyncScript

from session_service.store.redis_client import RedisClient

INCLUDE = "--#include "


@cache
def source(name: str) -> str:
    """The script `lua/<name>.lua` with its includes resolved."""
    text = files("session_service.store").joinpath("lua", f"{name}.lua").read_text(encoding="utf-8")
    lines = []
    for line in text.splitlines(keepends=True):
        if line.startswith(INCLUDE):
            lines.append(source(line[len(INCLUDE) :].strip().removesuffix(".lua")))
        elif not line.lstrip().startswith("--"):
            lines.append(line)
    return "".join(lines)


def register(client: RedisClient, name: str) -> AsyncScript:
    """The script `name` registered with `client` (no round trip: loaded by its first call)."""
    return client.register_script(source(name))
