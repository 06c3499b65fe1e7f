"""Creates secret files that are missing (compose's one-shot `auth-secret` service; `make run`
does the same in RUN_DIR). Never overwrites: tokens and running services stay valid.

    python -m deploy.make_secret /auth/secret /auth/cluster-secret /auth/redis-password \
        --redis-conf /auth/redis.conf

Every path gets its own random 256-bit key (hex, mode 0600). With `--redis-conf`, a
redis-server config file holding `requirepass <the last path's key>` is (re)written, mode 0644
so the redis image's own user can read it: keep the volume it lives on private to the stack.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from common.auth import new_secret

REDIS_CONF = "--redis-conf"


def ensure(path: Path) -> bool:
    """True when a new key was written (mode 0600)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "wb") as out:
        out.write(new_secret())
    return True


def write_redis_conf(password_file: Path, conf: Path) -> None:
    """`requirepass` for redis-server from `password_file` (mode 0644, see the module doc)."""
    password = password_file.read_text().strip()
    conf.write_text(f"requirepass {password}\n")
    conf.chmod(0o644)


def main(argv: list[str]) -> None:
    conf = None
    if REDIS_CONF in argv:
        at = argv.index(REDIS_CONF)
        conf = Path(argv[at + 1])
        argv = argv[:at] + argv[at + 2 :]
    paths = [Path(a) for a in argv]
    for path in paths:
        print(f"{'created' if ensure(path) else 'kept'} {path}")
    if conf is not None:
        write_redis_conf(paths[-1], conf)
        print(f"wrote {conf} from {paths[-1]}")


if __name__ == "__main__":
    main(sys.argv[1:])
