"""Tile IR: frozen dataclasses, op kinds as an Enum, every node carrying the kernel author's location.

A kernel is a `Block` of nodes in SSA form. Values are tiles with a static shape (shape () is a scalar).
Structured control flow holds nested blocks: FOR (sequential, loop-carried values), IF (yields merged
values) and GRID (independent tile programs run in parallel).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from enum import Enum, auto
from typing import Any

from codegen.dtypes import DType


@dataclass(frozen=True, slots=True)
class Loc:
    file: str
    line: int
    col: int
    text: str = ""  # the source line, for error carets
    end_col: int = -1  # where the expression ends on that line (-1: unknown)

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col + 1}"


class CompileError(Exception):
    """An error in a kernel, located at the author's source; the frontend renders it."""

    def __init__(self, msg: str, loc: Loc | None = None):
        super().__init__(msg)
        self.msg, self.loc = msg, loc


@dataclass(frozen=True, slots=True)
class Type:
    dtype: DType
    shape: tuple[int, ...] = ()

    @property
    def is_scalar(self) -> bool:
        return self.shape == ()

    @property
    def numel(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n

    def __str__(self) -> str:
        return f"{self.dtype.name}[{','.join(map(str, self.shape))}]" if self.shape else self.dtype.name


_ids = itertools.count()


@dataclass(frozen=True, eq=False, slots=True)
class Value:
    """An SSA value; identity is the value (eq=False hashes by object)."""
    type: Type
    id: int = field(default_factory=lambda: next(_ids))

    @property
    def dtype(self) -> DType:
        return self.type.dtype

    @property
    def shape(self) -> tuple[int, ...]:
        return self.type.shape

    def __repr__(self) -> str:
        return f"%{self.id}"


class Op(Enum):
    # leaves
    ARG = auto()        # arg=param index: a runtime scalar parameter
    SHAPE = auto()      # arg=(param index, dim): an array extent (int64)
    CONST = auto()      # arg=python number, splat to the result shape
    ARANGE = auto()     # arg=(start, stop): int32 [stop-start]
    LOAD = auto()       # srcs=starts per array dim; arg=Access
    STORE = auto()      # srcs=(value, *starts); arg=Access
    # elementwise
    ADD = auto(); SUB = auto(); MUL = auto(); DIV = auto(); FLOORDIV = auto(); MOD = auto()  # noqa: E702
    MAXIMUM = auto(); MINIMUM = auto(); AND = auto(); OR = auto()  # noqa: E702
    LT = auto(); LE = auto(); GT = auto(); GE = auto(); EQ = auto(); NE = auto()  # noqa: E702
    NEG = auto(); ABS = auto(); NOT = auto(); EXP = auto(); EXP2 = auto(); LOG = auto()  # noqa: E702
    # (EXP2 arg=precision: None, or "float32"/"bfloat16" for tl.exp2's cheaper variants)
    SQRT = auto(); RSQRT = auto()  # noqa: E702
    WHERE = auto()      # srcs=(cond, a, b)
    CAST = auto()       # arg=saturate (bool), or "fast" (bfloat16 rounding of normals only; see tl.to)
    # shape
    BROADCAST = auto()  # result shape from the same-rank source with 1s expanded (or a scalar)
    RESHAPE = auto()    # insert/remove size-1 dims
    TRANSPOSE = auto()  # arg=perm
    INTERLEAVE = auto()  # srcs=(x, y), one type; last dim doubled: r[..., 2i] = x[..., i], r[..., 2i+1] = y[..., i]
    REDUCE = auto()     # arg=(kind "sum"|"max"|"min", axis, keepdims)
    DOT = auto()        # srcs=(a, b) or (a, b, acc); float32 (int32 for int8) accumulation
    # control flow
    FOR = auto()        # srcs=(start, stop, step, *init); regions=(body(iv, *carried) -> carried,)
    IF = auto()         # srcs=(cond,); regions=(then, else), both yield the results
    GRID = auto()       # srcs=extents; regions=(body(*program ids),)


BINARY = frozenset({Op.ADD, Op.SUB, Op.MUL, Op.DIV, Op.FLOORDIV, Op.MOD, Op.MAXIMUM, Op.MINIMUM, Op.AND, Op.OR})
COMPARE = frozenset({Op.LT, Op.LE, Op.GT, Op.GE, Op.EQ, Op.NE})
UNARY = frozenset({Op.NEG, Op.ABS, Op.NOT, Op.EXP, Op.EXP2, Op.LOG, Op.SQRT, Op.RSQRT})
TRANSCENDENTAL = frozenset({Op.EXP, Op.EXP2, Op.LOG, Op.SQRT, Op.RSQRT})
ELEMENTWISE = BINARY | COMPARE | UNARY | {Op.WHERE, Op.CAST}


def panel_group(d: DType) -> int:
    """k values per 32-bit group of a DOT's "panels" B operand (arg "panels": b[p, q, G*c + g] =
    B[G*q + g, p*W + c]): float32 1, bfloat16/float16 2, int8/FP8 4 (the AMX VNNI order)."""
    return max(1, 4 // d.itemsize)


def dot_panels(n: Node) -> tuple[bool, bool]:
    """Whether DOT node `n` takes its A as row panels (arg "a_panels" or "ab_panels": a[q, k, r] = A[q*R + r, k],
    float32) and its B as column panels of k-groups (arg "panels" or "ab_panels": see panel_group)."""
    return n.arg in ("a_panels", "ab_panels"), n.arg in ("panels", "ab_panels")


@dataclass(frozen=True, slots=True)
class Access:
    """How a LOAD/STORE addresses an array: param index, which array dims are sliced (kept in the
    tile) vs indexed (dropped), the tile extent of each kept dim, and the fill value for masked loads."""
    param: int
    kept: tuple[bool, ...]
    extents: tuple[int, ...]
    fill: float = 0.0


@dataclass(frozen=True, slots=True)
class Node:
    op: Op
    results: tuple[Value, ...]
    srcs: tuple[Value, ...] = ()
    arg: Any = None
    regions: tuple[Block, ...] = ()
    loc: Loc | None = None

    @property
    def result(self) -> Value:
        return self.results[0]


@dataclass(frozen=True, slots=True)
class Block:
    args: tuple[Value, ...]
    nodes: tuple[Node, ...]
    yields: tuple[Value, ...] = ()


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    kind: str  # "array" | "scalar"
    dtype: DType
    ndim: int = 0
    unit_stride: bool = True  # arrays: the last dim's stride is 1 element (a specialization fact)


@dataclass(frozen=True, slots=True)
class Kernel:
    name: str
    params: tuple[Param, ...]
    body: Block
    loc: Loc | None = None


def walk(block: Block):
    """Every node of a block and its nested regions, in program order."""
    for n in block.nodes:
        yield n
        for r in n.regions:
            yield from walk(r)


def format_kernel(k: Kernel, canonical: bool = False) -> str:
    """The kernel as text; `canonical` numbers values by first appearance (stable across runs)."""
    names: dict[Value, int] = {}

    def name(v: Value) -> str:
        return f"%{names.setdefault(v, len(names)) if canonical else v.id}"
    params = ", ".join(f"{p.name}: {p.dtype.name}" + (f"[{','.join('?' * p.ndim)}]{'' if p.unit_stride else ' strided'}"
                                                    if p.kind == "array" else "") for p in k.params)
    lines = [f"kernel {k.name}({params}) {{"]

    def block(b: Block, depth: int) -> None:
        pad = "  " * depth
        for n in b.nodes:
            res = ", ".join(f"{name(r)}: {r.type}" for r in n.results)
            srcs = ", ".join(map(name, n.srcs))
            arg = "" if n.arg is None else f" {n.arg}"
            lines.append(f"{pad}{res + ' = ' if res else ''}{n.op.name.lower()}({srcs}){arg}")
            for r in n.regions:
                lines.append(f"{pad}  ^({', '.join(map(name, r.args))}):")
                block(r, depth + 2)
                if r.yields:
                    lines.append(f"{pad}    yield {', '.join(map(name, r.yields))}")
    block(k.body, 1)
    lines.append("}")
    return "\n".join(lines)
