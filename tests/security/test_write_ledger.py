"""The fuzzers' write ledger counts what calls stored, never what the owner writes on its own:
an answer that ends in the background is not a write, on whichever branch it ends. (The fuzz
battery failed once in a few runs when an older answer ended on a branch an edit had left.)"""

from __future__ import annotations

import grpc

from deploy.stack.running import Stack
from deploy.stack.waits import eventually
from durablechat.v1 import branches_pb2, common_pb2, session_pb2, session_pb2_grpc
from tests.support.fuzz.stored import WriteLedger

TIMEOUT_S = 10


def test_an_answer_ending_on_a_branch_an_edit_left_is_not_counted(
    core: Stack, session_id: str
) -> None:
    with grpc.insecure_channel(core.session_addr) as channel:
        pod = session_pb2_grpc.SessionServiceStub(channel)
        sent = pod.SendPrompt(
            session_pb2.SendPromptRequest(
                session_id=session_id, content="slow tokens=3000", user="ann"
            ),
            timeout=TIMEOUT_S,
        )
        edited = pod.EditMessage(
            branches_pb2.EditMessageRequest(
                session_id=session_id, message_seq=sent.user_message.seq, content="tokens=1"
            ),
            timeout=TIMEOUT_S,
        )
        ledger = WriteLedger(pod)
        counted = ledger.writes(session_id)
        assert counted == edited.answer_seq, "prompt, answer start, edit, its answer start"

        def ends() -> list[common_pb2.Message]:
            page = pod.ListMessages(
                session_pb2.ListMessagesRequest(session_id=session_id, all_branches=True),
                timeout=TIMEOUT_S,
            )
            return [m for m in page.messages if m.answer_seq]

        finished = eventually(lambda: len(ends()) == 2 and ends(), timeout=60)
        slow = next(m for m in finished if m.answer_seq == sent.answer_seq)
        assert slow.seq > edited.answer_seq, "the first answer ended after the edit"
        assert ledger.writes(session_id) == counted
