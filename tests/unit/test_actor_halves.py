"""SessionActor is assembled from halves that declare what they use from each other as stubs
(`raise NotImplementedError`); the order of the bases decides which one wins. A stub that wins
is a method that fails at run time: this test finds them all."""

from __future__ import annotations

import inspect

import pytest

from session_service.actor.session_actor import SessionActor


def is_stub(function: object) -> bool:
    try:
        source = inspect.getsource(function)  # type: ignore[arg-type]
    except (OSError, TypeError):
        return False
    body = [line.strip() for line in source.splitlines() if line.strip()]
    return "raise NotImplementedError" in body[-1] and len(body) <= 10


@pytest.mark.parametrize("cls", [SessionActor])
def test_no_stub_wins_over_its_implementation(cls: type) -> None:
    names = {name for base in cls.__mro__ for name in vars(base)}
    winners = {name: inspect.getattr_static(cls, name) for name in names}
    stubs = sorted(name for name, value in winners.items() if callable(value) and is_stub(value))
    assert stubs == []
