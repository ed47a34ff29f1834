"""Errors raised by the Handlebars engine."""

from __future__ import annotations


class TemplateError(Exception):
    """A template failed to parse or to render.

    ``str(e)`` is ``"<name>:<line>:<column>: <detail>"`` with 1-based line and column of the tag
    (or token) at fault, so an operator can jump straight to it.
    """

    def __init__(self, name: str, line: int, column: int, detail: str) -> None:
        super().__init__(f"{name}:{line}:{column}: {detail}")
        self.name = name
        self.line = line
        self.column = column
        self.detail = detail


class HelperError(Exception):
    """Raised by a helper function; the renderer re-raises it as a located TemplateError."""


class SourceMap:
    """Maps absolute offsets in a template source to 1-based (line, column)."""

    __slots__ = ("_starts", "name")

    def __init__(self, source: str, name: str) -> None:
        self.name = name
        starts = [0]
        pos = source.find("\n")
        while pos >= 0:
            starts.append(pos + 1)
            pos = source.find("\n", pos + 1)
        self._starts = starts

    def position(self, offset: int) -> tuple[int, int]:
        lo, hi = 0, len(self._starts) - 1
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self._starts[mid] <= offset:
                lo = mid
            else:
                hi = mid - 1
        return lo + 1, offset - self._starts[lo] + 1

    def error(self, offset: int, detail: str) -> TemplateError:
        line, column = self.position(offset)
        return TemplateError(self.name, line, column, detail)
