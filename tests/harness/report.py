"""The pytest hook that attaches the log tail of every node still running (or
not yet closed) to the report of a failing test. tests/conftest.py imports it,
so every suite under tests/ has it once."""

from __future__ import annotations

import pytest

from harness.node import ACTIVE


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed and ACTIVE:
        for n in ACTIVE:
            rep.sections.append((f"halyard {n.name} log tail", n.log_tail(80)))
