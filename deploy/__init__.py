"""Running durable-chat: the local launcher (`make run`), and later Envoy and compose support."""
