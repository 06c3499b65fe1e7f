"""The dev model's Markdown answer: a fixed document with what real models write (a heading, a
list, a table, a link, a fenced code block with HTML in it), for the page's rendering tests.

A prompt whose last user message contains `format=markdown` is answered with MARKDOWN instead of
`tok0 tok1 …`, streamed in the chunks `chunks()` gives: each is a word with the whitespace before
it, so a prefix of k chunks has k whitespace-separated words and continuing after it (the dev
model's continuation) skips exactly those. Every other prompt is answered as before.
"""

from __future__ import annotations

import re

ASKED = "format=markdown"

MARKDOWN = """## Durable sessions

A session keeps **every answer** even when its *owner* crashes:

1. the owner writes each delta to Redis;
2. a client resumes from its cursor;
3. nothing is lost or repeated.

| Layer | Holds | Survives a crash |
|-------|-------|------------------|
| log | events | yes |
| actor | one session | moved to another pod |

Read more in the [design notes](https://example.com/durable-chat/design).

```python
def resume(cursor):
    return [e for e in log if e.seq > cursor]  # <b>not bold</b>
```

- [x] renders Markdown
- copy the code with its button
"""

_CHUNKS = tuple(re.findall(r"\s*\S+", MARKDOWN))


def asked(text: str) -> bool:
    return ASKED in text


def chunks() -> tuple[str, ...]:
    """The answer's streamed pieces; "".join(chunks()) is MARKDOWN without its final newline."""
    return _CHUNKS
