"""The one test harness of the Python suites (tests/integration, tests/kafka)
and of scripts/bench/failover-figures.py.

- `harness.node`: `halyard node` processes (`NodeProcess`; `LocalNode` on the
  local journal), free ports, the one teardown stop policy (`stop_process`),
  `wait_accepts`, `close_all` (the teardown: stop every node, fail on a
  panic), and the registry of running nodes.
- `harness.waiting`: `wait_until` / `waiter(default_timeout)`: poll a
  condition instead of sleeping.
- `harness.logs`: progress output, node log timestamps, ANSI stripping.
- `harness.stomp_wire`: STOMP as bytes: the CONNECT probe, a frame parser,
  `RawConn` for input stomp.py would never send.
- `harness.bulk_stomp`: a pipelined raw-socket STOMP producer (receipts
  in flight) and a batching consumer, for backlogs of a million messages
  (tests/paging).
- `harness.clients`: `Client`, a stomp.py 1.2 connection that records every
  frame, so tests wait on conditions instead of sleeping.
- `harness.failover`: stomp.py clients that fail over between nodes
  (`FailoverProducer`, `FailoverConsumer`), `AcceptMonitor`, and the
  zero-loss checker (`check_delivery`, `assert_report`).
- `harness.kafka`: the Kafka side: `scripts/services/kafka.sh`, `HaNode`
  (a node with its journal and lock in Kafka), `Cluster`, `FaultProxy`
  (`halyard proxy`) and the log lines of the HA transitions.
- `harness.mirror`: two mirrored brokers under a lock coordinator (issue
  13): `MirrorNode`, `Pair`, `start_pair`, `wait_passive`,
  `kill_and_time_failover`, `MirrorProxy`, `compare_queues`, figures
  (tests/mirror, tests/amqp/test_jms_mirror.py).
- `harness.report`: the pytest hook that attaches the log tail of every
  running node to a failing test's report (tests/conftest.py registers it).

tests/pytest.ini puts tests/ on sys.path, so a suite imports
`from harness.node import ...`; a script outside pytest inserts
<repo>/tests into sys.path first.
"""
