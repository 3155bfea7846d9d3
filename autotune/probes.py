"""Hardware-limit probes of the host, JIT-compiled with llvmlite: the figures that calibrate "host".

    fma_peak(threads=1)        GFLOP/s of independent vector FMAs on register-resident accumulators
    fma_microkernel(threads=1) GFLOP/s of tl.dot's float32 micro-kernel on packed panels in the caches
    amx_bf16_peak(threads=1)   GFLOP/s of `tdpbf16ps` on register-resident AMX tiles, None without AMX
    amx_bf16_loop(threads=1)   GFLOP/s of the matmul kernel's 2 x 2 AMX tile loop fed from the caches
    copy_bandwidth(threads)    GB/s (read + write bytes) of a large copy (arrays >> the caches)
    l2_bandwidth(threads=1)    GB/s of reads over a 512 KiB buffer (L2-resident)
    l1_bandwidth(threads=1)    GB/s of reads over a 16 KiB buffer (L1-resident)
    measure_all()              the keys `autotune.calibrate.host_accelerator(probes=...)` takes (cached)

Each probe body is `void body(void *ctx, int64_t begin, int64_t end)`, the C runtime's loop-body
signature: one thread calls it directly, several run it through the runtime's `tl_parallel_for` (every
thread a share of the chunks), so multi-core figures are real. Every probe auto-sizes its work to about
`PROBE_SECONDS` per timed run and reports the best of a few runs (timing noise only ever slows a run);
each takes well under a second. A run's time is the process CPU time per thread when that is below the
wall time (`CPU_TIME`): the development machine is shared, and the time slices other processes take
from the probe's threads are not the hardware's limit (measured there under load: FMA 115-150 GFLOP/s
by wall clock, a stable ~215 by CPU time).
"""
from __future__ import annotations

import functools
import time

import numpy as np
from llvmlite import ir

import csrc
from codegen import engine
from codegen.dot import FMA_BLOCKS, FMA_UNROLL
from codegen.dot_amx import tile_config, tile_load, tile_store
from codegen.dot_kernel import fma_scheme, micro_kernel
from codegen.llvm_util import intrinsic
from codegen.target import host_target

F32 = ir.FloatType()
I8, I64 = ir.IntType(8), ir.IntType(64)
PTR = ir.PointerType()
VOID = ir.VoidType()
BODY_T = ir.FunctionType(VOID, [PTR, I64, I64])

PROBE_SECONDS = 0.04  # target duration of one timed run
RUNS = 3  # timed runs per probe (the best is reported)
FMA_ACCUMULATORS = {64: 16, 32: 10, 16: 10}  # by vector bytes: 32 zmm registers / 16 ymm or xmm
READ_ACCUMULATORS = 16  # independent add chains of the read probes (>= latency x adds per cycle)
COPY_BYTES = 128 << 20  # each of the copy probe's two arrays: on the dev machine (480 MiB L3 shared by
# the whole socket) the copy rate falls to its DRAM plateau from 32 MiB arrays on (measured 8 MiB: 28 GB/s,
# 32-512 MiB: 12.5-15 GB/s on one core), so 128 MiB is well inside the plateau and keeps the probe short
L2_BYTES = 512 << 10
L1_BYTES = 16 << 10
AMX_TILE_FLOPS = 2 * 16 * 16 * 32  # one tdpbf16ps: 16x32 bf16 @ 32x16 bf16 -> 16x16 f32

_KEEP: list = []  # loaded machine code lives as long as the process


# ---------------------------------------------------------------- IR helpers

def _i64(n: int) -> ir.Constant:
    return ir.Constant(I64, n)


def _do_while(b: ir.IRBuilder, start, stop, carried: list, body) -> list:
    """`i = start; do { carried = body(b, i, carried); i += 1 } while (i < stop)` (stop > start)."""
    pre = b.block
    head = b.append_basic_block("loop")
    b.branch(head)
    b.position_at_end(head)
    i = b.phi(I64)
    phis = [b.phi(v.type) for v in carried]
    i.add_incoming(start, pre)
    for p, v in zip(phis, carried):
        p.add_incoming(v, pre)
    new = body(b, i, phis)
    nxt = b.add(i, _i64(1))
    end = b.block
    i.add_incoming(nxt, end)
    for p, v in zip(phis, new):
        p.add_incoming(v, end)
    done = b.append_basic_block("done")
    b.cbranch(b.icmp_signed("<", nxt, stop), head, done)
    b.position_at_end(done)
    return new


def _field(b: ir.IRBuilder, ctx, offset: int, typ: ir.Type, align: int = 8):
    return b.load(b.gep(ctx, [_i64(offset)], source_etype=I8), typ=typ, align=align)


def _body(name: str, emit) -> ir.Module:
    """A module with `void name(ptr ctx, i64 begin, i64 end)` running `emit(b, ctx)` once per chunk."""
    m = ir.Module(name)
    t = host_target()
    m.triple = t.triple
    fn = ir.Function(m, BODY_T, name=name)
    ctx, begin, end = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    work, out = fn.append_basic_block("work"), fn.append_basic_block("out")
    b.cbranch(b.icmp_signed("<", begin, end), work, out)
    b.position_at_end(work)
    _do_while(b, begin, end, [], lambda b, i, c: (emit(b, ctx, i), [])[1])
    b.branch(out)
    b.position_at_end(out)
    b.ret_void()
    return m


def _jit(module: ir.Module, name: str) -> int:
    t = host_target()
    obj, _ = engine.compile_object(module, t)
    loaded = engine.load_object(obj, name, t)
    _KEEP.append(loaded)
    return loaded if isinstance(loaded, int) else loaded.address


# ---------------------------------------------------------------- running a body

class _Ctx:
    """A 64-byte-aligned context block the JIT body reads its parameters from."""

    def __init__(self, nbytes: int = 8192):
        self.buf = csrc.aligned_empty(nbytes, np.uint8, 64)
        self.buf[:] = 0
        self.address = int(self.buf.__array_interface__["data"][0])

    def set_i64(self, offset: int, value: int) -> None:
        self.buf[offset:offset + 8].view(np.int64)[0] = value

    def view(self, offset: int, dtype, count: int) -> np.ndarray:
        return self.buf[offset:offset + count * np.dtype(dtype).itemsize].view(dtype)


def _threads(threads: int | None) -> int:
    n = csrc.num_threads() if threads is None else int(threads)
    if n < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    return n


def _seconds(t0: float, c0: float, threads: int) -> float:
    """Wall seconds since t0, or the process CPU seconds per thread since c0 when smaller: on a shared
    machine the time slices other processes take from our threads are not charged to the probe."""
    wall = time.perf_counter() - t0
    cpu = (time.process_time() - c0) / threads
    return max(min(wall, cpu) if CPU_TIME else wall, 1e-9)


CPU_TIME = True  # see _seconds


def _run(address: int, ctx: _Ctx, chunks: int, threads: int) -> float:
    """Seconds to run chunks [0, chunks) of the body on `threads` threads (the runtime's pool)."""
    fn = csrc.ffi.cast("tl_body_fn", address)
    arg = csrc.ffi.cast("void *", ctx.address)
    if threads == 1:
        t0, c0 = time.perf_counter(), time.process_time()
        fn(arg, 0, chunks)
        return _seconds(t0, c0, 1)
    before = csrc.num_threads()
    if before != threads:
        csrc.set_num_threads(threads)
    try:
        t0, c0 = time.perf_counter(), time.process_time()
        status = csrc.lib.tl_parallel_for(fn, arg, chunks, 1)
        dt = _seconds(t0, c0, threads)
    finally:
        if before != threads:
            csrc.set_num_threads(before)
    if status != csrc.lib.TL_OK:
        raise RuntimeError(csrc.last_error())
    return dt


def _best_rate(address: int, ctx: _Ctx, threads: int, work_per_unit: float, set_units,
               units: int = 1, chunks_per_thread: int = 1) -> float:
    """Best (work / second) over RUNS timed runs, `set_units(n)` sizing one chunk's repetitions so a
    run lasts about PROBE_SECONDS (a short calibration run first)."""
    chunks = threads * chunks_per_thread
    set_units(units)
    _run(address, ctx, chunks, threads)  # warm-up: page faults, thread wake-up, frequency ramp
    for _ in range(8):
        dt = _run(address, ctx, chunks, threads)
        if dt >= PROBE_SECONDS / 4:
            break
        units = max(units * 2, int(units * PROBE_SECONDS / max(dt, 1e-6) / 2))
        set_units(units)
    units = max(1, int(units * PROBE_SECONDS / max(dt, 1e-9)))
    set_units(units)
    best = min(_run(address, ctx, chunks, threads) for _ in range(RUNS))
    return work_per_unit * units * chunks / best


# ---------------------------------------------------------------- FMA peak

@functools.cache
def _fma_body() -> tuple[int, int]:
    """(address, FLOPs per iteration) of the FMA probe: ctx[0] = iterations, x at 64, y at 128."""
    V = host_target().vlen
    n = FMA_ACCUMULATORS.get(host_target().vector_bytes, 10)
    vt = ir.VectorType(F32, V)

    def emit(b, ctx, _chunk):
        iters = _field(b, ctx, 0, I64)
        x = _field(b, ctx, 64, vt, 4)
        y = _field(b, ctx, 128, vt, 4)
        init = [b.fadd(x, ir.Constant(vt, [float(i)] * V)) for i in range(n)]
        accs = _do_while(b, _i64(0), iters, init,
                         lambda b, i, accs: [intrinsic(b, f"llvm.fma.v{V}f32", vt, [a, y, x]) for a in accs])
        total = accs[0]
        for a in accs[1:]:
            total = b.fadd(total, a)
        b.store(total, b.gep(ctx, [_i64(192)], source_etype=I8), align=4)

    return _jit(_body("tl_autotune_fma_probe", emit), "tl_autotune_fma_probe"), n * V * 2


def fma_peak(threads: int = 1) -> float:
    """GFLOP/s of float32 vector FMAs at the host's vector width on `threads` threads together."""
    threads = _threads(threads)
    address, flops = _fma_body()
    V = host_target().vlen
    ctx = _Ctx()
    ctx.view(64, np.float32, V)[:] = 1e-3
    ctx.view(128, np.float32, V)[:] = 0.999
    return _best_rate(address, ctx, threads, flops, lambda u: ctx.set_i64(0, u), units=1 << 14) / 1e9


@functools.cache
def _microkernel_body(steps: int) -> tuple[int, int]:
    """(address, FLOPs per unit) of the micro-kernel probe: ctx[0] = units, ctx[8] = base; chunk c's buffer at
    base + c * MICRO_BYTES holds its B panel (steps x NR), then at 512 KiB its A rows (MR x steps), at 768 KiB C
    (MR x NR)."""
    V = host_target().vlen
    MR, NV = FMA_BLOCKS.get(V, (4, 2))
    name = f"tl_autotune_microkernel_{steps}"

    def emit(b, ctx, chunk):
        base = b.gep(_field(b, ctx, 8, PTR), [b.mul(chunk, _i64(MICRO_BYTES))], source_etype=I8)
        bp = base
        a = b.gep(base, [_i64(MICRO_BYTES // 2)], source_etype=I8)
        c = b.gep(base, [_i64(MICRO_BYTES * 3 // 4)], source_etype=I8)

        def unit(b, _i, _c):
            micro_kernel(b, fma_scheme(V, F32), steps=steps, unroll=FMA_UNROLL, mr=MR, widths=[V] * NV, a_base=a,
                         a_rs=steps, a_ks=1, b_base=bp, b_step=NV * V, c_base=c, c_rs=NV * V, init_zero=False)
            return []
        _do_while(b, _i64(0), _field(b, ctx, 0, I64), [], unit)

    return _jit(_body(name, emit), name), 2 * MR * NV * V * steps


MICRO_BYTES = 1 << 20  # per chunk of the micro-kernel probe (A rows, B panel, C; 1 MiB apart)


def fma_microkernel(threads: int = 1, steps: int = 256) -> float:
    """GFLOP/s of tl.dot's float32 FMA micro-kernel (codegen.dot_kernel, the host's MR x NR register block)
    repeated on one packed A block and B panel `steps` deep (256: the matmul's k block, the panel 64 KiB, from
    L2 on AVX-512; 64: 16 KiB, in L1): C loaded before and stored after each run of the k loop, as in a dot.
    What the float32 rows can reach at best: the instruction stream alone, no packing, no memory."""
    threads = _threads(threads)
    if not 1 <= steps <= 1024:
        raise ValueError(f"steps must be in 1..1024, got {steps}")
    address, flops = _microkernel_body(steps)
    data = csrc.aligned_empty(threads * MICRO_BYTES // 4, np.float32, 4096)
    data[:] = 1e-6
    ctx = _Ctx()
    ctx.set_i64(8, int(data.__array_interface__["data"][0]))
    return _best_rate(address, ctx, threads, flops, lambda u: ctx.set_i64(0, u), units=64) / 1e9


# ---------------------------------------------------------------- AMX peak

def amx_available() -> bool:
    """The CPU reports AMX-BF16 and the OS granted this process AMX tile data."""
    return bool(host_target().amx) and csrc.request_amx()


@functools.cache
def _amx_body() -> int:
    """Address of the AMX probe: ctx[0] = iterations; A tiles at 1024/2048, B at 3072/4096, out 5120.

    Tile config (64 bytes): palette 1 at byte 0, bytes per row (uint16) at 16 + 2t, rows at 48 + t;
    every tile 16 rows x 64 bytes: C 16x16 f32 (tiles 0-3), A 16x32 bf16 (4, 5), B 16x32 bf16 in
    VNNI pairs (6, 7); four independent accumulators cover the instruction's latency."""
    def emit(b, ctx, _chunk):
        _amx_start(b)
        for t, off in ((4, 1024), (5, 2048), (6, 3072), (7, 4096)):
            _tile(b, tile_load, t, ctx, _i64(off), 64)
        _do_while(b, _i64(0), _field(b, ctx, 0, I64), [], lambda b, i, c: (_products(b), [])[1])
        for t in range(4):
            _tile(b, tile_store, t, ctx, _i64(5120 + 1024 * t), 64)
        intrinsic(b, "llvm.x86.tilerelease", VOID, [])

    return _jit(_body("tl_autotune_amx_probe", emit), "tl_autotune_amx_probe")


def _amx_start(b: ir.IRBuilder) -> None:
    """Configure every tile as 16 rows x 64 bytes (the matmul kernel's palette) and zero accumulators 0-3."""
    intrinsic(b, "llvm.x86.ldtilecfg", VOID, [tile_config(b.module)])
    for t in range(4):
        intrinsic(b, "llvm.x86.tilezero", VOID, [ir.Constant(I8, t)])


def _tile(b: ir.IRBuilder, op, t: int, base, offset, stride: int) -> None:
    """`op` (dot_amx.tile_load or tile_store) of tile t at base + offset bytes, rows `stride` bytes apart."""
    op(b, t, b.gep(base, [offset], source_etype=I8), _i64(stride))


def _products(b: ir.IRBuilder, loads=None) -> None:
    """The four products of a 2 x 2 block (accumulators 0-3, A tiles 4-5, B tiles 6-7); `loads(t)` loads
    tile t right before its first use, in the order of the matmul kernel's loop (codegen.dot_amx)."""
    ld = loads or (lambda t: None)
    ld(4), ld(6)
    for acc, (x, y) in enumerate(((4, 6), (4, 7), (5, 6), (5, 7))):
        if acc == 1:
            ld(7)
        if acc == 2:
            ld(5)
        intrinsic(b, "llvm.x86.tdpbf16ps", VOID, [ir.Constant(I8, acc), ir.Constant(I8, x), ir.Constant(I8, y)])


def amx_bf16_peak(threads: int = 1) -> float | None:
    """GFLOP/s of bf16 `tdpbf16ps` on `threads` threads together, or None where AMX is unavailable."""
    threads = _threads(threads)
    if not amx_available():
        return None
    address = _amx_body()
    ctx = _Ctx(16384)
    ctx.view(1024, np.uint16, 4 * 512)[:] = 0x3A80  # bf16 2^-10: no overflow, no denormals
    return _best_rate(address, ctx, threads, 4 * AMX_TILE_FLOPS, lambda u: ctx.set_i64(0, u),
                      units=1 << 12) / 1e9


AMX_LOOP_STEPS = 8  # k-steps per accumulator block in the loop probe: a 256-deep k block (matmul's BK)
AMX_LOOP_C = 512 << 10  # the loop probe's accumulator buffer: 256 x 512 float32 (a matmul program's)
AMX_LOOP_A = 16 << 10  # the loop probe's A strip: 32 rows of a pre-packed 256-deep block, 512 bytes apart


@functools.cache
def _amx_loop_body(b_bytes: int, c_trips: bool, compact_b: bool) -> int:
    """Address of the AMX tile-loop probe (see `amx_bf16_loop`): ctx[0] = blocks per chunk, ctx[8] = base;
    chunk c's buffer at base + c * (AMX_LOOP_C + AMX_LOOP_A + b_bytes): C, then A, then B."""
    name = f"tl_autotune_amx_loop_{b_bytes}_{int(c_trips)}_{int(compact_b)}"

    def emit(b, ctx, chunk):
        buf = b.gep(_field(b, ctx, 8, PTR), [b.mul(chunk, _i64(AMX_LOOP_C + AMX_LOOP_A + b_bytes))],
                    source_etype=I8)
        a_buf = b.gep(buf, [_i64(AMX_LOOP_C)], source_etype=I8)
        b_buf = b.gep(a_buf, [_i64(AMX_LOOP_A)], source_etype=I8)
        _amx_start(b)

        def c_tiles(b, op, blk):  # block blk of 32 x 32 in the 256 x 512 buffer (rows 2 KiB apart)
            off = b.add(b.mul(b.urem(blk, _i64(16)), _i64(128)), b.mul(b.urem(b.udiv(blk, _i64(16)), _i64(8)),
                                                                       _i64(32 * 2048)))
            for t in range(4):
                _tile(b, op, t, buf, b.add(off, _i64((t // 2) * 16 * 2048 + (t % 2) * 64)), 2048)

        def block(b, blk, _c):
            if c_trips:
                c_tiles(b, tile_load, blk)

            def step(b, s, _c):
                k = b.add(b.mul(blk, _i64(AMX_LOOP_STEPS)), s)
                b_off = b.urem(b.mul(k, _i64(2048)), _i64(b_bytes))
                a_off = b.mul(s, _i64(64))
                where = {4: (a_buf, a_off, 512), 5: (a_buf, b.add(a_off, _i64(16 * 512)), 512),
                         6: (b_buf, b_off, 64 if compact_b else 128),
                         7: (b_buf, b.add(b_off, _i64(1024 if compact_b else 64)), 64 if compact_b else 128)}
                _products(b, lambda t: _tile(b, tile_load, t, *where[t]))
                return []
            _do_while(b, _i64(0), _i64(AMX_LOOP_STEPS), [], step)
            if c_trips:
                c_tiles(b, tile_store, blk)
            return []
        _do_while(b, _i64(0), _field(b, ctx, 0, I64), [], block)
        if not c_trips:  # (the products' results leave the tiles)
            c_tiles(b, tile_store, _i64(0))
        intrinsic(b, "llvm.x86.tilerelease", VOID, [])

    return _jit(_body(name, emit), name)


def amx_bf16_loop(threads: int = 1, *, b_bytes: int = 1 << 20, c_trips: bool = True,
                  compact_b: bool = False) -> float | None:
    """GFLOP/s of the matmul kernel's AMX loop on `threads` threads together (None without AMX): per k-step
    two A tiles from a 16 KiB strip (32 rows 512 bytes apart, L1-resident, as a pre-packed 256-deep block
    reads them), two B tiles from `b_bytes` (a power of two) walked 2 KiB per k-step (rows of 32-column
    panels 128 bytes apart, or `compact_b`: each tile 1 KiB contiguous) and four products; with `c_trips`
    the four accumulator tiles are loaded from and stored to a 256 x 512 float32 buffer every
    AMX_LOOP_STEPS k-steps, as the kernel does per k block. What limits `ops.matmul` on AMX, in isolation."""
    threads = _threads(threads)
    if b_bytes < 4096 or b_bytes & (b_bytes - 1):
        raise ValueError(f"b_bytes must be a power of two >= 4096, got {b_bytes}")
    if not amx_available():
        return None
    address = _amx_loop_body(b_bytes, c_trips, compact_b)
    data = csrc.aligned_empty((threads * (AMX_LOOP_C + AMX_LOOP_A + b_bytes)) // 2, np.uint16, 4096)
    data[:] = 0x3A80  # bf16 2^-10 (as float32 pairs, small normal numbers: no overflow, no denormals)
    ctx = _Ctx()
    ctx.set_i64(8, int(data.__array_interface__["data"][0]))
    return _best_rate(address, ctx, threads, AMX_LOOP_STEPS * 4 * AMX_TILE_FLOPS, lambda u: ctx.set_i64(0, u),
                      units=1 << 8) / 1e9


# ---------------------------------------------------------------- bandwidth

@functools.cache
def _read_body() -> int:
    """Address of the read probe: ctx[0] = base, ctx[8] = vectors per buffer (a multiple of the
    accumulator count), ctx[16] = passes; chunk c reads its own buffer at base + c * buffer bytes."""
    V = host_target().vlen
    vt = ir.VectorType(F32, V)
    n = READ_ACCUMULATORS

    def emit(b, ctx, chunk):
        nvec = _field(b, ctx, 8, I64)
        buf = b.gep(_field(b, ctx, 0, PTR), [b.mul(chunk, nvec)], source_etype=vt)
        passes = _field(b, ctx, 16, I64)
        zero = [ir.Constant(vt, [0.0] * V) for _ in range(n)]

        def one_pass(b, _p, accs):
            def group(b, g, accs):
                base = b.mul(g, _i64(n))
                return [b.fadd(a, b.load(b.gep(buf, [b.add(base, _i64(u))], source_etype=vt), typ=vt, align=64))
                        for u, a in enumerate(accs)]
            return _do_while(b, _i64(0), b.sdiv(nvec, _i64(n)), accs, group)
        accs = _do_while(b, _i64(0), passes, zero, one_pass)
        total = accs[0]
        for a in accs[1:]:
            total = b.fadd(total, a)
        b.store(total, b.gep(ctx, [_i64(64)], source_etype=I8), align=4)

    return _jit(_body("tl_autotune_read_probe", emit), "tl_autotune_read_probe")


def read_bandwidth(nbytes: int, threads: int = 1) -> float:
    """GB/s of vector reads, each of `threads` threads passing over its own `nbytes` buffer."""
    threads = _threads(threads)
    vec_bytes = host_target().vlen * 4
    nvec = max(READ_ACCUMULATORS, nbytes // vec_bytes // READ_ACCUMULATORS * READ_ACCUMULATORS)
    buf = csrc.aligned_empty(nvec * vec_bytes * threads, np.uint8, 64)
    buf.view(np.float32)[:] = 1.0
    ctx = _Ctx()
    ctx.set_i64(0, int(buf.__array_interface__["data"][0]))
    ctx.set_i64(8, nvec)
    return _best_rate(_read_body(), ctx, threads, nvec * vec_bytes, lambda u: ctx.set_i64(16, u),
                      units=4) / 1e9


def l2_bandwidth(threads: int = 1) -> float:
    """GB/s of reads from a 512 KiB buffer per thread (L2-resident), per `threads` threads together."""
    return read_bandwidth(L2_BYTES, threads)


def l1_bandwidth(threads: int = 1) -> float:
    """GB/s of reads from a 16 KiB buffer per thread (L1-resident), per `threads` threads together."""
    return read_bandwidth(L1_BYTES, threads)


@functools.cache
def _copy_body() -> int:
    """Address of the copy probe: ctx[0] = src, ctx[8] = dst, ctx[16] = vectors per chunk."""
    V = host_target().vlen
    vt = ir.VectorType(F32, V)
    U = 8

    def emit(b, ctx, chunk):
        per = _field(b, ctx, 16, I64)
        src = b.gep(_field(b, ctx, 0, PTR), [b.mul(chunk, per)], source_etype=vt)
        dst = b.gep(_field(b, ctx, 8, PTR), [b.mul(chunk, per)], source_etype=vt)

        def group(b, g, c):
            base = b.mul(g, _i64(U))
            vals = [b.load(b.gep(src, [b.add(base, _i64(u))], source_etype=vt), typ=vt, align=64)
                    for u in range(U)]
            for u, v in enumerate(vals):
                b.store(v, b.gep(dst, [b.add(base, _i64(u))], source_etype=vt), align=64)
            return []
        _do_while(b, _i64(0), b.sdiv(per, _i64(U)), [], group)

    return _jit(_body("tl_autotune_copy_probe", emit), "tl_autotune_copy_probe")


def _copy_arrays(nbytes: int) -> tuple[np.ndarray, np.ndarray]:
    src = csrc.aligned_empty(nbytes, np.uint8, 64)
    dst = csrc.aligned_empty(nbytes, np.uint8, 64)
    src.view(np.float32)[:] = 1.0  # written, so reads do not hit the shared zero page (dst: the warm-up)
    return src, dst


def copy_bandwidth(threads: int | None = None, nbytes: int = COPY_BYTES) -> float:
    """GB/s (bytes read + bytes written) of copying `nbytes` between two arrays far larger than L2
    (and than an L3 share), on `threads` threads (default: the runtime's pool). The better of a JIT
    vector-copy loop split over the threads and NumPy's copy (one thread, libc memcpy)."""
    threads = _threads(threads)
    src, dst = _copy_arrays(nbytes)
    V = host_target().vlen
    vec_bytes = V * 4
    chunks = threads * 16
    per = nbytes // vec_bytes // chunks // 8 * 8
    ctx = _Ctx()
    ctx.set_i64(0, int(src.__array_interface__["data"][0]))
    ctx.set_i64(8, int(dst.__array_interface__["data"][0]))
    ctx.set_i64(16, per)
    address = _copy_body()
    _run(address, ctx, chunks, threads)
    jit = max(2.0 * per * vec_bytes * chunks / _run(address, ctx, chunks, threads) for _ in range(RUNS))
    best_np = 0.0
    for _ in range(RUNS):
        t0 = time.perf_counter()
        np.copyto(dst, src)
        best_np = max(best_np, 2.0 * nbytes / (time.perf_counter() - t0))
    return max(jit, best_np) / 1e9


# ---------------------------------------------------------------- all of them

@functools.cache
def measure_all() -> dict[str, float]:
    """The probe figures `autotune.calibrate.host_accelerator(probes=...)` takes (measured once per
    process): per-core FMA and AMX peaks (one thread), DRAM copy bandwidth on the whole pool, L2 and
    L1 read bandwidth of one core. The AMX key is absent where AMX is unavailable."""
    out = {"fma_f32_gflops_per_core": fma_peak(1)}
    amx = amx_bf16_peak(1)
    if amx is not None:
        out["amx_bf16_gflops_per_core"] = amx
    out["copy_gbps"] = copy_bandwidth(None)
    out["l2_gbps"] = l2_bandwidth(1)
    out["l1_gbps"] = l1_bandwidth(1)
    return out


def measure_detailed() -> dict[str, float | None]:
    """`measure_all` plus the all-core peaks (for reports: the multicore efficiency of each engine)."""
    out: dict[str, float | None] = dict(measure_all())
    n = csrc.num_threads()
    out[f"fma_f32_gflops_{n}_threads"] = fma_peak(n)
    out[f"amx_bf16_gflops_{n}_threads"] = amx_bf16_peak(n)
    out[f"l2_gbps_{n}_threads"] = l2_bandwidth(n)
    return out


def clock_estimate_hz(seconds: float = 0.02) -> float:
    """The cycle counter's rate (TSC on x86-64: the nominal clock), for sanity checks of the peaks."""
    c0, t0 = csrc.cycles(), time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        pass
    return (csrc.cycles() - c0) / (time.perf_counter() - t0)


__all__ = ["amx_available", "amx_bf16_loop", "amx_bf16_peak", "clock_estimate_hz", "copy_bandwidth", "fma_peak",
           "l1_bandwidth", "l2_bandwidth", "measure_all", "measure_detailed", "read_bandwidth"]
