"""`@tl.jit`: specialize a kernel on its arguments, compile it once per specialization, launch it.

A specialization is keyed on each array's dtype, rank and unit-stride fact, each scalar's kind, and
the constexpr values: never on shape values, so a new sequence length reuses the compiled code.
"""
from __future__ import annotations

import inspect
import threading

import cffi
import numpy as np

from codegen import dtypes as dt
from codegen import interpret as interp
from codegen.ir import Kernel, Param
from tilelang import config
from tilelang.errors import KernelError
from tilelang.frontend import Source, inline_call, trace

_ffi = cffi.FFI()
_ENTRY = "void(*)(void **, int64_t *, double *, void *)"


def _is_constexpr(annotation) -> bool:
    from tilelang.language import constexpr
    return annotation is constexpr or isinstance(annotation, str) and annotation.split(".")[-1] == "constexpr"


def as_array(x, name: str) -> np.ndarray:
    """NumPy arrays as they are; DLPack / buffer-protocol objects (PyTorch CPU tensors) zero-copy."""
    if isinstance(x, np.ndarray):
        return x
    mod = type(x).__module__
    if mod.startswith("torch"):
        import torch  # only reached when the caller passed a torch tensor
        if x.device.type != "cpu":
            raise KernelError(f"argument `{name}` is a {x.device.type} tensor; only CPU memory is supported")
        if x.dtype == torch.bfloat16:
            return x.view(torch.int16).numpy().view(dt.bfloat16.np)
        return x.numpy() if not x.requires_grad else x.detach().numpy()
    if hasattr(x, "__dlpack__"):
        return np.from_dlpack(x)
    try:
        return np.asarray(memoryview(x))
    except TypeError:
        raise KernelError(f"argument `{name}` is a {type(x).__name__}: pass an array (NumPy, DLPack or buffer "
                          "protocol) or a number") from None


class Specialization:
    """One compiled (or interpreted) instance of a kernel, with its argument packer."""

    def __init__(self, kernel: Kernel, compiled):
        self.kernel, self.compiled = kernel, compiled
        self.array_params = [i for i, p in enumerate(kernel.params) if p.kind == "array"]
        self.written = compiled.written if compiled is not None else frozenset()
        self.fn = _ffi.cast(_ENTRY, compiled.address) if compiled is not None else None

    def launch(self, values: list, pfor: int) -> None:
        ptrs, ints, floats = [], [], []
        for i, (p, v) in enumerate(zip(self.kernel.params, values)):
            if p.kind == "array":
                if i in self.written and (not v.flags.writeable or 0 in v.strides and v.size > 1):
                    raise KernelError(f"`{p.name}` is written by the kernel but is "
                                      f"{'read-only' if not v.flags.writeable else 'a broadcast (zero-stride) view'}")
                ptrs.append(_ffi.from_buffer(v) if v.flags.c_contiguous and v.size else
                            _ffi.cast("void *", v.__array_interface__["data"][0]))
                ints.extend(v.shape)
                s = v.itemsize
                ints.extend(st // s for st in v.strides)
            elif p.dtype.is_float:
                floats.append(float(v))
            else:
                ints.append(int(v))
        self.fn(_ffi.new("void *[]", ptrs or [_ffi.NULL]), _ffi.new("int64_t[]", ints or [0]),
                _ffi.new("double[]", floats or [0.0]), _ffi.cast("void *", pfor))


class JITFunction:
    """A kernel: call it with arrays and scalars (and constexprs by keyword) to run it natively."""

    def __init__(self, fn, interpret: bool | None = None):
        self.fn = fn
        self.__name__ = fn.__name__
        self.__doc__ = fn.__doc__
        self.interpret = interpret
        sig = inspect.signature(fn)
        self.signature = sig
        self.names = list(sig.parameters)
        self.constexprs = {n for n, p in sig.parameters.items() if _is_constexpr(p.annotation)}
        self._source: Source | None = None
        self._cache: dict = {}
        self._lock = threading.Lock()

    @property
    def source(self) -> Source:
        if self._source is None:
            self._source = Source(self.fn)
        return self._source

    def __tl_inline__(self, b, args, kwargs):
        return inline_call(self.source, b, args, kwargs)

    def __repr__(self) -> str:
        return f"<tl.jit kernel {self.fn.__qualname__}>"

    # ---- binding ----------------------------------------------------------------------------
    def bind(self, args, kwargs):
        """-> (cache key, runtime params, runtime values, constexpr values)."""
        try:
            bound = self.signature.bind(*args, **kwargs)
        except TypeError as e:
            raise KernelError(f"{self.__name__}(): {e}") from None
        bound.apply_defaults()
        params, values, consts, key = [], [], {}, []
        for name, v in bound.arguments.items():
            if name in self.constexprs:
                if isinstance(v, (np.ndarray,)) or hasattr(v, "__dlpack__"):
                    raise KernelError(f"constexpr `{name}` must be a compile-time value, got an array")
                consts[name] = v
                key.append((name, type(v).__name__, v))
                continue
            if isinstance(v, (bool, np.bool_)):
                p = Param(name, "scalar", dt.bool_)
            elif isinstance(v, (int, np.integer)):
                p = Param(name, "scalar", dt.int64)
            elif isinstance(v, (float, np.floating)):
                p = Param(name, "scalar", dt.float32)
            else:
                v = as_array(v, name)
                d = dt.from_numpy(v.dtype)
                if d is None or d == dt.int64:
                    raise KernelError(f"argument `{name}` has dtype {v.dtype}, which kernels do not support; "
                                      "use float32, float16, bfloat16, float8_e4m3fn, float8_e5m2, int8, int32 or bool")
                if v.ndim == 0:
                    raise KernelError(f"argument `{name}` is a 0-d array; pass a Python number for scalars")
                if any(s % v.itemsize for s in v.strides):
                    raise KernelError(f"argument `{name}` has strides {v.strides} that are not multiples of its "
                                      f"itemsize {v.itemsize}")
                p = Param(name, "array", d, v.ndim, v.strides[-1] == v.itemsize or v.shape[-1] <= 1)
            params.append(p)
            values.append(v)
            key.append(p)
        return tuple(key), tuple(params), values, consts

    # ---- calling ----------------------------------------------------------------------------
    def __call__(self, *args, **kwargs):
        key, params, values, consts = self.bind(args, kwargs)
        spec = self._cache.get(key)
        if spec is None:
            spec = self._specialize(key, params, consts)
        if spec.fn is None:
            interp.run(spec.kernel, [_host(v) for v in values])
        else:
            from csrc import parallel_for_address
            spec.launch(values, parallel_for_address())

    def _interpreting(self) -> bool:
        return self.interpret if self.interpret is not None else config.knobs.interpret

    def _specialize(self, key, params, consts) -> Specialization:
        with self._lock:
            spec = self._cache.get(key)
            if spec is None:
                kernel = self.trace(params, consts)
                compiled = None if self._interpreting() else self._compile(kernel, consts)
                spec = self._cache[key] = Specialization(kernel, compiled)
        return spec

    def trace(self, params, consts) -> Kernel:
        from codegen.pipeline import run_pipeline
        kernel = trace(self.source, params, consts)
        return run_pipeline(kernel, dump=config.knobs.dump_ir, verify_each=config.knobs.debug)

    def _compile(self, kernel: Kernel, consts):
        from tilelang.compile import compile_kernel
        return compile_kernel(kernel)

    def inspect(self, *args, **kwargs) -> dict:
        """Tile IR, LLVM IR and assembly of the specialization these arguments select."""
        from codegen.ir import format_kernel
        key, params, values, consts = self.bind(args, kwargs)
        kernel = self.trace(params, consts)
        from tilelang.compile import compile_kernel
        compiled = compile_kernel(kernel, want_asm=True)
        return {"tile_ir": format_kernel(kernel), "llvm_ir": compiled.llvm_ir, "asm": compiled.asm}


def _host(v):
    return v if not isinstance(v, np.generic) else v.item()


def jit(fn=None, *, interpret: bool | None = None):
    """Compile a kernel function. `interpret=True` (or TILELANG_INTERPRET=1) runs it through the
    NumPy reference executor instead of native code."""
    if fn is None:
        return lambda f: JITFunction(f, interpret)
    return JITFunction(fn, interpret)
