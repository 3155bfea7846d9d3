"""LLVM module -> verified, optimized (O3, new pass manager) object code -> loaded machine code."""
from __future__ import annotations

import threading
import llvmlite.binding as llvm
from llvmlite import ir

from codegen.target import Target, target_machine

_LOCK = threading.Lock()  # LLVM contexts are not safe to use from several threads at once


def optimize(module: ir.Module, target: Target) -> llvm.ModuleRef:
    tm = target_machine(target)
    mod = llvm.parse_assembly(str(module))
    mod.triple = target.triple
    mod.data_layout = str(tm.target_data)
    mod.verify()
    pto = llvm.create_pipeline_tuning_options(speed_level=3)
    pto.loop_vectorization = True
    pto.slp_vectorization = True
    pb = llvm.create_pass_builder(tm, pto)
    pb.getModulePassManager().run(mod, pb)
    mod.verify()
    return mod


def compile_object(module: ir.Module, target: Target) -> tuple[bytes, llvm.ModuleRef]:
    with _LOCK:
        mod = optimize(module, target)
        return target_machine(target).emit_object(mod), mod


def assembly(mod: llvm.ModuleRef, target: Target) -> str:
    with _LOCK:
        return target_machine(target).emit_assembly(mod)


_ENGINES: dict[Target, llvm.ExecutionEngine] = {}
_LOADED: dict[str, int] = {}


def load_object(obj: bytes, entry: str, target: Target) -> int:
    """Load object code into the process's JIT engine (one per target, alive for the process) and
    return the address of `entry`. Entry names are unique per specialization, so loading the same
    entry again returns the code already loaded."""
    with _LOCK:
        if entry in _LOADED:
            return _LOADED[entry]
        engine = _ENGINES.get(target)
        if engine is None:  # the engine owns its target machine: give it one of its own
            tm = llvm.Target.from_triple(target.triple).create_target_machine(
                cpu=target.cpu, features=target.features, opt=3, codemodel="jitdefault")
            engine = _ENGINES[target] = llvm.create_mcjit_compiler(llvm.parse_assembly(""), tm)
        engine.add_object_file(llvm.ObjectFileRef.from_data(obj))
        engine.finalize_object()
        address = engine.get_function_address(entry)
        if not address:
            raise RuntimeError(f"object code does not define {entry}")
        _LOADED[entry] = address
        return address
