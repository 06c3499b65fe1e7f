"""Attachment bytes on disk and their metadata in Redis (docs/attachments.md).

- Bytes: one file per content at `ATTACHMENTS_DIR/<sha[:2]>/<sha>`, written to a temporary file
  in the same directory tree, fsynced, renamed into place and the directory fsynced: a file at
  its final name is always whole. The same content uploaded twice is stored once.
- Metadata: `dc:att:{<sha>}` (size, sniffed media type, first upload time) and
  `dc:att:{<sha>}:by` (who uploaded it: only they may attach it to a message), written after the
  file is durable. An upload is acknowledged only when both are.
- Limits: MAX_ATTACHMENT_BYTES per file; chunks of at most CHUNK_BYTES. Over the limit:
  INVALID_ARGUMENT and the temporary file is removed (nothing was kept).
  MAX_ATTACHMENT_BYTES_PER_USER in all per uploader (footprint.py): once the whole file is in
  its temporary file, its size is reserved in the user's total before it is placed; over the
  limit: RESOURCE_EXHAUSTED, the temporary file removed, no metadata written. A file the user
  uploaded before counts once. Callers without a name (AUTH_MODE=off, anonymous) are not
  counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from session_service.errors import InvalidArgument, StoreUnavailable
from session_service.log.events import now_ms
from session_service.store.footprint import attachments_full
from session_service.store.keys import (
    attachment_bytes_key,
    attachment_meta_key,
    attachments_key,
    uploaders_key,
)
from session_service.store.redis_client import REDIS_ERRORS, RedisClient
from session_service.store.scripts import register
from session_service.store.sniff import SNIFF_BYTES, sniff

CHUNK_BYTES = 1024 * 1024
SHA256 = re.compile(r"[0-9a-f]{64}")
MAX_FILENAME_CHARS = 255


@dataclass(frozen=True)
class Attachment:
    sha256: str
    filename: str
    mime_type: str
    size: int


def valid_sha(value: str) -> str:
    if not SHA256.fullmatch(value):
        raise InvalidArgument("sha256 must be 64 lowercase hex digits")
    return value


def valid_filename(name: str) -> str:
    name = name.strip()
    if not name or len(name) > MAX_FILENAME_CHARS:
        raise InvalidArgument(f"filename must be 1 to {MAX_FILENAME_CHARS} characters")
    if any(c in name for c in "/\\\x00") or name in (".", ".."):
        raise InvalidArgument("filename must not contain path separators or NUL")
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise InvalidArgument("filename must not contain control characters")
    return name


class AttachmentStore:
    def __init__(
        self, client: RedisClient, root: Path, max_bytes: int, max_user_bytes: int = 0
    ) -> None:
        self._client = client
        self.root = root
        self.max_bytes = max_bytes
        self.max_user_bytes = max_user_bytes
        """Most bytes one user may have uploaded in all; 0: not bounded."""
        self._reserve = register(client, "reserve_attachment")
        self._release = register(client, "release_attachment")

    async def _reserve_bytes(self, user: str, sha: str, size: int) -> bool:
        """Counts the file in the user's total or refuses it (LimitReached); True when this
        call added it (so a later failure gives it back)."""
        if not (user and self.max_user_bytes):
            return False
        keys = [attachments_key(user), attachment_bytes_key(user)]
        try:
            done, used = await self._reserve(keys=keys, args=[sha, size, self.max_user_bytes])
        except REDIS_ERRORS as exc:
            raise StoreUnavailable(f"redis: {exc}") from exc
        if not done:
            raise attachments_full(int(used), size, self.max_user_bytes)
        return int(done) == 1

    async def _release_bytes(self, user: str, sha: str) -> None:
        keys = [attachments_key(user), attachment_bytes_key(user)]
        with contextlib.suppress(*REDIS_ERRORS):
            await self._release(keys=keys, args=[sha])

    def path(self, sha: str) -> Path:
        return self.root / sha[:2] / sha

    async def save(self, user: str, filename: str, chunks: AsyncIterator[bytes]) -> Attachment:
        """Stores an upload; returns it once the bytes and the metadata are durable."""
        filename = valid_filename(filename)
        tmp_dir = self.root / "tmp"
        await asyncio.to_thread(tmp_dir.mkdir, parents=True, exist_ok=True)
        tmp = tmp_dir / f"{secrets.token_hex(16)}.part"
        digest = hashlib.sha256()
        head = b""
        size = 0
        try:
            with tmp.open("wb") as out:
                async for chunk in chunks:
                    if len(chunk) > CHUNK_BYTES:
                        raise InvalidArgument(f"chunks must be at most {CHUNK_BYTES} bytes")
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise InvalidArgument(
                            f"the file is larger than the limit of {self.max_bytes} bytes"
                        )
                    if len(head) < SNIFF_BYTES:
                        head += chunk[: SNIFF_BYTES - len(head)]
                    digest.update(chunk)
                    out.write(chunk)
                await asyncio.to_thread(_sync, out.fileno())
            sha = digest.hexdigest()
            reserved = await self._reserve_bytes(user, sha, size)  # refused: nothing placed
            try:
                await asyncio.to_thread(_place, tmp, self.path(sha))
            except OSError:
                if reserved:
                    await self._release_bytes(user, sha)
                raise
        finally:
            tmp.unlink(missing_ok=True)
        mime = sniff(head)
        try:
            pipe = self._client.pipeline(transaction=True)
            pipe.hsetnx(attachment_meta_key(sha), "created", now_ms())
            pipe.hset(attachment_meta_key(sha), mapping={"size": size, "mime": mime})
            pipe.sadd(uploaders_key(sha), user)
            await pipe.execute()
        except REDIS_ERRORS as exc:
            if reserved:
                await self._release_bytes(user, sha)
            raise StoreUnavailable(f"redis: {exc}") from exc
        return Attachment(sha, filename, mime, size)

    async def grant(self, shas: set[str], user: str) -> None:
        """Lets `user` attach these stored files (a reader who forks a branch that has them)."""
        if not shas:
            return
        try:
            pipe = self._client.pipeline(transaction=False)
            for sha in shas:
                pipe.sadd(uploaders_key(sha), user)
            await pipe.execute()
        except REDIS_ERRORS as exc:
            raise StoreUnavailable(f"redis: {exc}") from exc

    async def known(self, sha: str, user: str | None) -> tuple[int, str] | None:
        """(size, media type) of a stored file `user` uploaded (None: anyone's); None when
        there is no such file."""
        try:
            pipe = self._client.pipeline(transaction=False)
            pipe.hmget(attachment_meta_key(sha), ["size", "mime"])
            pipe.sismember(uploaders_key(sha), user or "")
            (size, mime), uploaded = await pipe.execute()
        except REDIS_ERRORS as exc:
            raise StoreUnavailable(f"redis: {exc}") from exc
        if size is None or (user is not None and not uploaded):
            return None
        return int(size), mime.decode() if isinstance(mime, bytes) else str(mime)


def _sync(fd: int) -> None:
    os.fsync(fd)


def _place(tmp: Path, final: Path) -> None:
    """Renames the durable temporary file into place (or drops it: the content is there)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    if final.exists():
        return
    os.replace(tmp, final)
    fd = os.open(final.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
