"""A manual clock for deterministic tests: time moves only when the test says so."""

from __future__ import annotations


class ManualClock:
    def __init__(self, start: float = 0.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError("time does not go backwards")
        self.now += seconds
        return self.now

    def set(self, when: float) -> float:
        if when < self.now:
            raise ValueError("time does not go backwards")
        self.now = when
        return self.now
