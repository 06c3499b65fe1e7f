"""How SESSION_SERVICE_ADDR becomes the gateway's shared channel target."""

from __future__ import annotations

from gateway.app import channel_target

ROUND_ROBIN = [("grpc.lb_policy_name", "round_robin")]


def test_one_address_is_used_as_is() -> None:
    assert channel_target("127.0.0.1:50051") == ("127.0.0.1:50051", [])


def test_several_ip_addresses_are_spread_round_robin() -> None:
    target = channel_target("127.0.0.1:1,127.0.0.1:2")
    assert target == ("ipv4:127.0.0.1:1,127.0.0.1:2", ROUND_ROBIN)


def test_a_dns_name_for_every_pod_is_spread_round_robin() -> None:
    assert channel_target("dns:///session:50051") == ("dns:///session:50051", ROUND_ROBIN)
