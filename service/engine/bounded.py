"""Bounded containers for what clients can make the server remember."""

from __future__ import annotations

from collections import OrderedDict
from typing import TypeVar

T = TypeVar("T")


class LRU(OrderedDict[T, None]):
    """A set of at most `limit` keys; adding one beyond forgets the oldest."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self._limit = limit

    def __setitem__(self, key: T, value: None) -> None:
        super().__setitem__(key, value)
        if len(self) > self._limit:
            self.popitem(last=False)
