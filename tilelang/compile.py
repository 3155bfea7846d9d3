"""A traced specialization -> loaded native code, through the in-memory and on-disk caches."""
from __future__ import annotations

import functools
import hashlib
import os
from dataclasses import dataclass

from codegen import engine
from codegen.cache import CacheDirError, DiskCache
from codegen.ir import CompileError, Kernel, format_kernel
from codegen.target import Target, host_target
from tilelang import config
from tilelang.errors import KernelError

COMPILER_VERSION = "0.1.0"


@functools.cache
def compiler_fingerprint() -> str:
    """A hash of the compiler's own sources: object code cached by an older compiler is never reused."""
    import codegen
    h = hashlib.sha256(COMPILER_VERSION.encode())
    for folder in (os.path.dirname(codegen.__file__), os.path.dirname(__file__)):
        for name in sorted(os.listdir(folder)):
            if name.endswith(".py"):
                with open(os.path.join(folder, name), "rb") as f:
                    h.update(name.encode() + b"\0" + f.read())
    return h.hexdigest()


@dataclass
class Compiled:
    address: int
    key: str
    llvm_ir: str = ""            # filled when compiled in this process (or by inspect())
    asm: str = ""


def current_target() -> Target:
    return host_target(portable=config.knobs.isa == "portable")


def codegen_options(target: Target) -> dict:
    """What the lowering may use: the dot path knob, the matrix units the OS lets us use, and the vector
    extensions some lowerings have a faster form for."""
    import csrc
    return {"dot": config.knobs.dot, "amx": target.amx and csrc.request_amx(), "avx512bf16": target.avx512bf16,
            "avx512vbmi": "+avx512vbmi" in target.features.split(","), "vector_bytes": target.vector_bytes}


def cache_key(kernel: Kernel, target: Target) -> str:
    h = hashlib.sha256()
    for part in (compiler_fingerprint(), format_kernel(kernel, canonical=True), repr(target.key()),
                 repr(sorted(codegen_options(target).items()))):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()


def _disk() -> DiskCache | None:
    if not config.knobs.disk_cache:
        return None
    try:
        return DiskCache(config.knobs.cache_dir)
    except CacheDirError as e:
        raise KernelError(str(e)) from None


def compile_kernel(kernel: Kernel, source=None, *, want_asm: bool = False) -> Compiled:
    target = current_target()
    key = cache_key(kernel, target)
    entry = f"tl_{kernel.name}_{key[:20]}"
    disk = _disk()
    obj = disk.get(key) if disk is not None and not want_asm else None
    llvm_ir = asm = ""
    if obj is None:
        from codegen.lower import lower_kernel  # only needed on a cache miss
        try:
            module = lower_kernel(kernel, entry, target.vlen, codegen_options(target))
        except CompileError as e:
            raise KernelError(e.msg, e.loc) from None
        obj, mod = engine.compile_object(module, target)
        llvm_ir = str(mod)
        if want_asm:
            asm = engine.assembly(mod, target)
        if disk is not None:
            disk.put(key, obj)
    return Compiled(engine.load_object(obj, entry, target), key, llvm_ir, asm)
