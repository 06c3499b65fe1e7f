"""The limits an owner enforces, taken from config once and passed down."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    max_content_bytes: int = 64 * 1024
    """Largest message or prompt, in UTF-8 bytes."""
    max_state_bytes: int = 2 * 1024 * 1024
    """Largest state object, as compact JSON in UTF-8 bytes."""
    max_log_bytes: int = 64 * 1024 * 1024
    """MAX_LOG_BYTES: most bytes of stored entries in one session's log (footprint.py)."""
    max_log_events: int = 100_000
    """MAX_LOG_EVENTS: most entries in one session's log (footprint.py)."""
    max_sessions_per_user: int = 10_000
    """MAX_SESSIONS_PER_USER: most sessions one user may own, deleted ones counted until
    purged (footprint.py)."""
    max_import_bytes: int = 16 * 1024 * 1024
    """MAX_IMPORT_BYTES: largest import file (ImportSession, ForkSession), in UTF-8 bytes."""
    max_page_size: int = 1000
    """Most messages one ListMessages call returns."""
    default_page_size: int = 100
    subscriber_queue: int = 4096
    """Events buffered for one subscriber before it is cut off as too slow."""
    max_streams_per_user: int = 100
    """Subscribe streams one signed-in user may have open on one pod (stream_caps.py); 0: no
    cap."""
    max_queued_prompts: int = 16
    """Answers that may wait behind the streaming one in a session."""
    context_tokens: int = 8000
    """Token budget of the history handed to the model with a prompt (context.py)."""
    answer_batch_chunks: int = 32
    """Most model chunks in one stored answer batch."""
    answer_batch_ms: int = 20
    """After an answer's first batch, how long text may gather before the next batch is stored
    and sent (unless `answer_batch_chunks` fills it first); 0: as soon as the last store ends."""
    continue_answers: bool = True
    """After an owner dies mid-answer, continue the answer from its stored batches (else end it
    as INTERRUPTED, keeping the stored text)."""
    answer_retries: int = 3
    """Model calls retried per answer after a retryable failure (429, 5xx, stall, cut stream);
    each retry continues from the text already stored."""
    deleted_retention_s: int = 30 * 24 * 3600
    """A deleted thread can be restored this long; then it is purged (docs/threads.md)."""
    purge_interval_s: int = 60
    """How often each pod looks for deleted threads due for purging."""
    auto_title_tokens: int = 16
    """Most model tokens of a thread's automatic title (0: no automatic titles)."""
