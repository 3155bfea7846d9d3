"""The `tl.*` primitives a kernel calls. Each checks its operands and builds tile IR (see semantic.py).

They only work while a `@tl.jit` kernel is being compiled; `tl.cdiv` also works on plain ints.
"""
from __future__ import annotations

from codegen import dtypes as dt
from codegen.dtypes import DType
from codegen.ir import CompileError, Op, Type
from tilelang import semantic as sem
from tilelang.semantic import Tensor, Tile


class constexpr:
    """Annotation of a compile-time parameter: `BM: tl.constexpr = 64`. Its value is part of the
    specialization; the autotuner searches these."""


def cdiv(a, b):
    """Ceiling division `(a + b - 1) // b` of ints or runtime int scalars."""
    return (a + b - 1) // b


class grid:
    """`for i, j in tl.grid(n0, n1):` independent tile programs, spread over the runtime's threads."""

    def __init__(self, *extents):
        self.extents = extents

    def __iter__(self):
        raise CompileError("tl.grid can only be iterated by a `for` loop inside a @tl.jit kernel")


class range:  # noqa: A001 - mirrors Python's range inside kernels
    """`for k in tl.range(stop)` / `tl.range(start, stop, step)`: a sequential loop whose
    iterations run in order; names reassigned in the body are loop-carried (`acc += ...`)."""

    def __init__(self, start, stop=None, step=1):
        if stop is None:
            start, stop = 0, start
        self.start, self.stop, self.step = start, stop, step

    def __iter__(self):
        raise CompileError("tl.range can only be iterated by a `for` loop inside a @tl.jit kernel")


def load(view, fill: float = 0.0):
    """`tl.load(x[i*BM:(i+1)*BM, 0:N], fill=-inf)`: a tile load whose masked-out part reads `fill`.
    (Plain `x[...]` fills with 0.) The frontend handles the subscript; reaching here means the
    argument was not a subscript of an array."""
    raise CompileError("tl.load expects a slice of an array parameter, e.g. tl.load(x[a:b, c:d], fill=0.0)")


def zeros(shape, dtype: DType = dt.float32) -> Tile:
    """A tile of zeros with a static shape."""
    return full(shape, 0, dtype)


def full(shape, value, dtype: DType = dt.float32) -> Tile:
    """A tile filled with `value` (a number or a runtime scalar)."""
    shape = _static_shape(shape)
    if isinstance(value, Tile):
        return sem.broadcast_to(sem.cast(value, dtype), shape)
    return Tile(sem.const_value(value, dtype, shape))


def arange(start, stop=None) -> Tile:
    """int32 tile [start, start+1, ..., stop-1] with compile-time bounds."""
    if stop is None:
        start, stop = 0, start
    if not all(isinstance(v, int) for v in (start, stop)) or stop <= start:
        raise CompileError(f"tl.arange needs compile-time ints with start < stop, got {start!r}, {stop!r}")
    return Tile(sem.builder().value(Op.ARANGE, Type(dt.int32, (stop - start,)), arg=(start, stop)))


def where(cond, a, b) -> Tile:
    """Elementwise `a if cond else b`, broadcasting all three."""
    return sem.where(cond, a, b)


def dot(a, b, acc=None, b_layout: str | None = None, a_layout: str | None = None) -> Tile:
    """Matrix product of 2-D tiles with float32 accumulation (int32 for int8); `acc` is added.

    `b_layout="panels"`: `b` is the K x N operand pre-packed the way the micro-kernels read it, as a 3-D
    tile of column panels of k-groups: b[p, q, G*c + g] = B[G*q + g, p*W + c], with G = 4 // itemsize
    (float32: 1, bfloat16/float16: 2, int8/FP8: 4; the AMX VNNI order) and W = b.shape[2] // G a
    multiple of 16. The result is M x (P*W). Packing B once (e.g. per weight) and reading its panels in
    place spares every program the packing (see ops.matmul).

    `a_layout="panels"` (float32): `a` is the M x K operand as a 3-D tile of row panels, a[q, k, r] =
    A[q*R + r, k]: each panel's k-steps contiguous, R rows each. Where R is the FMA micro-kernel's row block
    (`codegen.dot.FMA_BLOCKS`, 6) the dot reads them in place (else unpacks them). The result is (Q*R) x N."""
    return sem.dot(a, b, acc, b_layout, a_layout)


def exp(x): return sem.unary(Op.EXP, x)
def exp2(x, precision=None):
    """2^x elementwise (float32). `precision=None`: within 1 ulp, subnormal results and specials exact.
    For softmax-like uses (x <= 0, tiny results irrelevant), a cheaper approximation: "float32" (about 1.5
    ulp) or "bfloat16" (relative error 1e-4, ahead of a rounding to bfloat16); both flush results below
    2^-126 (for vectors of 4, 8 or 16 lanes on targets with AVX512-BF16 and 64-byte vectors; below
    2^-125.5 elsewhere: other targets, scalars, other widths such as a row's ragged tail) to zero, never give
    a subnormal (2^-inf = 0 exactly), are exact on integers (1 at 0), inf from 128 and keep NaN. The
    interpreter computes exp2 exactly whatever `precision` says."""
    return sem.unary(Op.EXP2, x, precision)


def log(x): return sem.unary(Op.LOG, x)
def sqrt(x): return sem.unary(Op.SQRT, x)
def rsqrt(x): return sem.unary(Op.RSQRT, x)
def abs(x): return sem.unary(Op.ABS, x)  # noqa: A001
def maximum(a, b): return sem.binary(Op.MAXIMUM, a, b)
def minimum(a, b): return sem.binary(Op.MINIMUM, a, b)
def sum(x, axis=None, keepdims=False): return sem.reduce("sum", x, axis, keepdims)  # noqa: A001
def max(x, axis=None, keepdims=False): return sem.reduce("max", x, axis, keepdims)  # noqa: A001
def min(x, axis=None, keepdims=False): return sem.reduce("min", x, axis, keepdims)  # noqa: A001
amax = max


def interleave(x, y) -> Tile:
    """The last dims of two tiles interleaved, as Triton's `tl.interleave`.

    Args: x, y: tiles (rank >= 1) of one shape and one dtype (any dtype).
    Returns: a tile of shape x.shape[:-1] + (2 * x.shape[-1],) with r[..., 2*i] = x[..., i] and
        r[..., 2*i + 1] = y[..., i].
    Raises: a KernelError at the call when x or y is a scalar, or their shapes or dtypes differ.
    Example: `out[q, 0:2 * W] = tl.interleave(a[2 * q, 0:W], a[2 * q + 1, 0:W])` pairs rows 2q, 2q+1."""
    return sem.interleave(x, y)


def cast(x, dtype: DType, saturate: bool = False, fast: bool = False) -> Tile:
    """`x.to(dtype)`; float targets round to nearest even, `saturate` (FP8) clamps overflow to the max.
    `fast` (bfloat16 targets): the rounding of AVX512-BF16's vcvtneps2bf16, one instruction where the
    exact cast takes about ten: identical except that float32 subnormal inputs give a zero of their sign
    and NaN keeps its top payload bits (quieted) instead of becoming 0x7FC0. The same bits on every
    target (integer arithmetic without AVX512-BF16) and in the interpreter."""
    return sem.cast(x, dtype, saturate, fast)


def _static_shape(shape) -> tuple[int, ...]:
    shape = shape if isinstance(shape, (tuple, list)) else (shape,)
    if not all(isinstance(s, int) and s > 0 for s in shape):
        raise CompileError(f"tile shapes must be positive compile-time ints, got {tuple(shape)!r}")
    return tuple(shape)


__all__ = ["Tensor", "Tile", "arange", "cdiv", "constexpr", "dot", "exp", "exp2", "full", "grid", "load",
           "log", "max", "maximum", "min", "minimum", "range", "rsqrt", "sqrt", "sum", "where", "zeros", "abs",
           "amax", "cast", "interleave"]
