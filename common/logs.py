"""JSON-lines logging, set up once per process; ids travel as `extra` fields.

No line carries a credential: bearer tokens (`Bearer <token>`, a WebSocket subprotocol entry
`bearer.<token>`, which aiohttp's handshake warning quotes) and anything shaped like a JWT are
replaced by `[redacted]` in the message, every field and tracebacks, whatever logger wrote them
(aiohttp's access and error logs included).
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Mapping
from typing import Any

from common.tracing import current_trace_id

_STANDARD_ATTRS = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys() | {"message", "asctime"}
)


_SECRETS = re.compile(
    r"(?i:bearer)(?:\.|\s+)[A-Za-z0-9._~+/=-]{8,}"  # Bearer <token>, bearer.<token> (WS)
    r"|eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"  # a JWT wherever it appears
)
REDACTED = "[redacted]"


def redact(text: str) -> str:
    """`text` with every bearer token and JWT replaced by [redacted]."""
    return _SECRETS.sub(REDACTED, text)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, service and every extra field."""

    def __init__(self, service: str, fields: Mapping[str, str] | None = None) -> None:
        super().__init__()
        self._service = service
        self._fields = dict(fields or {})

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "service": self._service,
            "logger": record.name,
            "msg": record.getMessage(),
            **self._fields,
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                entry[key] = value
        trace_id = current_trace_id()
        if trace_id:
            entry["trace_id"] = trace_id
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return redact(json.dumps(entry, default=str))


def setup_logging(
    service: str, level: str = "INFO", fields: Mapping[str, str] | None = None
) -> None:
    """Route the root logger to stderr as JSON lines; `fields` go into every line (pod id)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service, fields))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
