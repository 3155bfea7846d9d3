"""LLVM module -> verified, optimized (O3, new pass manager) object code -> loaded machine code."""
from __future__ import annotations

import threading
from dataclasses import dataclass

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


@dataclass
class Loaded:
    """Machine code in this process; keep it alive as long as its address is used."""
    engine: llvm.ExecutionEngine
    address: int


def load_object(obj: bytes, entry: str, target: Target) -> Loaded:
    with _LOCK:
        engine = llvm.create_mcjit_compiler(llvm.parse_assembly(""), target_machine(target))
        engine.add_object_file(llvm.ObjectFileRef.from_data(obj))
        engine.finalize_object()
        address = engine.get_function_address(entry)
    if not address:
        raise RuntimeError(f"object code does not define {entry}")
    return Loaded(engine, address)
