"""Consistent-hash ring mapping session ids to pod ids; pure, no I/O.

Contract:

- Deterministic across processes and machines: positions come from BLAKE2b (never Python's
  salted `hash`), so the same set of members gives the same owner for every key, whatever order
  the members were listed in.
- Minimal movement: adding a member moves only keys that the new member now owns; removing one
  moves only the keys it owned. Either way about 1/N of the keys move (measured over 100,000
  keys: joins 3->4, 5->6, 9->10 moved 0.98-1.04 x 1/(N+1); leaves moved 1.00-1.03 x 1/N).
- Balance, measured with the default 256 vnodes over 100,000 random keys: for members
  pod-0..pod-{N-1} the busiest member carries 1.02-1.22x the mean load for N = 3..10. Over
  random sets of Kubernetes-style pod names (300 per N), median 1.05-1.10x, p99 1.13-1.19x,
  worst 1.23x; in a further 12,000 sets, 4 (0.03%) exceeded 1.25x (worst 1.28x). With 160
  vnodes 0.36% of sets exceeded 1.25x (worst 1.35x); with 200, 0.09% (worst 1.30x).

Lookups bisect a sorted list of N * vnodes positions: O(log(N * vnodes)), about 1 us; building
a 10-member ring takes about 3 ms.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Iterable, Iterator

DEFAULT_VNODES = 256
"""Points per member. 256 keeps max/mean load within 1.25x for N = 3..10 on all but about 3 in
10,000 member sets; 160 and 200 miss on about 36 and 9 in 10,000 (see the module docstring)."""

_HASH_BYTES = 8


class EmptyRing(LookupError):
    """The ring has no members, so no key has an owner."""


def _position(text: str) -> int:
    """A stable 64-bit position on the ring for `text`."""
    digest = hashlib.blake2b(text.encode(), digest_size=_HASH_BYTES).digest()
    return int.from_bytes(digest, "big")


class HashRing:
    """An immutable ring of members, each placed at `vnodes` points.

    A key belongs to the member holding the first point clockwise at or after the key's
    position, wrapping past the top. Two points at the same position are ordered by member id,
    so the ring never depends on construction order. `with_member` and `without_member`
    return new rings; an instance never changes, so it can be shared between tasks freely.
    """

    __slots__ = ("_members", "_point_members", "_positions", "_vnodes")

    def __init__(self, members: Iterable[str] = (), vnodes: int = DEFAULT_VNODES) -> None:
        if vnodes < 1:
            raise ValueError(f"vnodes must be at least 1, got {vnodes}")
        unique = frozenset(members)
        if "" in unique:
            raise ValueError("member ids must be non-empty")
        points = sorted(
            (_position(f"{member}#{i}"), member) for member in unique for i in range(vnodes)
        )
        self._members = unique
        self._vnodes = vnodes
        self._positions = [position for position, _ in points]
        self._point_members = [member for _, member in points]

    @property
    def members(self) -> frozenset[str]:
        return self._members

    @property
    def vnodes(self) -> int:
        return self._vnodes

    def owner(self, key: str) -> str:
        """The member that should own `key`; raises EmptyRing if there are no members."""
        return self._point_members[self._first_point(key)]

    def owners(self, key: str, n: int) -> list[str]:
        """The first `n` distinct members clockwise from `key`: its preference list.

        The first entry is `owner(key)`; asking for more members than the ring has returns them
        all. Raises EmptyRing if there are no members and `n` is positive.
        """
        if n < 0:
            raise ValueError(f"n must not be negative, got {n}")
        if n == 0:
            return []
        wanted = min(n, len(self._members))
        start = self._first_point(key)
        found: list[str] = []
        for member in self._walk_from(start):
            if member not in found:
                found.append(member)
                if len(found) == wanted:
                    break
        return found

    def with_member(self, member: str) -> HashRing:
        """A ring that also holds `member` (this ring if it already does)."""
        if member in self._members:
            return self
        return HashRing(self._members | {member}, self._vnodes)

    def without_member(self, member: str) -> HashRing:
        """A ring without `member` (this ring if it was not a member)."""
        if member not in self._members:
            return self
        return HashRing(self._members - {member}, self._vnodes)

    def __len__(self) -> int:
        return len(self._members)

    def __contains__(self, member: object) -> bool:
        return member in self._members

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, HashRing):
            return NotImplemented
        return self._members == other._members and self._vnodes == other._vnodes

    def __hash__(self) -> int:
        return hash((self._members, self._vnodes))

    def __repr__(self) -> str:
        return f"HashRing({sorted(self._members)!r}, vnodes={self._vnodes})"

    def _first_point(self, key: str) -> int:
        if not self._positions:
            raise EmptyRing("the hash ring has no members")
        index = bisect.bisect_left(self._positions, _position(key))
        return 0 if index == len(self._positions) else index

    def _walk_from(self, start: int) -> Iterator[str]:
        """Point owners clockwise from `start`, once round the ring."""
        yield from self._point_members[start:]
        yield from self._point_members[:start]
