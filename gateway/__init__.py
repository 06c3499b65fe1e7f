"""The HTTP and WebSocket front door: seeds 000/001/003 over the session service's gRPC API."""
