"""durable-chat's Python client: `ChatSessionClient` (seed 003's operations over gRPC) and the
generated stubs (`durablechat.v1`, made by `make clients`)."""

from durablechat_client.session import RESTART, Answer, ChatSessionClient, Restart

__all__ = ["RESTART", "Answer", "ChatSessionClient", "Restart"]
