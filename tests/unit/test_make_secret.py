"""deploy/make_secret.py: a key is created once and never replaced."""

from __future__ import annotations

import stat
from pathlib import Path

from deploy.make_secret import ensure


def test_the_key_is_created_private_and_then_kept(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    assert ensure(path)
    first = path.read_bytes()
    assert len(first) == 64 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not ensure(path)
    assert path.read_bytes() == first
