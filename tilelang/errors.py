"""The one error type a kernel author sees, rendered rustc-style at their source line."""
from __future__ import annotations

from codegen.ir import Loc


class KernelError(Exception):
    """A mistake in a kernel or its call: `--> file:line:col`, the line, a caret, and the message."""

    def __init__(self, msg: str, loc: Loc | None = None):
        self.msg, self.loc = msg, loc
        super().__init__(self._render())

    def _render(self) -> str:
        if self.loc is None:
            return self.msg
        gutter = " " * len(str(self.loc.line))
        lines = [self.msg, f"{gutter}--> {self.loc}", f"{gutter} |"]
        if self.loc.text:
            lines.append(f"{self.loc.line} | {self.loc.text.rstrip()}")
            lines.append(f"{gutter} | {' ' * self.loc.col}{'^' * max(1, self.loc.end_col - self.loc.col)}")
        return "\n".join(lines)
