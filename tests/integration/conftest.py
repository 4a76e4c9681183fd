"""Fixtures of the integration tests (a local-journal node and stomp.py
clients); the helpers themselves are in tests/harness.

- `node`: a started `LocalNode` (harness.node) private to the test;
  `module_node`: one shared by every test of a module. At teardown the node
  must not have panicked, and is stopped if still running.
- `clients`: a factory of `Client`s (harness.clients) that are all
  disconnected at teardown.
"""

from __future__ import annotations

import threading

import pytest

from harness.clients import Client
from harness.node import LocalNode


def _node_teardown(node: LocalNode) -> None:
    try:
        node.assert_no_panic()
    finally:
        node.close()


@pytest.fixture
def node(tmp_path) -> LocalNode:
    """A started node, private to the test."""
    n = LocalNode(tmp_path)
    try:
        n.start()
        yield n
    finally:
        _node_teardown(n)


@pytest.fixture(scope="module")
def module_node(tmp_path_factory) -> LocalNode:
    """A started node shared by every test of a module."""
    n = LocalNode(tmp_path_factory.mktemp("node"))
    try:
        n.start()
        yield n
    finally:
        _node_teardown(n)


@pytest.fixture
def clients():
    """Factory of `Client`s that are all disconnected at teardown."""
    made: list[Client] = []

    def make(node: LocalNode, client_id: str | None = None, cv: threading.Condition | None = None) -> Client:
        c = Client(node, client_id, cv)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close_quietly()
