"""How the load clients identify themselves: with access control on (AUTH_MODE=jwt), a token per
user minted with the stack's signing key, as `durablechat token --user U` does; with it off, the
anonymous `?user=` of the seed WebSocket and nothing else.

Tokens are minted once per user and kept (one HS256 signature each, outside every measured
window when the caller mints them before it starts its clock). The key never leaves the bench's
processes: a load-client process gets it as hex on its stdin, not on its command line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import quote

from common.auth import mint

TOKEN_TTL_S = 24 * 3600
WS_PROTOCOL = "durablechat"
WS_BEARER = "bearer."


@dataclass
class Credentials:
    """A stack's signing key (None: AUTH_MODE=off) and the tokens minted with it so far."""

    secret: bytes | None = None
    _tokens: dict[str, str] = field(default_factory=dict, repr=False)

    @classmethod
    def from_hex(cls, text: str) -> Credentials:
        return cls(bytes.fromhex(text) if text else None)

    def hex(self) -> str:
        return self.secret.hex() if self.secret else ""

    @property
    def on(self) -> bool:
        return self.secret is not None

    def token(self, user: str) -> str:
        assert self.secret is not None, "no signing key: AUTH_MODE=off"
        if user not in self._tokens:
            self._tokens[user] = mint(self.secret, user, TOKEN_TTL_S)
        return self._tokens[user]

    def ws(self, url: str, user: str) -> tuple[str, tuple[str, ...]]:
        """The URL and subprotocols of a WebSocket for `user`."""
        if self.on:
            return url, (WS_PROTOCOL, WS_BEARER + self.token(user))
        return f"{url}?user={quote(user)}", ()

    def headers(self, user: str) -> dict[str, str]:
        """HTTP headers of a request made as `user`."""
        return {"Authorization": f"Bearer {self.token(user)}"} if self.on else {}

    def metadata(self, user: str) -> tuple[tuple[str, str], ...]:
        """gRPC metadata of a call made as `user`."""
        return (("authorization", f"Bearer {self.token(user)}"),) if self.on else ()
