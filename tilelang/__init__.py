"""tilelang: tile-level kernels in Python, compiled through LLVM to native code.

    import tilelang as tl

    @tl.jit
    def add(x, y, out, B: tl.constexpr = 1024):
        for i in tl.grid(tl.cdiv(x.shape[0], B)):
            out[i * B:(i + 1) * B] = x[i * B:(i + 1) * B] + y[i * B:(i + 1) * B]
"""
from codegen.dtypes import bfloat16, bool_, float8_e4m3fn, float8_e5m2, float16, float32, int8, int32, int64
from tilelang import config
from tilelang.errors import KernelError
from tilelang.jit import JITFunction, jit
from tilelang.language import (abs, amax, arange, cast, cdiv, constexpr, dot, exp, exp2, full, grid, interleave, load,
                               log, max, maximum, min, minimum, range, rsqrt, sqrt, sum, where, zeros)
from tilelang.semantic import Tensor, Tile

__all__ = ["JITFunction", "KernelError", "Tensor", "Tile", "abs", "amax", "arange", "bfloat16", "bool_", "cast",
           "cdiv", "config", "constexpr", "dot", "exp", "exp2", "float16", "float32", "float8_e4m3fn",
           "float8_e5m2", "full", "grid", "int32", "int64", "int8", "interleave", "jit", "load", "log", "max",
           "maximum", "min", "minimum", "range", "rsqrt", "sqrt", "sum", "where", "zeros"]
