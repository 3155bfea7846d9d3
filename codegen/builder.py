"""Builds tile IR: a stack of open blocks, nodes created at the current source location."""
from __future__ import annotations

from codegen.ir import Block, Loc, Node, Op, Type, Value


class Builder:
    def __init__(self):
        self._blocks: list[list[Node]] = [[]]
        self.loc: Loc | None = None

    def emit(self, op: Op, result_types: tuple[Type, ...] | list[Type], srcs=(), arg=None, regions=()) -> Node:
        node = Node(op, tuple(Value(t) for t in result_types), tuple(srcs), arg, tuple(regions), self.loc)
        self._blocks[-1].append(node)
        return node

    def value(self, op: Op, type_: Type, srcs=(), arg=None) -> Value:
        return self.emit(op, (type_,), srcs, arg).result

    def open_block(self) -> None:
        self._blocks.append([])

    def close_block(self, args: tuple[Value, ...], yields: tuple[Value, ...] = ()) -> Block:
        return Block(tuple(args), tuple(self._blocks.pop()), tuple(yields))

    @property
    def depth(self) -> int:
        return len(self._blocks)
