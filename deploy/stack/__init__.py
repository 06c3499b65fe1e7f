"""The one way to start the system as local processes: `make run` (deploy/run_local.py), every
test suite (tests/support wraps it in fixtures) and the bench (bench/target.py) build on it.

Modules, lowest first: `ports` (free and busy ports), `waits` (polling), `processes` (a child
process by PID, redis-server, `python -m` services, readiness), `redis_cluster`, `netns` and `envoy`
(a Redis Cluster, a network namespace to partition, Envoy), `running` (`Stack`: one start step per
process, stopped together) and `spec` (`StackSpec`: the variants as options, `started(...)`).
"""
