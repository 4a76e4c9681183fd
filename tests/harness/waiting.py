"""Waiting on a condition instead of sleeping.

`waiter(default_timeout)` makes a suite's `wait_until(fn, what, timeout=..., poll=...)`:
it polls `fn` until it returns something truthy and returns that; after `timeout`
seconds it fails naming `what` and the last value (or error). An exception listed in
`retry_on` (default OSError: a node not listening yet, or gone) counts as "not yet".
"""

from __future__ import annotations

import time
from typing import Callable, TypeVar

T = TypeVar("T")


def wait_until(fn: Callable[[], T], what: str, timeout: float, poll: float = 0.05,
               retry_on: tuple[type[BaseException], ...] = (OSError,)) -> T:
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            last = fn()
            if last:
                return last  # type: ignore[return-value]
        except retry_on as e:
            last = e
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")
        time.sleep(poll)


def waiter(default_timeout: float, retry_on: tuple[type[BaseException], ...] = (OSError,)):
    """A `wait_until` whose timeout defaults to `default_timeout` seconds."""

    def wait(fn: Callable[[], T], what: str, timeout: float = default_timeout, poll: float = 0.05) -> T:
        return wait_until(fn, what, timeout, poll, retry_on)

    return wait
