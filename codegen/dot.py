"""Lowering of tl.dot: C[M, N] (+)= A[M, K] @ B[K, N] with float32 (int32 for int8) accumulation.

Like BLIS/oneDNN: the operand tiles are packed into contiguous micro-panels in the compute format of the
chosen path (the "on-chip" level; lazy operands, e.g. masked loads, are emitted vector by vector straight
into the pack), then a register-blocked micro-kernel runs over them.

Paths (`fl.options["dot"]` forces one; "auto" takes the best the target has):
- "fma": float32 FMA micro-kernel, MR x NR accumulators in vector registers (codegen/dot_kernel.py), at the
  target's vector width (AVX-512: 16 lanes, AVX2: 8, baseline: 4). Narrow floats widen exactly to float32;
  int8 x int8 runs the same kernel on int32 vectors.
- "portable": the same kernel on 16-byte vectors using only generic LLVM vector operations.
- "amx": bfloat16 / FP8 (widened exactly to bfloat16) on AMX tiles with `tdpbf16ps`, int8 with `tdpbssd`
  (codegen/dot_amx.py). Without AMX, bfloat16/FP8 use AVX512-BF16 `vdpbf16ps` (codegen/dot_bf16.py) on
  CPUs that have it and no AMX at all, else the FMA path (on Sapphire Rapids with AMX withheld by the OS,
  vdpbf16ps measured at half the float32 FMA rate). float32 and float16 always take the FMA path
  (float16 -> bfloat16 is not exact; float16 widens exactly to float32). Under "auto", dots of at most FEW_ROWS
  rows take the FMA path whatever their dtype (below).

Few rows (GEMV-like, M <= MR, decode steps) on the FMA path: every B element is used once, so B is read in place
rather than packed: streamed along its rows (a narrow B widened in registers), or, for a B given as the transpose
of a loaded tile (x @ w.T), as dot products along the rows of w. A float32 B streams for a few groups of MR rows
too (STREAM_GROUPS).

A B operand given as panels (`tl.dot(a, b, b_layout="panels")`, dot_pack.Panels) is read in place where its
layout is the micro-kernel's (AMX: bfloat16/int8 panels; FMA: float32 panels NR wide) and its tile is in
bounds, and unpacked from its k-groups into the usual packs otherwise. A float32 A operand given as row panels
(`tl.dot(a, b, a_layout="panels")`: a[q, k, r] = A[q*R + r, k]) is read in place by the FMA micro-kernels where R is
their MR (each k-step's MR values in one run, `_panels_a`), the tile stored whole first where it is not in bounds;
panels of other R are unpacked into rows.
"""
from __future__ import annotations

from collections.abc import Callable

from llvmlite import ir

from codegen import convert
from codegen import dtypes as dt
from codegen.dot_kernel import Scheme, block_loops, fma_scheme, rowdot_loops, stream_loops
from codegen.dot_pack import (
    Panels,
    in_place_or_packed,
    pack_panel,
    pack_panel_t,
    pack_rows,
    pack_tile,
    panels_of,
    source_of,
    with_loader,
)
from codegen.ir import Node, dot_panels
from codegen.llvm_util import F32, for_range, i64, mem_type, reg_type
from codegen.tiles import Buf

# (MR, NV) register blocks of the FMA micro-kernel by float32 lanes per vector
# (AVX-512: 32 zmm registers; AVX2 and 16-byte vectors: 16 registers).
FMA_BLOCKS = {16: (6, 4), 8: (6, 2), 4: (6, 2)}
FMA_UNROLL = 4
# B tiles packed whole, row by row, where their float32 panels take at most this many bytes, by lanes of the FMA
# path; else a panel at a time. Packing one 16-column panel reads a 64-byte piece of each of K rows, B rows apart: on
# AVX2 (AMD Zen 3, 512 KiB L2) that took 43% of a 64 x 4096 x 4096 product (perf, 1 thread). One-off, whole tiles of
# BN = 64-128 (ops.matmul.FMA8_DEFAULTS) against panels at their best tiles (256^3), 1 / 2 threads: n = 1024
# 1.07-1.13x / 1.06-1.13x, n = 2048 1.19-1.24x / 1.03-1.07x; the same 512 x 128 x 256 tiles packed by panel run at
# 0.89x of whole; a whole 256 x 256 tile (256 KiB) level with panels. AVX-512 (the Xeon of the earlier sessions) not
# measured with it: packs per panel.
WHOLE_B_BYTES = {8: 256 << 10}
# Whole-B panels lie this many elements (a cache line) more than K x NR apart: at K x NR x 4 bytes (a multiple of
# 4 KiB for K a multiple of 64) each source row's pieces were stored into one L1 set.
WHOLE_B_PAD = 16
# A dot of at most this many rows packing its B tile whole from an array prefetches the tile below it (the next k
# step's) into L2 meanwhile (block_loops' tile_ahead, `next_tile`): each B tile serves only a few row blocks, so its
# pack from memory is a large part of the dot. One-off on AMD Zen 3 (float32, K = N = 4096, medians of 11 interleaved
# rounds, 1 / 2 threads), with WHOLE_B_PAD against neither: M = 32 1.14-1.22x / 1.19-1.20x, M = 64 1.06x / 1.00-1.05x,
# n = 512 and 1024 (M = 512 tiles) 0.97-1.01x; the prefetch alone M = 32 1.10x / 1.10x, the gap alone 0.94-1.05x;
# M = 128 tiles 0.95-1.01x, hence 64.
NEXT_TILE_ROWS = 64
# A dot of a few more rows than MR streams B in place too, its rows in up to this many groups (by lanes of the FMA
# path; stream_loops): the first group of each chunk reads it from memory, the others from cache, where packing would
# have copied each B tile for only a few row blocks. One-off on AMD Zen 3 (float32, K = N = 4096, medians of 11
# interleaved rounds, 1 / 2 threads, against packing): M = 8 1.29-1.41x / 1.30-1.45x, M = 12 1.20-1.24x / 1.18-1.21x,
# M = 16 1.04-1.12x / 1.03-1.14x; M = 24 and 32 (4 and 6 groups) 0.87-0.92x, hence 3. Not for a B widened in
# registers (once per group): bfloat16 M = 16 0.89x, float16 M = 8 / 16 0.64x / 0.42x (1 thread).
STREAM_GROUPS = {8: 3}
# k-steps per chunk of a streamed (few-row) dot: 4-64 measured alike on the dev machine (the Xeon, M <= MR). With row
# groups on AMD Zen 3 (M = 8, 16), against 8: 16 0.86-1.00x, 32 0.60-0.77x, 64 0.38-0.49x (a chunk's k-steps of one
# panel, B's rows 16 KiB apart, share an L1 set of 8 ways).
STREAM_CHUNK = 8
NARROW = ("bfloat16", "float8_e4m3fn", "float8_e5m2")
# narrow (bfloat16, FP8, int8) dots of at most this many rows take the FMA path, which reads B in place. One-off,
# bfloat16 K = N = 4096 against the AMX path, 1 / 2 threads: M = 1 1.9x / 1.7x, M = 4 1.7x / 1.5x, M = 6 1.2x / 1.1x
FEW_ROWS = 4


def choose_path(opts: dict, in_dtype: dt.DType, rows: int | None = None) -> str:
    """'amx', 'bf16' (vdpbf16ps), 'fma' or 'portable' for a dot of `in_dtype` operands (A with `rows` rows,
    None: any) under the target options `opts` (codegen_options)."""
    mode = opts.get("dot", "auto")
    if mode == "portable":
        return "portable"
    if mode == "fma":
        return "fma"
    if mode == "auto" and rows is not None and rows <= FEW_ROWS:
        return "fma"
    if in_dtype.name in NARROW:
        if opts.get("amx"):
            return "amx"
        # vdpbf16ps where it runs at full rate: on CPUs with AMX (Sapphire Rapids), where the OS did
        # not grant AMX, it measured at half the float32 FMA rate, below widening + FMA
        if opts.get("avx512bf16") and opts.get("vector_bytes", 0) >= 64 and not opts.get("cpu_amx", _host().amx):
            return "bf16"
    elif in_dtype == dt.int8 and opts.get("amx") and opts.get("amx_int8", "+amx-int8" in _host().features.split(",")):
        return "amx"
    return "fma"


def _host():
    from codegen.target import host_target
    return host_target()


def lower_dot(fl, n: Node, a, acc: Buf | None, fresh: ir.Value | None = None,
              direct: tuple | None = None, epilogue=None) -> tuple[Buf | None, bool]:
    """The DOT node `n` (A tile `a`) into `acc` (or a new buffer): (the result, whether it went to `direct`).
    AMX only (codegen.lower gives them to no other path): `fresh` (i1, with `acc`): acc holds no value yet and
    the product starts from zero (the first iteration of a k loop whose accumulator starts as zeros). `direct`
    (ptr, row stride, i1, cvt): where the result is stored when the i1 holds (the last iteration of such a loop,
    whose result is stored into an array), instead of `acc`; False when it leaves the store to its caller. `cvt`
    is None (a float32 array) or (convert(builder, float32 vector) -> memory form, element type, a faster
    conversion or None: see codegen.lower) for an array the result is converted into. `epilogue` (AMX, whole tiles, no
    `acc`): called on each 32 x 32 block of the result instead of storing it (see dot_amx.amx_loops); the result
    is then (None, True)."""
    path = choose_path(fl.options or {}, n.srcs[0].dtype, n.srcs[0].shape[0])
    if path == "amx":
        from codegen.dot_amx import lower_dot_amx
        return lower_dot_amx(fl, n, a, acc, fresh, direct, epilogue)
    assert fresh is None and direct is None and epilogue is None, "special dots are lowered on AMX only"
    if path == "bf16":
        from codegen.dot_bf16 import lower_dot_bf16
        return lower_dot_bf16(fl, n, a, acc), False
    return lower_dot_vector(fl, n, acc, fma_lanes(fl, path)), False


def fma_lanes(fl, path: str) -> int:
    """float32 lanes per vector of the FMA ("fma") or 16-byte ("portable") micro-kernel."""
    return path_lanes(fl.vlen, path)


def path_lanes(vlen: int, path: str) -> int:
    """`fma_lanes` on a target of `vlen` float32 lanes a vector."""
    return vlen if path == "fma" else min(vlen, 4)


def panel_cols(V: int) -> int:
    """NR, the columns of a B panel of the FMA micro-kernel at V lanes (a few-row dot may take wider ones)."""
    return FMA_BLOCKS.get(V, (4, 2))[1] * V


def out_buffer(fl, n: Node, acc: Buf | None) -> Buf:
    return acc if acc is not None else fl.alloca(n.result.shape, n.result.dtype, n.loc)


def converter(b: ir.IRBuilder, src: dt.DType, dst: dt.DType):
    if src == dst:
        return lambda x: x
    return lambda x: convert.cast(b, x, src.name, dst.name)


def wide_panel(N: int, V: int, most: int) -> int:
    """Vectors per panel for a few-row dot: as many as the registers allow (`most`), preferring a count
    that divides N into whole panels (no ragged panel, which would have to be packed)."""
    nvec = -(-N // V)
    if nvec <= most:
        return nvec
    if N % V == 0:
        fits = [d for d in range(most, most // 2, -1) if nvec % d == 0]
        if fits:
            return fits[0]
    return most


def lower_dot_vector(fl, n: Node, acc: Buf | None, V: int) -> Buf:
    """The FMA / integer micro-kernel at V lanes (f32 or i32 compute)."""
    a_panels, b_panels = dot_panels(n)
    (M, N), K = n.result.shape, n.srcs[0].shape[1]
    out = n.result.dtype
    b = fl.b
    acc_t = reg_type(out)
    MR, NV = FMA_BLOCKS.get(V, (4, 2))
    sb = source_of(fl, n.srcs[1]) if not b_panels else None
    if M < MR and not (sb and sb.transposed):  # few rows (GEMV-like): wider panels, so B streams along whole rows
        NV = max(NV, wide_panel(N, V, ((32 if V >= 16 else 16) - 4) // M))
    NR = NV * V
    sa = source_of(fl, n.srcs[0]) if not a_panels else None
    # A: row-major M x K, or k-major (K x M) when the operand is a transpose; used in place when it
    # already is a buffer of the compute type; panels of MR rows (a_panel apart) where given so
    a_rs, a_ks = (1, M) if sa and sa.transposed else (K, 1)
    a_panel = None
    if a_panels:
        a_ptr, a_rs, a_ks, a_panel = _panels_a(fl, n, M, K, MR)
    elif isinstance(sa.tile, Buf) and sa.dtype == out:
        a_ptr = sa.tile.ptr
    elif sa.from_array and sa.dtype == out and not sa.transposed:
        # an in-bounds row-major tile of the array is read in place (its rows stream through the
        # hardware prefetchers); an edge tile is packed through its masked loads
        base, rs, ok = sa.resolve()
        Ap = fl.alloca((M * K,), out, n.loc).ptr

        def pack_a():
            pack_rows(fl, lambda b_, r, c0, w: sa.tile.emit(b_, [r], c0, w), lambda x: x, Ap, acc_t, rows=M,
                      cols=K, dst_rs=K, w=V)
            return Ap, i64(K)
        a_ptr, a_rs = in_place_or_packed(b, ok, (base, rs), pack_a)
    else:
        a_ptr = fl.alloca((M * K,), out, n.loc).ptr
        rows, cols = (K, M) if sa.transposed else (M, K)
        with_loader(fl, sa, lambda ld: pack_rows(fl, ld, converter(b, sa.dtype, out), a_ptr, acc_t, rows=rows,
                                                 cols=cols, dst_rs=cols, w=V))
    C = out_buffer(fl, n, acc)
    loops = {"M": M, "N": N, "steps": K, "NV": NV, "unroll": FMA_UNROLL, "a_ptr": a_ptr, "a_rs": a_rs,
             "a_ks": a_ks, "c_ptr": C.ptr, "init_zero": acc is None}
    scheme = fma_scheme(V, acc_t)
    if b_panels:
        Bp = fl.alloca((K * NR,), out, n.loc).ptr
        pack_b, ahead = _panels_b(fl, panels_of(fl, n.srcs[1]), Bp, out, acc_t, K=K, V=V, NV=NV)
        block_loops(b, scheme, MR=MR, b_ptr=Bp, b_step=NR, b_panel=0, pack_panel=pack_b, panel_ahead=ahead,
                    a_panel=a_panel, **loops)
        return C
    cvt = converter(b, sb.dtype, out)
    sb.resolve()
    whole = M >= MR and not sb.transposed and whole_b(V, K, N, fl.room())

    def packed_loops():
        _packed_loops(fl, n, sb, scheme, {**loops, "a_panel": a_panel}, cvt, MR=MR, whole=whole)

    if a_panel is not None:  # (A's panels: B packed; the few-row loops below address A by rows)
        packed_loops()
        return C
    groups = STREAM_GROUPS.get(V, 1) if sb.dtype == out else 1
    if M <= groups * MR and sb.from_array and not sb.transposed:
        # GEMV-like: every B element is used once (by each group of MR rows: STREAM_GROUPS), so a tile whose k rows
        # lie in the array streams B in place, an edge tile past the array's last column too (its columns beyond
        # read as zeros, masked); one past the last row is packed through its masked loads
        base, rs, _ = sb.resolve()
        lead, rows, cols = sb.extent()
        with b.if_else(b.and_(lead, b.icmp_signed("==", rows, i64(K))), likely=True) as (then, otherwise):
            with then:
                # a B widened by more than a shift (float16, FP8, int8) unrolls no k-steps: its code was the compile
                # time (float16, M = 1: 4.0 s -> 1.9 s, run time level; bfloat16 would lose 3-7%)
                unroll = FMA_UNROLL if sb.dtype in (out, dt.bfloat16) else 1
                stream_loops(b, _widening(fl, scheme, sb.dtype, out, cvt), chunk=STREAM_CHUNK, b_ptr=base, b_rs=rs,
                             cols=cols, MR=MR, **{**loops, "unroll": unroll})
            with otherwise:
                packed_loops()
        return C
    if M <= MR and sb.from_array and sb.transposed and a_ks == 1:
        # GEMV-like with B given as its transpose W (N x K, e.g. x @ w.T): dot products along W's rows, read in
        # place (rows past the array skipped, columns past it masked); a tile before the array's start is packed
        base, rs, _ = sb.resolve()
        lead, rows, cols = sb.extent()
        with b.if_else(lead, likely=True) as (then, otherwise):
            with then:
                rowdot_loops(b, _widening(fl, scheme, sb.dtype, out, cvt), M=M, N=N, K=K, a_ptr=a_ptr, a_rs=a_rs,
                             w_ptr=base, w_rs=rs, c_ptr=C.ptr, init_zero=acc is None, rows=rows, cols=cols)
            with otherwise:
                packed_loops()
        return C
    packed_loops()
    return C


def _packed_loops(fl, n: Node, sb, scheme: Scheme, loops: dict, cvt, *, MR: int, whole: bool) -> None:
    """block_loops over B packed on chip: with `whole` (a B that is not a transpose), the whole tile row by row
    before the micro-kernels (`dot_pack.pack_tile`), else one NR-column panel (k-major) at a time just before its
    micro-kernels run (the buffer stays in L1, the panel's rows are read once)."""
    b, acc_t, out = fl.b, scheme.acc_t, n.result.dtype
    K, N, V, NV = loops["steps"], loops["N"], scheme.V, loops["NV"]
    NR = NV * V
    if whole:
        stride = K * NR + WHOLE_B_PAD
        Bw = fl.alloca((-(-N // NR) * stride,), out, n.loc).ptr
        with_loader(fl, sb, lambda ld: pack_tile(fl, ld, cvt, Bw, acc_t, K=K, N=N, V=V, NV=NV, stride=stride))
        ahead = next_tile(b, sb, K, N) if sb.from_array and loops["M"] <= NEXT_TILE_ROWS else None
        block_loops(b, scheme, MR=MR, b_ptr=Bw, b_step=NR, b_panel=stride, tile_ahead=ahead, **loops)
        return
    Bp = fl.alloca((K * NR,), out, n.loc).ptr
    pack = pack_panel_t if sb.transposed else pack_panel

    def pack_b(p, ncols):
        with_loader(fl, sb, lambda ld: pack(fl, ld, cvt, Bp, acc_t, p, ncols, K=K, V=V, NV=NV))
    block_loops(b, scheme, MR=MR, b_ptr=Bp, b_step=NR, b_panel=0, pack_panel=pack_b, **loops)


def _panels_a(fl, n: Node, M: int, K: int, MR: int) -> tuple:
    """(pointer, row stride, k stride, panel stride) of a "panels" A operand (Q x K x R float32) for block_loops.
    Panels of MR rows are read as they are: in place where the tile is a load from an array whose k-steps lie R
    apart and that is in bounds, else stored whole first (panel stride an i64 value). Other panels are unpacked into
    row-major rows (panel stride None)."""
    b = fl.b
    pan = panels_of(fl, n.srcs[0])
    Q, _, R = n.srcs[0].shape
    buf = pan.tile if isinstance(pan.tile, Buf) else fl.alloca((Q, K, R), dt.float32, n.loc)

    def stored():
        if buf is not pan.tile:
            fl.materialize(pan.tile, into=buf)
        return buf.ptr, i64(K * R)
    if R != MR:  # row q*R + r of A: element k at src[(q*K + k)*R + r]
        src, _ = stored()
        dst = fl.alloca((M * K,), dt.float32, n.loc).ptr
        with for_range(b, 0, Q * K, 1, "ap.qk") as qk:
            q, k = b.udiv(qk, i64(K)), b.urem(qk, i64(K))
            for r in range(R):
                x = b.load(b.gep(src, [b.add(b.mul(qk, i64(R)), i64(r))], source_etype=F32), typ=F32)
                row = b.add(b.mul(q, i64(R)), i64(r))
                b.store(x, b.gep(dst, [b.add(b.mul(row, i64(K)), k)], source_etype=F32))
        return dst, K, 1, None
    if pan.direct is None:
        ptr, qs = stored()
    else:
        base, (qs, ks), ok = pan.resolve()
        ok = b.and_(ok, b.icmp_signed("==", ks, i64(R)))
        ptr, qs = in_place_or_packed(b, ok, (base, qs), stored)
    return ptr, 1, R, qs


def next_tile(b: ir.IRBuilder, sb, K: int, N: int) -> tuple[int, Callable]:
    """(lines, line(l) -> pointer): the cache lines, row by row, of the K x N tile of the array just below `sb`'s
    (a tile from an array, not a transpose): the next tile of a k loop down B. Past the array's end they point
    nowhere; they are only prefetched (which never faults)."""
    base, rs, _ = sb.resolve()
    per_line = 64 // sb.dtype.itemsize
    row_lines = -(-N // per_line)

    def line(l):
        row = b.add(b.udiv(l, i64(row_lines)), i64(K))
        return b.gep(base, [b.add(b.mul(row, rs), b.mul(b.urem(l, i64(row_lines)), i64(per_line)))],
                     source_etype=mem_type(sb.dtype))
    return K * row_lines, line


def whole_b(V: int, K: int, N: int, room: int | None = None) -> bool:
    """Whether the FMA dot at V lanes packs a K x N B tile (not a transpose) whole, row by row, before its
    micro-kernels (`dot_pack.pack_tile`), rather than one panel at a time just before each panel's: where
    WHOLE_B_BYTES allows (the panels' bytes without their gaps) and, given the `room` left in the kernel's on-chip
    budget, the tile fits it."""
    NR = panel_cols(V)
    return 4 * K * NR * -(-N // NR) <= WHOLE_B_BYTES.get(V, 0) and (room is None or whole_b_bytes(V, K, N) <= room)


def whole_b_bytes(V: int, K: int, N: int) -> int:
    """Bytes of a K x N B tile packed whole into float32 panels at V lanes (the last one zero-padded), WHOLE_B_PAD
    apart."""
    NR = panel_cols(V)
    return 4 * (K * NR + WHOLE_B_PAD) * -(-N // NR)


def _widening(fl, scheme: Scheme, src: dt.DType, out: dt.DType, cvt) -> Scheme:
    """`scheme` reading B in place as `src` elements, widened to `out` in registers by `cvt`; FP8 to float32 on
    AVX512-VBMI also 64 elements at a time by table lookup (`convert.fp8_to_f32_vbmi`), where B's layout allows."""
    if src == out:
        return scheme
    widen64, fmt = None, convert.FP8_DTYPES.get(src.name)
    if fmt and out == dt.float32 and scheme.V == 16 and (fl.options or {}).get("avx512vbmi"):
        def widen64(b_, x):
            return convert.fp8_to_f32_vbmi(b_, x, fmt)
    return fma_scheme(scheme.V, scheme.acc_t, reg_type(src), lambda b_, x: cvt(x), widen64)


def _panels_b(fl, pan: Panels, Bp, out: dt.DType, acc_t, *, K: int, V: int, NV: int):
    """(pack_panel, panel_ahead) callbacks of block_loops for a "panels" B operand: float32 panels exactly NR wide,
    from an in-bounds load, are read in place (and the next one prefetched); others are packed (unpacking the
    k-groups) panel by panel."""
    b = fl.b
    NR = NV * V
    cvt = converter(b, pan.dtype, out)

    def pack(p, ncols):
        pack_panel(fl, pan.load, cvt, Bp, acc_t, p, ncols, K=K, V=V, NV=NV)
    if pan.W != NR or pan.dtype != out or pan.direct is None:  # out is 4 bytes wide: G == 1
        return pack, None
    base, (ps, qs), ok = pan.resolve()  # here, before the panel loop: it dominates every panel

    def in_place(p, ncols):
        def packed():
            pack(p, ncols)
            return Bp, i64(NR)
        return in_place_or_packed(b, ok, (b.gep(base, [b.mul(p, ps)], source_etype=acc_t), qs), packed)

    def ahead(p):  # (past the tile's last panel: the next tile's first, or nothing; a prefetch never faults)
        return b.gep(base, [b.mul(b.add(p, i64(1)), ps)], source_etype=acc_t)
    return in_place, ahead
