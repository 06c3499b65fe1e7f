"""Built artifacts of slow suites (bundles, images, downloaded models), cached by content hash
so a second run on the same machine skips the build.

`cached(name, inputs, build)` hashes every file under `inputs` (paths relative to the checkout,
with their contents) plus `extra` strings (a tool's version, its arguments) and returns
CACHE_DIR/<name>-<hash16>/, calling `build(directory)` only when that directory is not there
yet. A build writes into a temporary directory that is renamed into place when it succeeds, so
a failed or interrupted build leaves nothing behind; older entries of the same name are removed.
CACHE_DIR is .cache/tests/ in the checkout (TEST_CACHE_DIR overrides it); `rm -rf .cache` is
always safe.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from deploy.stack.processes import ROOT

CACHE_DIR = Path(os.environ.get("TEST_CACHE_DIR", ROOT / ".cache" / "tests"))


def content_hash(inputs: Iterable[str | Path], *extra: str) -> str:
    """sha256 of each input file's path and bytes (directories walked, sorted), then `extra`."""
    digest = hashlib.sha256()
    for item in sorted(str(i) for i in inputs):
        root = ROOT / item
        files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
        for path in files:
            digest.update(str(path.relative_to(ROOT)).encode() + b"\0")
            digest.update(path.read_bytes() if path.exists() else b"(missing)")
            digest.update(b"\0")
    for value in extra:
        digest.update(value.encode() + b"\0")
    return digest.hexdigest()


def cached(
    name: str, inputs: Iterable[str | Path], build: Callable[[Path], None], *extra: str
) -> Path:
    """The directory holding what `build` made from `inputs` (see the module docstring)."""
    key = content_hash(inputs, *extra)[:16]
    target = CACHE_DIR / f"{name}-{key}"
    if target.is_dir():
        return target
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=CACHE_DIR))
    try:
        build(scratch)
        scratch.rename(target)
    except OSError:
        if not target.is_dir():  # not another run that finished the same build first
            raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    for old in CACHE_DIR.glob(f"{name}-*"):
        if old != target:
            shutil.rmtree(old, ignore_errors=True)
    return target
