"""How long the supervisor waits before restarting a child that exited (pure).

In: how long the child ran and whether its exit asked for an immediate restart. Out: the delay. The delay
starts at `initial` and doubles with every quick failure up to `maximum`; a child that ran for `reset_after`
seconds or more counts as healthy, so its next failure starts again at `initial`. An exit that asks for a
restart (Felix's 129 after a configuration change) restarts at once and resets the schedule.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Backoff"]


@dataclass
class Backoff:
    initial: float = 1.0
    maximum: float = 30.0
    reset_after: float = 60.0
    _next: float = field(default=0.0, init=False)

    def __post_init__(self) -> None:
        self._next = self.initial

    def delay(self, ran_for: float, restart_requested: bool = False) -> float:
        if restart_requested or ran_for >= self.reset_after:
            self._next = self.initial
            if restart_requested:
                return 0.0
        current = self._next
        self._next = min(current * 2, self.maximum)
        return current
