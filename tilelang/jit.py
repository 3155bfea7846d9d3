"""`@tl.jit`: specialize a kernel on its arguments, compile it once per specialization, launch it.

A specialization is keyed on each array's dtype, rank and unit-stride fact, each scalar's kind, and
the constexpr values: never on shape values, so a new sequence length reuses the compiled code.
"""
from __future__ import annotations

import inspect
import threading

import _cffi_backend
import cffi
import numpy as np

from codegen import dtypes as dt
from codegen import interpret as interp
from codegen.ir import Kernel, Op, Param, walk
from codegen.pipeline import run_pipeline
from tilelang import config
from tilelang.compile import compile_kernel
from tilelang.errors import KernelError
from tilelang.frontend import Source, inline_call, trace

_ffi = cffi.FFI()
_ENTRY = _ffi.typeof("void(*)(void **, int64_t *, double *, void *)")
# cffi's backend entry points, bypassing its per-call type parsing on the launch path
_newp, _from_buffer = _cffi_backend.newp, _cffi_backend.from_buffer
_PTRS, _INTS, _FLOATS, _CHARS, _VOIDP = (_ffi.typeof(t) for t in ("void *[]", "int64_t[]", "double[]", "char[]",
                                                                  "void *"))


def _is_constexpr(annotation) -> bool:
    from tilelang.language import constexpr
    return annotation is constexpr or isinstance(annotation, str) and annotation.split(".")[-1] == "constexpr"


def as_array(x, name: str) -> np.ndarray:
    """NumPy arrays as they are, NumPy scalars (ml_dtypes' too) as 0-d arrays; DLPack / buffer-protocol objects
    (PyTorch CPU tensors) zero-copy."""
    if isinstance(x, np.ndarray):
        return x
    if isinstance(x, np.generic):  # (an ml_dtypes scalar has no buffer protocol)
        return np.asarray(x)
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
        self.written = sorted({n.arg.param for n in walk(kernel.body) if n.op == Op.STORE})
        self.fn = _ffi.cast(_ENTRY, compiled.address) if compiled is not None else None
        if compiled is not None and not _PFOR:
            _PFOR.append(_pfor())
        self.kinds = tuple("a" if p.kind == "array" else "f" if p.dtype.is_float else "i" for p in kernel.params)

    def check(self, values: list) -> None:
        """Arrays the kernel writes must be writable and must not alias themselves."""
        for i in self.written:
            v = values[i]
            if not v.flags.writeable:
                raise KernelError(f"`{self.kernel.params[i].name}` is written by the kernel but is read-only")
            if v.size and any(st == 0 and n > 1 for st, n in zip(v.strides, v.shape)):
                raise KernelError(f"`{self.kernel.params[i].name}` is written by the kernel but is a broadcast "
                                  "(zero-stride) view: its elements alias")

    def launch(self, values: list) -> None:
        """Pack pointers, shapes and byte strides (the kernel turns them into element strides)."""
        self.check(values)
        ptrs, ints, floats = [], [], []
        for kind, v in zip(self.kinds, values):
            if kind == "a":
                if v.flags.c_contiguous and v.size:
                    ptrs.append(_from_buffer(_CHARS, v, False))
                else:
                    if any(st % v.itemsize for st in v.strides):
                        raise KernelError(f"an array argument has strides {v.strides} that are not multiples of "
                                          f"its itemsize {v.itemsize}")
                    ptrs.append(_ffi.cast(_VOIDP, v.__array_interface__["data"][0]))
                ints += v.shape
                ints += v.strides
            elif kind == "f":
                floats.append(float(v))
            else:
                ints.append(int(v))
        self.fn(_newp(_PTRS, ptrs or 1), _newp(_INTS, ints or 1), _newp(_FLOATS, floats or 1), _PFOR[0])


def _pfor():
    from csrc import parallel_for_address
    return _ffi.cast(_VOIDP, parallel_for_address())


_PFOR: list = []
# The accelerator model (a layer above) registers its `estimate` here when imported: JITFunction.estimate.
ESTIMATOR: list = [None]


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
        self.is_const = [n in self.constexprs for n in self.names]
        self.defaults = {n: p.default for n, p in sig.parameters.items() if p.default is not inspect.Parameter.empty}
        if any(p.kind not in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) for p in sig.parameters.values()):
            raise KernelError(f"kernel {fn.__name__}: *args/**kwargs and positional-only parameters are not supported")
        self._source: Source | None = None
        self._last: Specialization | None = None
        self._fast = None  # the generated launcher (see _make_launcher)
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
    def _arguments(self, args, kwargs) -> dict:
        if len(args) > len(self.names):
            raise KernelError(f"{self.__name__}() takes {len(self.names)} arguments but {len(args)} were given")
        bound = dict(zip(self.names, args))
        for k, v in kwargs.items():
            if k not in self.defaults and k not in self.names:
                raise KernelError(f"{self.__name__}() got an unexpected keyword argument {k!r}")
            if k in bound:
                raise KernelError(f"{self.__name__}() got multiple values for argument {k!r}")
            bound[k] = v
        if len(bound) < len(self.names):
            for k in self.names:
                if k not in bound:
                    if k not in self.defaults:
                        raise KernelError(f"{self.__name__}() is missing a required argument: {k!r}")
                    bound[k] = self.defaults[k]
        return bound

    def bind(self, args, kwargs):
        """-> (specialization key, runtime values, constexpr values). The key holds, per runtime
        argument, its kind and dtype, an array's rank and whether its last dim has unit stride."""
        if kwargs or len(args) != len(self.names):
            bound = self._arguments(args, kwargs)
            args = [bound[n] for n in self.names]
        key, values, consts = [self._mode()], [], {}
        for name, is_const, v in zip(self.names, self.is_const, args):
            if is_const:
                if isinstance(v, np.ndarray) or hasattr(v, "__dlpack__"):
                    raise KernelError(f"constexpr `{name}` must be a compile-time value, got an array")
                consts[name] = v
                key.append((type(v), v))
                continue
            if type(v) is not np.ndarray:
                if isinstance(v, (bool, np.bool_)):
                    key.append(dt.bool_)
                elif isinstance(v, (int, np.integer)):
                    key.append(dt.int64)
                elif isinstance(v, (float, np.floating)):
                    key.append(dt.float32)
                else:
                    v = as_array(v, name)
            if isinstance(v, np.ndarray):
                key.append((v.dtype, v.ndim, v.ndim and (v.strides[-1] == v.itemsize or v.shape[-1] <= 1)))
            values.append(v)
        return tuple(key), values, consts

    def params(self, key) -> tuple[Param, ...]:
        """The runtime parameters a specialization key describes (arrays checked here, once)."""
        out = []
        for name, entry in zip((n for n, c in zip(self.names, self.is_const) if not c),
                               (e for e, c in zip(key[1:], self.is_const) if not c)):
            if isinstance(entry, dt.DType):
                out.append(Param(name, "scalar", entry))
            else:
                kind = entry[0]
                d = dt.from_numpy(kind)
                if d is None or d == dt.int64:
                    raise KernelError(f"argument `{name}` has dtype {kind}, which kernels do not support; use "
                                      "float32, float16, bfloat16, float8_e4m3fn, float8_e5m2, int8, int32 or bool")
                if entry[1] == 0:
                    raise KernelError(f"argument `{name}` is a 0-d array; pass a Python number for scalars")
                out.append(Param(name, "array", d, entry[1], bool(entry[2])))
        return tuple(out)

    # ---- calling ----------------------------------------------------------------------------
    def __call__(self, *args, **kwargs):
        if self._fast is not None:
            try:
                return self._fast(*args, **kwargs)
            except TypeError as e:
                if e.__traceback__.tb_next is None:  # the arguments did not bind to the signature
                    raise KernelError(f"{self.__name__}(): {str(e).replace('launch()', '').strip()}") from None
                raise
        # until a native specialization exists: bind, specialize, run; then a generated launcher takes over
        if kwargs or len(args) != len(self.names):
            bound = self._arguments(args, kwargs)
            args = [bound[n] for n in self.names]
        self._call_slow(args)
        if self._last is not None and self._last.fn is not None:
            self._fast = _make_launcher(self, self._last)

    def _call_slow(self, args):
        key, values, consts = self.bind(args, {})
        spec = self._cache.get(key)
        if spec is None:
            spec = self._specialize(key, consts)
        self._last = spec
        if spec.fn is None:
            spec.check(values)
            interp.run(spec.kernel, [_host(v) for v in values])
        else:
            spec.launch(values)

    def _mode(self) -> tuple:
        """What besides the arguments selects the code: interpreter or native, and the codegen knobs."""
        k = config.knobs
        return (self.interpret if self.interpret is not None else k.interpret), k.isa, k.dot

    def _specialize(self, key, consts) -> Specialization:
        with self._lock:
            spec = self._cache.get(key)
            if spec is None:
                kernel = self.trace(self.params(key), consts)
                interpreting = key[0][0]  # the mode in the key (see _mode)
                compiled = None if interpreting else compile_kernel(kernel)
                spec = self._cache[key] = Specialization(kernel, compiled)
        return spec

    def trace(self, params, consts) -> Kernel:
        kernel = trace(self.source, params, consts)
        return run_pipeline(kernel, dump=config.knobs.dump_ir, verify_each=config.knobs.debug)

    def estimate(self, *args, target="host", **kwargs):
        """Price this call on an accelerator model without running it (see `autotune.estimate`)."""
        if ESTIMATOR[0] is None:
            raise KernelError("pricing lives in the autotune package: `import autotune` first")
        return ESTIMATOR[0](self, *args, target=target, **kwargs)

    def inspect(self, *args, **kwargs) -> dict:
        """Tile IR, LLVM IR and assembly of the specialization these arguments select."""
        from codegen.ir import format_kernel
        key, values, consts = self.bind(args, kwargs)
        kernel = self.trace(self.params(key), consts)
        compiled = compile_kernel(kernel, want_asm=True)
        return {"tile_ir": format_kernel(kernel), "llvm_ir": compiled.llvm_ir, "asm": compiled.asm}


def _make_launcher(jf: JITFunction, spec: Specialization):
    """A Python function with the kernel's own signature that packs arguments shaped like `spec`'s
    (contiguous arrays, int and float scalars) without any loop, and falls back to the general path
    for anything else. Like Triton's generated binder: the launch costs a few microseconds."""
    runtime = [n for n, c in zip(jf.names, jf.is_const) if not c]
    kinds = dict(zip(runtime, spec.kinds))
    sig, conds, key, ptrs, ints, floats = [], [], ["_mode()"], [], [], []
    for n, c in zip(jf.names, jf.is_const):
        sig.append(f"{n}=_d[{n!r}]" if n in jf.defaults else n)
        if c:
            key.append(f"(type({n}), {n})")
        elif kinds[n] == "a":
            conds.append(f"type({n}) is _ndarray and {n}.flags.c_contiguous and {n}.size")
            key.append(f"({n}.dtype, {n}.ndim, True)")
            ptrs.append(f"_fb(_C, {n}, False)")
            ints.append(f"*{n}.shape, *{n}.strides")
        elif kinds[n] == "f":
            conds.append(f"type({n}) is float")
            key.append("_F32")
            floats.append(n)
        else:
            conds.append(f"type({n}) is int")
            key.append("_I64")
            ints.append(n)
    names = ", ".join(jf.names)
    src = f"""
def launch({", ".join(sig)}):
    if {" and ".join(conds) or "True"}:
        spec = _cache.get(({", ".join(key)},))
        if spec is not None and spec.fn is not None:
            vals = ({", ".join(runtime)},)
            for i in spec.written:
                if not vals[i].flags.writeable:
                    break
            else:
                spec.fn(_newp(_P, [{", ".join(ptrs)}] or 1), _newp(_I, [{", ".join(ints)}] or 1),
                        _newp(_FL, [{", ".join(floats)}] or 1), _pfor)
                return
    return _slow([{names}])
"""
    env = {"_d": jf.defaults, "_ndarray": np.ndarray, "_fb": _from_buffer, "_C": _CHARS, "_newp": _newp,
           "_P": _PTRS, "_I": _INTS, "_FL": _FLOATS, "_pfor": _PFOR[0], "_cache": jf._cache, "_mode": jf._mode,
           "_F32": dt.float32, "_I64": dt.int64, "_slow": jf._call_slow}
    exec(compile(src, f"<tilelang launcher of {jf.__name__}>", "exec"), env)
    return env["launch"]


def _host(v):
    return v if not isinstance(v, np.generic) else v.item()


def jit(fn=None, *, interpret: bool | None = None):
    """Compile a kernel function. `interpret=True` (or TILELANG_INTERPRET=1) runs it through the
    NumPy reference executor instead of native code."""
    if fn is None:
        return lambda f: JITFunction(f, interpret)
    return JITFunction(fn, interpret)
