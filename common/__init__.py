"""What the durable-chat services truly share: config parsing, logs, gRPC server plumbing."""
