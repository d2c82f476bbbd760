"""The one exception the selector package raises for bad selector text or bad selector trees."""

from __future__ import annotations


class SelectorError(ValueError):
    """A selector could not be parsed or built.

    `reason` says what is wrong; `position` is the 0-based character offset in the selector text
    where the problem was found (None when the problem is not tied to one place, e.g. a tree built
    in code). The message combines both.
    """

    def __init__(self, reason: str, position: int | None = None) -> None:
        self.reason = reason
        self.position = position
        message = reason if position is None else f"{reason} at position {position}"
        super().__init__(message)
