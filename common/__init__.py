"""What the durable-chat services truly share: config parsing, logs, gRPC server plumbing, and one
of each mechanism: the linger batcher (batching), the channel cache (channels), the gRPC metadata
keys (wire)."""
