"""The session service: one live owner per chat session, state in memory and durable in Redis."""
