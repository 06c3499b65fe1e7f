"""The store's Redis schema without a Redis: key names stay what stored data was written under,
every Lua script loads from its file, and the append script's call names its keys and fields."""

from __future__ import annotations

import json
from importlib.resources import files

import pytest

from session_service.store import keys
from session_service.store.append_call import append_call
from session_service.store.footprint import Claim, LogLimit
from session_service.store.scripts import source
from session_service.store.thread_index import READ, REMOVE, TOUCH, IndexUpdate


def test_key_names_are_the_ones_stored_data_uses() -> None:
    assert keys.meta_key("s") == "dc:{s}:meta"
    assert keys.log_key("s") == "dc:{s}:log"
    assert keys.idem_key("s") == "dc:{s}:idem"
    assert keys.lease_key("s") == "dc:{s}:lease"
    assert keys.answer_key("s", 7) == "dc:{s}:ans:7"
    assert keys.owned_key("u") == "dc:u:{u}:owned"
    assert keys.attachments_key("u") == "dc:u:{u}:att"
    assert keys.attachment_bytes_key("u") == "dc:u:{u}:attb"
    assert keys.thread_keys("u") == [
        "dc:u:{u}:active",
        "dc:u:{u}:pinned",
        "dc:u:{u}:archived",
        "dc:u:{u}:read",
    ]
    assert keys.usage_key("u") == "dc:usage:{u}"
    assert keys.attachment_meta_key("ab") == "dc:att:{ab}"
    assert keys.uploaders_key("ab") == "dc:att:{ab}:by"
    assert (keys.MEMBERS_KEY, keys.ADDRS_KEY) == ("{dc-cluster}:members", "{dc-cluster}:addrs")
    assert (keys.PURGE_KEY, keys.FEED_KEY) == ("dc:purge", "dc:search:feed")
    assert keys.session_of_log_key(keys.log_key("a-b_c")) == "a-b_c"


def script_names() -> list[str]:
    folder = files("session_service.store").joinpath("lua")
    return sorted(p.name.removesuffix(".lua") for p in folder.iterdir() if p.name.endswith(".lua"))


@pytest.mark.parametrize("name", script_names())
def test_every_script_loads_with_its_includes_and_without_comment_lines(name: str) -> None:
    code = source(name)
    assert "--#include" not in code
    assert not [line for line in code.splitlines() if line.lstrip().startswith("--")]
    assert "redis.call" in code or name == "index_user"
    if "#!lua" in code:
        assert code.startswith("#!lua")


def test_the_append_script_carries_the_index_function() -> None:
    assert source("append").startswith("local function index_user(")


def call(inline: bool, **changes: object) -> tuple[dict[str, str], dict[str, object], list[bytes]]:
    """(name → key, the request, the entries) of one append script call."""
    args: dict[str, object] = {
        "session_id": "s",
        "epoch": 3,
        "now_ms": 1_700_000_000_000,
        "entries": [b'{"k":"m"}', b'{"k":"e"}'],
        "client_id": "",
        "expected_version": None,
        "version_increment": 0,
        "ended_answer": 0,
        "index": IndexUpdate(feed=False),
        "log_limit": None,
        "claim": None,
        "inline": inline,
    }
    args.update(changes)
    sent, argv = append_call(**args)  # type: ignore[arg-type]
    request = json.loads(argv[0])
    names = request.pop("keys")
    assert len(names) == len(set(names)) == len(sent)
    return dict(zip(names, sent, strict=True)), request, argv[1:]


def test_a_plain_write_sends_the_core_only() -> None:
    named, request, entries = call(True)
    assert named == {"meta": "dc:{s}:meta", "log": "dc:{s}:log", "idem": "dc:{s}:idem"}
    assert request == {
        "session": "s",
        "epoch": "3",
        "now": "1700000000000",
        "version_increment": "0",
    }
    assert entries == [b'{"k":"m"}', b'{"k":"e"}']


def test_every_side_effect_is_a_named_field_with_its_named_keys() -> None:
    index = IndexUpdate(
        (("title", "ü"), ("pv", "")), 5, 2, (("ann", READ), ("bob", TOUCH), ("cy", REMOVE)), "9"
    )
    named, request, _ = call(
        True,
        client_id="c1",
        expected_version=4,
        version_increment=1,
        ended_answer=2,
        index=index,
        log_limit=LogLimit(100, 10),
        claim=Claim("ann", 3),
    )
    assert named["answer"] == "dc:{s}:ans:2"
    assert named["owned"] == "dc:u:{ann}:owned"
    assert named["read:cy"] == "dc:u:{cy}:read"
    assert named["pinned:bob"] == "dc:u:{bob}:pinned"
    assert (named["feed"], named["purge"]) == ("dc:search:feed", "dc:purge")
    assert len(named) == 3 + 2 + 3 * 4 + 2
    assert request == {
        "session": "s",
        "epoch": "3",
        "now": "1700000000000",
        "version_increment": "1",
        "client_id": "c1",
        "expected_version": "4",
        "log_limit": {"bytes": "100", "events": "10"},
        "claim": {"owner": "ann", "limit": "3"},
        "summary": [["title", "ü"], ["pv", ""]],
        "index": {
            "score": "5",
            "message_count": "2",
            "users": [["ann", "r"], ["bob", "t"], ["cy", "x"]],
        },
        "feed_maxlen": str(keys.FEED_MAXLEN),
        "purge": "9",
    }


def test_on_a_redis_cluster_only_the_sessions_own_slot_is_sent() -> None:
    index = IndexUpdate((("title", "t"),), 5, 2, (("ann", READ),), "rem", feed=True)
    named, request, _ = call(False, index=index, claim=Claim("ann", 3))
    assert set(named) == {"meta", "log", "idem"}
    assert request["claim"] == {"owner": "ann", "limit": "3"}  # the owner's name; no count
    assert request["summary"] == [["title", "t"]]
    assert not {"index", "feed_maxlen", "purge"} & request.keys()
