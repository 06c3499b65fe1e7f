"""Export and import of a session (docs/export.md): operations on the owner actor they take
(actor/session_actor.py). The format is export_format.py; here is only what needs the owner: a
consistent read of the log, and an import stored with one fenced write after the importer's
claim."""

from __future__ import annotations

from typing import Any

from session_service.actor import access
from session_service.actor.access import Caller
from session_service.actor.session_actor import SessionActor
from session_service.errors import FailedPrecondition, InvalidArgument
from session_service.features.transfer import export_format
from session_service.log.events import now_ms
from session_service.log.merge_patch import dump_json
from session_service.store import footprint


class TransferOps:
    """The export and import of one actor's session."""

    def __init__(self, actor: SessionActor) -> None:
        self._actor = actor

    async def _checked_attachments(self, caller: Caller, events: list[dict[str, Any]]) -> None:
        """An import may refer only to files the caller could attach to a new message (their
        uploads; ForkSession grants a reader the files of the branch it copies), and their type
        and size are the stored ones, not the file's. Refs are rewritten in place."""
        for event in events:
            for ref in event.get("attachments", []):
                known = await self._actor.known_attachment(ref["sha256"], caller)
                if known is None:
                    raise InvalidArgument(
                        f"event {event['n']}: attachment {ref['sha256']} was not uploaded by you"
                    )
                ref["size"], ref["mimeType"] = known

    def export_lines(
        self, caller: Caller, upto_seq: int | None, at_seq: int = 0
    ) -> tuple[list[str], int]:
        """The export of the log up to `upto_seq` (None: all of it now), or of the branch
        through message `at_seq` up to it; returns (lines, the seq the export stops at), so
        later pages can read the same prefix."""
        s = self._actor.read(caller)
        upto = s.last_seq if upto_seq is None else min(upto_seq, s.last_seq)
        events = s.events_after(0)[:upto]  # the whole log (rpc/methods.py: not `recent`)
        if at_seq:
            s.message_for(at_seq, "at_seq")
            events = export_format.branch_events(events, s.tree.path(at_seq))
        return export_format.export_lines(s.session_id, events, now_ms()), upto

    async def import_events(self, caller: Caller, events: list[dict[str, Any]]) -> int:
        """Stores checked events (export_format.parse_import) into this empty session, which
        the caller claims first; returns how many were stored. Every stored entry records the
        caller as its importer: the authors the file names are shown and audited as imported."""
        export_format.set_importer(events, caller.user if caller.enforced else "")
        actor = self._actor
        async with actor.lock:
            actor.check_writable()
            s = actor.session
            if s.last_seq:
                access.require(s, caller, access.READ)  # NOT_FOUND unless they may know of it
                raise FailedPrecondition("the session is not empty; import into a new one")
            await self._checked_attachments(caller, events)
            first = s.last_seq + 1 + access.claims(s, caller)  # the claim's grant comes first
            entries = export_format.import_entries(events, first)
            footprint.check_import(entries, actor.limits)  # before the claim: nothing stored
            await actor.claim_unowned(caller)
            if entries:
                states = sum(1 for e in events if e["type"] == "state")
                await actor.store(entries, version_increment=states)
            s.state_size = len(dump_json(s.state).encode())
            return len(entries)
