"""JSON log lines: one object each, with the service, fixed fields and every extra."""

from __future__ import annotations

import json
import logging

from common.logs import JsonFormatter


def test_a_line_holds_the_fixed_fields_and_the_extras() -> None:
    record = logging.LogRecord("x", logging.WARNING, __file__, 1, "lease lost", None, None)
    record.session_id, record.epoch = "s1", 7
    line = json.loads(JsonFormatter("session", {"pod_id": "session-2"}).format(record))
    assert line["service"] == "session" and line["pod_id"] == "session-2"
    assert (line["msg"], line["level"], line["session_id"], line["epoch"]) == (
        "lease lost",
        "warning",
        "s1",
        7,
    )
