"""The machine code is generated for: host CPU name and features from LLVM, or a portable baseline."""
from __future__ import annotations

import functools
from dataclasses import dataclass

import llvmlite
import llvmlite.binding as llvm


@functools.cache
def _init() -> None:
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()


@dataclass(frozen=True)
class Target:
    triple: str
    cpu: str
    features: str
    vector_bytes: int  # widest vector register the code may use
    amx: bool          # the CPU reports AMX-BF16 (the OS grant is checked by the runtime)
    avx512bf16: bool

    @property
    def vlen(self) -> int:
        """float32 lanes per vector."""
        return self.vector_bytes // 4

    def key(self) -> tuple:
        return (self.triple, self.cpu, self.features, llvmlite.__version__, llvm.llvm_version_info)


@functools.cache
def host_target(portable: bool = False) -> Target:
    """The host CPU, or with `portable` a baseline of its architecture (SSE2 on x86-64, NEON on AArch64)."""
    _init()
    triple = llvm.get_process_triple()
    if portable:
        cpu = "x86-64" if triple.startswith("x86_64") else "generic"
        return Target(triple, cpu, "", 16, False, False)
    cpu = llvm.get_host_cpu_name()
    feats = llvm.get_host_cpu_features()
    on = {k for k, v in feats.items() if v}
    vbytes = 64 if "avx512f" in on else 32 if "avx2" in on or "avx" in on else 16
    return Target(triple, cpu, feats.flatten(), vbytes, "amx-bf16" in on and "amx-tile" in on, "avx512bf16" in on)


@functools.cache
def target_machine(t: Target) -> llvm.TargetMachine:
    _init()
    return llvm.Target.from_triple(t.triple).create_target_machine(cpu=t.cpu, features=t.features, opt=3,
                                                                   codemodel="jitdefault")
