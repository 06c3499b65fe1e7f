"""HashRing: pinned lookups, determinism, minimal movement on join and leave, and load spread."""

from __future__ import annotations

import bisect
import hashlib
import random
from collections import Counter
from functools import cache

import pytest

from common import ring as ring_module
from common.ring import DEFAULT_VNODES, EmptyRing, HashRing

MAX_SPREAD = 1.25


@cache
def _keys(count: int, seed: int) -> tuple[str, ...]:
    """Session-id-shaped keys, the same on every run."""
    rng = random.Random(seed)
    return tuple(f"{rng.getrandbits(128):032x}" for _ in range(count))


def _pods(count: int) -> list[str]:
    return [f"pod-{i}" for i in range(count)]


def _spec_hash(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


# Hard-coded from this implementation: if one changes, keys would move between pods on upgrade.
PINNED = [
    pytest.param("session-1", "pod-b", id="session-1"),
    pytest.param("session-2", "pod-c", id="session-2"),
    pytest.param("session-3", "pod-c", id="session-3"),
    pytest.param("chat-42", "pod-a", id="chat-42"),
    pytest.param("01J9Z3K4M5N6P7Q8R9S0T1U2V3", "pod-b", id="ulid"),
    pytest.param("zzz", "pod-a", id="zzz"),
]


@pytest.mark.parametrize(("key", "expected"), PINNED)
def test_pinned_keys_map_to_pinned_owners(key, expected):
    assert HashRing(["pod-a", "pod-b", "pod-c"]).owner(key) == expected


def test_lookup_is_first_point_clockwise_from_key_hash():
    members = ["pod-a", "pod-b", "pod-c", "pod-d"]
    vnodes = 5
    points = sorted((_spec_hash(f"{m}#{i}"), m) for m in members for i in range(vnodes))
    positions = [position for position, _ in points]
    ring = HashRing(members, vnodes=vnodes)
    for key in _keys(2_000, seed=1):
        index = bisect.bisect_left(positions, _spec_hash(key)) % len(points)
        assert ring.owner(key) == points[index][1]


def test_rings_from_same_members_in_any_order_agree():
    members = _pods(7)
    shuffled = list(reversed(members))
    random.Random(3).shuffle(shuffled)
    first, second = HashRing(members), HashRing(shuffled)
    assert all(first.owner(key) == second.owner(key) for key in _keys(10_000, seed=2))


def test_tied_positions_go_to_the_smallest_member_id(monkeypatch):
    monkeypatch.setattr(ring_module, "_position", lambda text: 7)
    assert HashRing(["pod-c", "pod-a", "pod-b"], vnodes=2).owner("any") == "pod-a"


@pytest.mark.parametrize("n", [3, 5, 9])
def test_join_moves_only_keys_to_the_new_member_about_one_in_n_plus_one(n):
    before = HashRing(_pods(n))
    after = before.with_member("pod-new")
    keys = _keys(20_000, seed=4)
    moved = [key for key in keys if before.owner(key) != after.owner(key)]
    assert all(after.owner(key) == "pod-new" for key in moved)
    assert 0.5 / (n + 1) <= len(moved) / len(keys) <= 1.5 / (n + 1)


@pytest.mark.parametrize("n", [3, 5, 9])
def test_leave_moves_only_the_leaving_members_keys(n):
    before = HashRing(_pods(n))
    leaving = "pod-1"
    after = before.without_member(leaving)
    keys = _keys(20_000, seed=5)
    moved = [key for key in keys if before.owner(key) != after.owner(key)]
    assert moved
    assert all(before.owner(key) == leaving for key in moved)
    assert all(after.owner(key) != leaving for key in keys)
    assert 0.5 / n <= len(moved) / len(keys) <= 1.5 / n


@pytest.mark.parametrize("n", range(3, 11))
def test_default_vnodes_keep_load_within_spread_bound(n):
    ring = HashRing(_pods(n))
    keys = _keys(50_000, seed=6)
    load = Counter(ring.owner(key) for key in keys)
    assert set(load) == ring.members
    assert max(load.values()) / (len(keys) / n) <= MAX_SPREAD


def test_owners_are_distinct_and_start_with_the_owner():
    ring = HashRing(_pods(6))
    for key in _keys(1_000, seed=7):
        preference = ring.owners(key, 3)
        assert len(preference) == len(set(preference)) == 3
        assert preference[0] == ring.owner(key)


def test_owners_beyond_member_count_returns_every_member():
    ring = HashRing(["pod-a", "pod-b", "pod-c"])
    preference = ring.owners("session-1", 10)
    assert sorted(preference) == ["pod-a", "pod-b", "pod-c"]
    assert preference[0] == ring.owner("session-1")


def test_owners_of_zero_is_empty():
    assert HashRing(["pod-a"]).owners("session-1", 0) == []


def test_empty_ring_raises_empty_ring():
    ring = HashRing([])
    with pytest.raises(EmptyRing):
        ring.owner("session-1")
    with pytest.raises(EmptyRing):
        ring.owners("session-1", 1)
    assert issubclass(EmptyRing, LookupError)


def test_removing_the_last_member_leaves_an_empty_ring():
    with pytest.raises(EmptyRing):
        HashRing(["pod-a"]).without_member("pod-a").owner("session-1")


def test_with_and_without_member_return_new_rings():
    ring = HashRing(["pod-a", "pod-b"])
    grown = ring.with_member("pod-c")
    shrunk = ring.without_member("pod-a")
    assert ring.members == frozenset({"pod-a", "pod-b"})
    assert grown.members == frozenset({"pod-a", "pod-b", "pod-c"})
    assert shrunk.members == frozenset({"pod-b"})
    assert len(grown) == 3
    assert "pod-c" in grown
    assert "pod-c" not in ring
    assert grown == HashRing(["pod-c", "pod-b", "pod-a"])


def test_duplicate_members_count_once():
    assert len(HashRing(["pod-a", "pod-a", "pod-b"])) == 2
    assert HashRing(["pod-a", "pod-b"]).with_member("pod-a").members == {"pod-a", "pod-b"}


@pytest.mark.parametrize(
    ("members", "vnodes"),
    [
        pytest.param(["pod-a"], 0, id="zero-vnodes"),
        pytest.param([""], DEFAULT_VNODES, id="empty-id"),
    ],
)
def test_invalid_ring_is_refused(members, vnodes):
    with pytest.raises(ValueError):
        HashRing(members, vnodes=vnodes)
