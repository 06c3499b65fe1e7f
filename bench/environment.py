"""What a bench result was measured on: git SHA (and whether the work tree was dirty), machine,
load average, the settings the system's processes really ran with; and the descriptor limit
thousands of sockets need."""

from __future__ import annotations

import os
import platform
import re
import resource
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def machine() -> str:
    pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return (
        f"{os.cpu_count()} cores, {pages / 2**30:.0f} GiB, {platform.system()} "
        f"{platform.release()}, Python {platform.python_version()}"
    )


def git_sha() -> str:
    """HEAD's short SHA, with `+dirty` when the work tree has uncommitted changes."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return "unknown"
    return f"{sha}+dirty" if dirty else sha or "unknown"


SETTING = re.compile(
    r"^(AUTH_MODE|AUTO_TITLE_TOKENS|DEV_MODEL_TOKEN_DELAY_MS|ON_OWNER_LOSS|CONTEXT_TOKENS"
    r"|REDIS_CLUSTER|SUBSCRIBER_QUEUE|SESSION_IDLE_MS|OPENAI_MODEL|EVENT_LOOP|AI_HTTP_CLIENT)$"
    r"|^(RATE_|TOKENS_|MAX_|ANSWER_|AI_BATCH|WS_SEND|SEARCH_RATE|FANOUT_|SNAPSHOT_)|_WORKERS$"
)
"""Environment variables that change what a bench measures (README "Configuration"); never a
key, password, address or path."""
NOT_A_SETTING = re.compile(r"SECRET|PASSWORD|KEY|_FILE$|_URL$|_ADDR$|_PORT$|_DIR$")


def settings(pids: dict[str, list[int]]) -> dict[str, object]:
    """The settings our processes run with, read from their /proc/<pid>/environ (see
    settings_of)."""
    environs: dict[str, list[dict[str, str]]] = {}
    for role, role_pids in sorted(pids.items()):
        for pid in role_pids:
            try:
                raw = Path(f"/proc/{pid}/environ").read_bytes()
            except OSError:
                continue
            entries = (e.decode(errors="replace").partition("=") for e in raw.split(b"\0"))
            environs.setdefault(role, []).append({n: v for n, _, v in entries if n})
    return settings_of(environs)


def settings_of(environs: dict[str, list[dict[str, str]]]) -> dict[str, object]:
    """From each role's process environments: the SETTING names (never a key, password,
    address or path), one value per name when every process that has it agrees, else the value
    of each role; plus the number of session pods and whether the search indexer runs. A name
    not listed is at its default."""
    seen: dict[str, dict[str, str]] = {}
    for role, envs in environs.items():
        for env in envs:
            for name, value in env.items():
                if SETTING.search(name) and not NOT_A_SETTING.search(name):
                    seen.setdefault(name, {})[role] = value
    found: dict[str, object] = {
        name: next(iter(by_role.values())) if len(set(by_role.values())) == 1 else by_role
        for name, by_role in sorted(seen.items())
    }
    found["session_pods"] = len(environs.get("session", []))
    found["search_indexer"] = bool(environs.get("search"))
    return found


def load_average() -> float:
    """The 1-minute load average (other work on the machine skews every figure)."""
    return round(os.getloadavg()[0], 2)


def describe() -> dict[str, object]:
    sha = git_sha()
    return {
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "git_sha": sha,
        "dirty": sha.endswith("+dirty"),
        "machine": machine(),
        "load_avg_1m_at_start": load_average(),
    }


def raise_open_files_limit() -> None:
    """Thousands of sockets need thousands of descriptors: take the hard limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
