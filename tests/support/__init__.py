"""What tests share, and nothing a test module defines: test files import from here (and from
deploy/stack/, the stack builder `make run` and the bench use too), never from another
test_*.py file or a conftest.

stacks (the specs suites start), secure (access control on, two pods, users), edge (Envoy in
front), grpc_client, user_calls, ws_frames, page (browser), tokens (RS256 and JWKS),
build_cache (slow suites' built artifacts by content hash), fakes/ (model servers), fuzz/
(the security fuzzers' cast, strategies and verdicts).
"""
