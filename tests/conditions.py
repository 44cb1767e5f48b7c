"""Waiting on a condition, never on a sleep: the helpers the tests share."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import httpx
import pytest

T = TypeVar("T")


def wait_for(condition: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    """Poll ``condition`` until it is truthy and return its value; fail the test naming ``what``
    after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def answer(request: Callable[[], T]) -> T | None:
    """What ``request()`` returns; None while nothing listens there yet (a transport error), so
    that ``wait_for(lambda: answer(...))`` waits for a server to come up."""
    try:
        return request()
    except httpx.TransportError:
        return None
