"""Creates secret files that are missing: the HS256 signing key (AUTH_SECRET_FILE) and the
cluster key (CLUSTER_SECRET_FILE, common/planes.py), each 256 random bits (compose's one-shot
`auth-secret` service; `make run` does the same in RUN_DIR). Never overwrites: tokens stay valid.

    python -m deploy.make_secret /auth/secret /auth/cluster-secret
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from common.auth import new_secret


def ensure(path: Path) -> bool:
    """True when a new key was written (mode 0600)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "wb") as out:
        out.write(new_secret())
    return True


if __name__ == "__main__":
    for target in map(Path, sys.argv[1:]):
        print(f"{'created' if ensure(target) else 'kept'} {target}")
