"""The SessionService method table (session_service/rpc/methods.py) and the servicer agree with
the proto: one descriptor per method, each forwarding through its own peer method, and one
handler per method on SessionServicer itself."""

from __future__ import annotations

from typing import Any

from durablechat.v1 import session_pb2, session_pb2_grpc
from session_service.rpc import methods
from session_service.rpc.methods import Routed
from session_service.servicer import SessionServicer

SERVICE = session_pb2.DESCRIPTOR.services_by_name["SessionService"]


class NamesItsAttributes:
    """A stand-in stub: every attribute is its own name."""

    def __getattr__(self, name: str) -> str:
        return name


def test_every_method_of_the_service_has_one_descriptor() -> None:
    names = [rpc.name for rpc in methods.EVERY]
    assert sorted(names) == sorted(m.name for m in SERVICE.methods)
    assert len(set(names)) == len(names)


def test_a_routed_call_is_forwarded_to_the_method_it_names() -> None:
    stub: Any = NamesItsAttributes()
    routed = [rpc for rpc in methods.EVERY if isinstance(rpc, Routed)]
    assert routed
    forwarded_to: dict[str, Any] = {rpc.name: rpc.peer(stub) for rpc in routed}
    assert forwarded_to == {rpc.name: rpc.name for rpc in routed}


def test_streams_and_calls_served_here_are_not_forwarded_by_the_unary_path() -> None:
    served_here = {"Subscribe", "GetUserUsage", "ListThreads", "SetThreadFlags", "MarkRead"}
    local = {rpc.name for rpc in methods.EVERY if not isinstance(rpc, Routed)}
    assert local == served_here | {"ForkSession"}


def test_every_prompt_is_a_routed_write_that_tells_whether_it_answered() -> None:
    prompts = [rpc for rpc in methods.EVERY if rpc.prompts]
    assert {rpc.name for rpc in prompts} == {"SendPrompt", "EditMessage", "RegenerateAnswer"}
    assert all(isinstance(rpc, Routed) and rpc.write and rpc.answered for rpc in prompts)
    others = [rpc for rpc in methods.EVERY if isinstance(rpc, Routed) and not rpc.prompts]
    assert [rpc.name for rpc in others if rpc.answered is not None] == []


def test_a_duplicate_prompt_or_one_without_an_answer_did_not_answer() -> None:
    answered = methods.SEND_PROMPT.answered
    assert answered is not None
    assert answered(session_pb2.SendPromptResponse(answer_seq=3))
    assert not answered(session_pb2.SendPromptResponse(answer_seq=3, duplicate=True))
    assert not answered(session_pb2.SendPromptResponse(answer_seq=0))


def test_the_servicer_itself_defines_one_handler_per_method() -> None:
    own = vars(SessionServicer)
    assert [m.name for m in SERVICE.methods if m.name not in own] == []
    assert SessionServicer.__bases__ == (session_pb2_grpc.SessionServiceServicer,)  # no mixins
