"""Service registration whose requests that fail to decode reach the servicer as `Undecodable`,
so it can answer INVALID_ARGUMENT; grpcio's own handling of a deserializer error is UNKNOWN with
an error log per request (tests/security/test_fuzz_grpc.py sends such bytes)."""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf import message, message_factory
from google.protobuf.descriptor import ServiceDescriptor


class Undecodable:
    """Stands for a request whose bytes are not the method's message."""

    def __init__(self, why: str) -> None:
        self.why = why


def _decoder(cls: Any) -> Any:
    def decode(data: bytes) -> Any:
        try:
            return cls.FromString(data)
        except message.DecodeError as exc:
            return Undecodable(str(exc) or "malformed protobuf")

    return decode


def add_service(server: grpc.aio.Server, service: ServiceDescriptor, servicer: Any) -> None:
    """Registers every method of `service` on `servicer`, as the generated add_*_to_server
    does, with the decoder above."""
    handlers = {}
    for method in service.methods:
        request = message_factory.GetMessageClass(method.input_type)
        response = message_factory.GetMessageClass(method.output_type)
        kind = {
            (False, False): grpc.unary_unary_rpc_method_handler,
            (False, True): grpc.unary_stream_rpc_method_handler,
            (True, False): grpc.stream_unary_rpc_method_handler,
            (True, True): grpc.stream_stream_rpc_method_handler,
        }[(method.client_streaming, method.server_streaming)]
        handlers[method.name] = kind(
            getattr(servicer, method.name),
            request_deserializer=_decoder(request),
            response_serializer=response.SerializeToString,
        )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(service.full_name, handlers),)
    )
