"""The AI service: streams a model's answer over gRPC as batches of text, then one finish record."""
