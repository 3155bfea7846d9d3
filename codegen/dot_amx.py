"""tl.dot on AMX tiles: bfloat16 (and FP8 widened exactly to bfloat16) with `tdpbf16ps`, int8 with `tdpbssd`.

Register-explicit intrinsics (tile numbers as i8 immediates), one tile configuration for all eight tiles
(16 rows x 64 bytes): tiles 0-3 hold a 2 x 2 block of 16 x 16 float32 / int32 accumulators (32 x 32 of C),
4-5 two 16-row A tiles, 6-7 two B tiles. Per k step (32 bf16 / 64 int8) two A and two B tile loads feed
four tile products, each tile reloaded right after its last use; the accumulators stay in tiles across
the whole k loop. Row blocks outer, column blocks inner: a 32-row block of A stays in L1 while the
contiguous 32-column blocks of B stream through it.

Operands are packed (dot_pack.py), zero-padded to whole tiles:
- A: row-major Mp x Kp (Mp a multiple of 16, Kp of the k step). An in-bounds tile of the array whose
  rows are at most 1 KiB apart (e.g. a pre-packed block) is read in place.
- B: VNNI groups of G = 4 / element size consecutive k (dot_pack.Vnni), in blocks of 32 columns. A
  "panels" operand (tl.dot(..., b_layout="panels")) already is in this order and is read in place
  when its tile is in bounds.
C tiles are loaded from / stored to the accumulator buffer in place when it has whole tiles; otherwise
they start at zero, go to a padded scratch and are added into C row by row.
"""
from __future__ import annotations

from dataclasses import dataclass

from llvmlite import ir

from codegen import convert
from codegen import dtypes as dt
from codegen.dot_pack import (
    Panels,
    Vnni,
    in_place_or_packed,
    pack_rows,
    pack_vnni,
    pack_vnni_t,
    panels_of,
    source_of,
    with_loader,
    zero_rows,
)
from codegen.ir import Node, dot_panels
from codegen.llvm_util import F32, I8, I16, I32, I64, alloca, for_range, i64, intrinsic, prefetch, reg_type, vec
from codegen.tiles import Buf

TILE_ROWS, TILE_BYTES = 16, 64
C_TILES, A_TILES, B_TILES = (0, 1, 2, 3), (4, 5), (6, 7)
VOID = ir.VoidType()
CB = 32  # columns per B layout block


def _t(n: int) -> ir.Constant:
    return ir.Constant(I8, n)


def tile_config(module: ir.Module) -> ir.GlobalVariable:
    """The 64-byte palette-1 configuration: every tile 16 rows x 64 bytes."""
    g = module.globals.get("tl.amx.cfg")
    if g is None:
        t = ir.ArrayType(I8, 64)
        raw = [0] * 64
        raw[0] = 1
        for tile in range(8):
            raw[16 + 2 * tile] = TILE_BYTES        # bytes per row (uint16, little endian)
            raw[48 + tile] = TILE_ROWS
        g = ir.GlobalVariable(module, t, "tl.amx.cfg")
        g.initializer = ir.Constant(t, raw)
        g.global_constant = True
        g.linkage = "internal"
        g.align = 64
    return g


def tile_load(b, tile: int, ptr, stride) -> None:
    """Tile register `tile` from ptr (rows `stride` bytes apart, an i64 value)."""
    intrinsic(b, "llvm.x86.tileloadd64", VOID, [_t(tile), ptr, stride])


def tile_store(b, tile: int, ptr, stride) -> None:
    """Tile register `tile` to ptr (rows `stride` bytes apart, an i64 value)."""
    intrinsic(b, "llvm.x86.tilestored64", VOID, [_t(tile), ptr, stride])


def bf16_bits(b, x):
    """float32 register vector -> bfloat16 bits by truncation (exact for values bfloat16 holds)."""
    t = x.type
    return b.trunc(b.lshr(b.bitcast(x, vec(I32, t.count)), ir.Constant(vec(I32, t.count), [16] * t.count)),
                   vec(I16, t.count))


def lower_dot_amx(fl, n: Node, a, acc: Buf | None, fresh: ir.Value | None = None,
                  direct: tuple | None = None, epilogue=None) -> tuple[Buf | None, bool]:
    """codegen.dot.lower_dot on AMX: `direct` is taken where C has whole tiles; so is `epilogue`, which C must
    have."""
    (M, K), N = n.srcs[0].shape, n.result.shape[1]
    din, out = n.srcs[0].dtype, n.result.dtype
    b = fl.b
    int8 = din == dt.int8
    G = 4 if int8 else 2                     # k values per 32-bit VNNI group
    KS = TILE_BYTES // (1 if int8 else 2)    # k per tile product
    et = I8 if int8 else I16
    Mp, Np, Kp = -(-M // 16) * 16, -(-N // 16) * 16, -(-K // KS) * KS
    acc_t = reg_type(out)

    def cvt_of(d):
        if d == din and d in (dt.bfloat16, dt.int8):
            return lambda x: x
        return lambda x: bf16_bits(b, convert.cast(b, x, d.name, "float32"))

    sa = source_of(fl, n.srcs[0])
    # ---- A: Mp x Kp row-major
    a_ptr, a_stride, a_ahead = _a_operand(fl, n, a, sa, cvt_of(sa.dtype), din, M=M, K=K, Mp=Mp, Kp=Kp, KS=KS,
                                          et=et)
    # ---- B: VNNI groups in blocks of CB columns (a "panels" operand: its own blocks, in place if it can)
    Bp = fl.alloca((Kp * Np,), din if din in (dt.bfloat16, dt.int8) else dt.bfloat16, n.loc).ptr
    if dot_panels(n)[1]:
        bt, b_ahead = _panels_b(fl, panels_of(fl, n.srcs[1]), cvt_of, Bp, din, et, G, K=K, N=N, Kp=Kp, KS=KS)
    else:
        b_ahead = ()
        sb = source_of(fl, n.srcs[1])
        cvt = cvt_of(sb.dtype)
        lay = Vnni(Kp, Np, G, CB)
        pack = pack_vnni_t if sb.transposed else pack_vnni
        with_loader(fl, sb, lambda ld: pack(fl, ld, cvt, Bp, et, lay, K=K, N=N))
        bt = BTiles(Bp, CB, i64(lay.block_base(1)), i64(CB * G), i64(lay.width(lay.blocks - 1) * G))
    # ---- C: in place when whole tiles, else a padded scratch added in afterwards
    whole = M % 16 == 0 and N % 16 == 0
    if epilogue is not None:  # each block's tiles from zero, through a 4 KiB scratch, to the epilogue
        assert whole and acc is None and direct is None, "a dot's epilogue takes a fresh product of whole tiles"
        scratch = fl.alloca((32 * 32,), out, n.loc, counted=False).ptr
        amx_loops(b, Mp=Mp, Np=Np, Kp=Kp, int8=int8, a_ptr=a_ptr, a_stride=a_stride, bt=bt, c_ptr=scratch,
                  c_ld=N, c_init=False, acc_t=acc_t, ahead=a_ahead + b_ahead, c_scratch=scratch, epilogue=epilogue)
        return None, True
    if whole:
        C = acc if acc is not None else fl.alloca((M, N), out, n.loc)
        c_ptr, c_ld, c_init = C.ptr, N, acc is not None
    else:
        C = acc
        c_ptr, c_ld, c_init = fl.alloca((Mp * Np,), out, n.loc).ptr, Np, False

    c_out = direct if whole else None
    scratch = None
    if c_out is not None and c_out[3] is not None:
        scratch = fl.alloca((32 * 32,), out, n.loc, counted=False).ptr
    amx_loops(b, Mp=Mp, Np=Np, Kp=Kp, int8=int8, a_ptr=a_ptr, a_stride=a_stride, bt=bt, c_ptr=c_ptr,
              c_ld=c_ld, c_init=c_init, acc_t=acc_t, ahead=a_ahead + b_ahead, c_fresh=fresh, c_out=c_out,
              c_scratch=scratch)

    if whole:
        return C, direct is not None
    # C[:M, :N] (+)= scratch
    if C is None:
        C = fl.alloca((M, N), out, n.loc)
        add = False
    else:
        add = True
    V = fl.vlen
    scratch = Buf(c_ptr, (Mp, Np), out)

    def row_add(idx, col, w):
        x = scratch.emit(b, idx, col, w)
        if add:
            y = C.emit(b, idx, col, w)
            s = b.fadd(y, x) if out == dt.float32 else b.add(y, x)
            x = s if fresh is None else b.select(fresh, x, s)
        C.put(b, idx, col, x)
    with for_range(b, 0, M, 1, "amx.o") as i:
        nf, nr = divmod(N, V)
        if nf:
            with for_range(b, 0, nf * V, V, "amx.oc") as c0:
                row_add([i], c0, V)
        if nr:
            row_add([i], i64(nf * V), nr)
    return C, False


@dataclass
class BTiles:
    """Where the B tiles are: VNNI groups in blocks of W columns (W a multiple of 16), block j at
    base + j*blk, group row q of it at + q*q_elems (q_last for a last block narrower than W)."""
    base: ir.Value
    W: int
    blk: ir.Value
    q_elems: ir.Value
    q_last: ir.Value


@dataclass
class Ahead:
    """Memory to prefetch into L2 while the tile loops run, spread evenly over their k-steps: `runs` runs of
    `run_bytes` bytes, run r at base + r*stride bytes, when `when` (i1: the operand is read in place) holds.
    Operands read in place come from L3 on their first use, where tile loads stall: prefetching what follows
    them (in a pre-packed layout: the next k block, which the next dot of a k loop reads) measured 1.1-1.3x
    on a k loop of bfloat16 dots. A packed operand's buffer is hot already: nothing to prefetch."""
    when: ir.Value
    base: ir.Value
    run_bytes: int
    runs: int = 1
    stride: ir.Value | None = None

    def emit(self, b, t, iterations: int) -> None:
        run_lines = max(1, self.run_bytes // 64)
        per = -(-run_lines * self.runs // iterations)
        with b.if_then(self.when, likely=True):
            for u in range(per):
                line = b.add(b.mul(t, i64(per)), i64(u))
                off = b.mul(b.urem(line, i64(run_lines)), i64(64))
                if self.runs > 1:
                    off = b.add(off, b.mul(b.udiv(line, i64(run_lines)), self.stride))
                prefetch(b, b.gep(self.base, [off], source_etype=I8), 2)


def amx_loops(b, *, Mp: int, Np: int, Kp: int, int8: bool, a_ptr, a_stride, bt: BTiles, c_ptr, c_ld: int,
              c_init: bool, acc_t, ahead: tuple[Ahead, ...] = (), c_fresh: ir.Value | None = None,
              c_out: tuple | None = None, c_scratch: ir.Value | None = None, epilogue=None) -> None:
    """C[Mp, Np] (row stride c_ld; loaded first when c_init, else zero) += A @ B over 2 x 2 tile blocks:
    A at a_ptr (bytes, row stride a_stride), B's tiles where `bt` says; `ahead` prefetched meanwhile.
    `c_fresh` (i1, with c_init): C holds no value yet, the tiles start at zero instead. `c_out` (ptr, row stride
    in elements, i1, cvt): where the result tiles go instead of C when the i1 holds; with a `cvt` (see
    codegen.dot.lower_dot) each block's tiles go through `c_scratch` (32 x 32 float32), converted from there.
    `epilogue(b, tiles, i0, j0)` instead of any of that: each block's tiles (from zero) are stored to `c_scratch`
    and it is called with their pointers (tiles[r][c]: 16 x 16 float32, rows 64 bytes apart) and the block's
    corner in C."""
    G = 4 if int8 else 2
    KS = TILE_BYTES // (1 if int8 else 2)
    et = I8 if int8 else I16
    es = 1 if int8 else 2
    product = "llvm.x86.tdpbssd" if int8 else "llvm.x86.tdpbf16ps"
    c_stride = i64(c_ld * 4)
    intrinsic(b, "llvm.x86.ldtilecfg", VOID, [tile_config(b.module)])

    def block(i0, j0, mt: int, nt: int):
        """C[i0 : i0+16*mt, j0 : j0+16*nt] with mt x nt accumulator tiles (i0, j0 i64 values)."""
        ctiles = [[C_TILES[2 * r + c] for c in range(nt)] for r in range(mt)]
        cptr = [[b.gep(c_ptr, [b.add(b.mul(b.add(i0, i64(16 * r)), i64(c_ld)), b.add(j0, i64(16 * c)))],
                       source_etype=acc_t) for c in range(nt)] for r in range(mt)]

        def init(load: bool):
            for r in range(mt):
                for c in range(nt):
                    if load:
                        tile_load(b, ctiles[r][c], cptr[r][c], c_stride)
                    else:
                        intrinsic(b, "llvm.x86.tilezero", VOID, [_t(ctiles[r][c])])
        if c_init and c_fresh is not None:
            with b.if_else(c_fresh) as (zero, load):
                with zero:
                    init(False)
                with load:
                    init(True)
        else:
            init(c_init)
        arow = [b.gep(a_ptr, [b.mul(b.add(i0, i64(16 * r)), a_stride)], source_etype=I8) for r in range(mt)]
        # a single 16-column tile is the narrow last block of the packed layout (or a 16-wide panel)
        q = bt.q_elems if 16 * nt >= bt.W else bt.q_last
        bcol = []
        for c in range(nt):
            n0 = b.add(j0, i64(16 * c))
            off = b.add(b.mul(b.udiv(n0, i64(bt.W)), bt.blk), b.mul(b.urem(n0, i64(bt.W)), i64(G)))
            bcol.append(b.gep(bt.base, [off], source_etype=et))
        b_stride = b.mul(q, i64(es))
        with for_range(b, 0, Kp // KS, 1, "amx.k") as kt:
            aoff = b.mul(kt, i64(KS * es))
            boff = b.mul(kt, b.mul(q, i64(KS // G)))

            def lda(r):
                tile_load(b, A_TILES[r], b.gep(arow[r], [aoff], source_etype=I8), a_stride)

            def ldb(c):
                tile_load(b, B_TILES[c], b.gep(bcol[c], [boff], source_etype=et), b_stride)

            def tdp(r, c):
                intrinsic(b, product, VOID, [_t(ctiles[r][c]), _t(A_TILES[r]), _t(B_TILES[c])])
            if mt == 2 and nt == 2:  # each tile reloaded right after its last use (tiles are not renamed)
                steps = (Mp // 32) * (Np // 32) * (Kp // KS)
                t = b.add(b.mul(b.add(b.mul(b.udiv(i0, i64(32)), i64(Np // 32)), b.udiv(j0, i64(32))),
                                i64(Kp // KS)), kt)
                for region in ahead:
                    region.emit(b, t, steps)
                lda(0), ldb(0), tdp(0, 0), ldb(1), tdp(0, 1), lda(1), tdp(1, 0), tdp(1, 1)
            else:
                for r in range(mt):
                    lda(r)
                for c in range(nt):
                    ldb(c)
                for r in range(mt):
                    for c in range(nt):
                        tdp(r, c)

        def store(ptrs, stride):
            for r in range(mt):
                for c in range(nt):
                    tile_store(b, ctiles[r][c], ptrs[r][c], stride)
        # tile (r, c) at a compact 1 KiB of the scratch (in L1)
        sptr = None if c_scratch is None else [[b.gep(c_scratch, [i64((2 * r + c) * 256)], source_etype=acc_t)
                                                for c in range(nt)] for r in range(mt)]
        if epilogue is not None:
            store(sptr, i64(64))
            epilogue(b, sptr, i0, j0)
            return
        if c_out is None:
            store(cptr, c_stride)
            return
        out, rs, there, cvt = c_out
        elem = acc_t if cvt is None else cvt[1]
        optr = [[b.gep(out, [b.add(b.mul(b.add(i0, i64(16 * r)), rs), b.add(j0, i64(16 * c)))], source_etype=elem)
                 for c in range(nt)] for r in range(mt)]
        with b.if_else(there) as (direct, into_c):
            with direct:
                if cvt is None:
                    store(optr, b.mul(rs, i64(4)))
                else:  # each tile through the scratch, converted row by row into C
                    store(sptr, i64(64))
                    convert_block(b, sptr, optr, rs, elem, cvt, mt, nt)
            with into_c:
                store(cptr, c_stride)

    def cols(i0, mt):
        full, rem = divmod(Np // 16, 2)
        if full:
            with for_range(b, 0, full * 32, 32, "amx.j") as j0:
                block(i0, j0, mt, 2)
        if rem:
            block(i0, i64(full * 32), mt, 1)

    full, rem = divmod(Mp // 16, 2)
    if full:
        with for_range(b, 0, full * 32, 32, "amx.i") as i0:
            cols(i0, 2)
    if rem:
        cols(i64(full * 32), 1)
    intrinsic(b, "llvm.x86.tilerelease", VOID, [])


def tile_row(b, tile, i) -> ir.Value:
    """Row i (an i64 value) of a 16 x 16 float32 tile stored with rows 64 bytes apart (`c_scratch`), one vector."""
    return b.load(b.gep(tile, [b.mul(i, i64(16))], source_etype=F32), typ=vec(F32, 16), align=64)


def convert_block(b, sptr, optr, rs, elem, cvt, mt: int, nt: int) -> None:
    """The float32 16 x 16 tiles at sptr[r][c] (rows 64 bytes apart) converted by cvt[0] into C's tiles at optr[r][c]
    (rows `rs` elements of type `elem` apart). With a cheaper conversion cvt[2] = (fast, differs) (see
    codegen.lower.FunctionLowering._fast_bf16), the block goes through `fast`, and once more through cvt[0] only
    when `differs` flags a value of it (NaN, subnormal: rare in a product)."""
    def row(conv, i, differs=None):
        """Convert row i of every tile; with `differs`, its lanes or-ed over the row (i16), tested before each
        store so that the loaded values need not outlive it."""
        flags = None
        for r in range(mt):
            for c in range(nt):
                x = tile_row(b, sptr[r][c], i)
                if differs is not None:
                    d = b.bitcast(differs(b, x), I16)
                    flags = d if flags is None else b.or_(flags, d)
                b.store(conv(b, x), b.gep(optr[r][c], [b.mul(i, rs)], source_etype=elem), align=1)
        return flags

    def exact():
        with for_range(b, 0, 16, 1, "amx.cv") as i:
            row(cvt[0], i)
    if cvt[2] is None:
        exact()
        return
    fast, differs = cvt[2]
    with b.goto_entry_block():
        slot = alloca(b, I16)  # the lanes flagged so far (a loop-carried register once promoted)
    b.store(ir.Constant(I16, 0), slot)
    with for_range(b, 0, 16, 1, "amx.cf") as i:
        b.store(b.or_(b.load(slot, typ=I16), row(fast, i, differs)), slot)
    with b.if_then(b.icmp_unsigned("!=", b.load(slot, typ=I16), ir.Constant(I16, 0)), likely=False):
        exact()


A_IN_PLACE_STRIDE = 1024  # bytes: A rows further apart are packed (4 KiB apart they measured 0.77x packed)


def _a_operand(fl, n, a, sa, cvt, din, *, M, K, Mp, Kp, KS, et):
    """(pointer, row stride in bytes, prefetches) of A: an in-bounds whole-tile block of the array in place
    when its rows are close and start on cache lines (a pre-packed block; the block after it is prefetched), else
    packed."""
    b = fl.b
    es = 1 if et == I8 else 2
    if not (sa.from_array and sa.dtype == din and din in (dt.bfloat16, dt.int8) and not sa.transposed
            and M % 16 == 0 and K % KS == 0):
        return _pack_a(fl, n, a, sa, cvt, M=M, K=K, Mp=Mp, Kp=Kp, KS=KS, et=et), i64(Kp * es), ()
    base, rs, ok = sa.resolve()
    row_bytes = b.mul(rs, i64(es))
    near = b.and_(ok, b.icmp_unsigned("<=", row_bytes, i64(A_IN_PLACE_STRIDE)))
    # and each tile row one cache line: NumPy's buffers start 16 bytes into a line, and packing such an A measured
    # 1.06-1.13x reading its tile rows across two lines each (bfloat16, M = N = 1024, K = 256 / 512, 1 and 2 threads)
    lines = b.or_(b.ptrtoint(base, I64), row_bytes)
    near = b.and_(near, b.icmp_unsigned("==", b.and_(lines, i64(63)), i64(0)))
    ptr, stride = in_place_or_packed(b, near, (base, row_bytes), lambda: (
        _pack_a(fl, n, a, sa, cvt, M=M, K=K, Mp=Mp, Kp=Kp, KS=KS, et=et), i64(Kp * es)))
    return ptr, stride, (Ahead(near, b.gep(ptr, [b.mul(stride, i64(M))], source_etype=I8), M * K * es),)


def _panels_b(fl, pan: Panels, cvt_of, Bp, din, et, G: int, *, K, N, Kp, KS) -> tuple[BTiles, tuple[Ahead, ...]]:
    """A "panels" B operand: its tiles in place when the load is in bounds and already holds whole
    k-steps in the compute type (the next K rows of each panel prefetched), else packed into Bp in W-column
    blocks of the compute type's G-groups (N = P*W: every block full; FP8 panels, grouped by 4, become
    bfloat16 pairs)."""
    b = fl.b
    W = pan.W
    lay = Vnni(Kp, N, G, W)
    packed = BTiles(Bp, W, i64(lay.block_base(1)), i64(W * G), i64(W * G))

    def pack():  # the packed (q_elems, base, blk)
        pack_vnni(fl, pan.load, cvt_of(pan.dtype), Bp, et, lay, K=K, N=N)
        return packed.q_elems, packed.base, packed.blk
    if pan.dtype != din or din not in (dt.bfloat16, dt.int8) or K % KS or pan.direct is None:
        pack()
        return packed, ()
    base, (ps, qs), ok = pan.resolve()
    q, ptr, blk = in_place_or_packed(b, ok, (qs, base, ps), pack)
    bt = BTiles(ptr, W, blk, q, q)
    es = 1 if et == I8 else 2
    nxt = b.gep(bt.base, [b.mul(q, i64(K // G))], source_etype=et)
    return bt, (Ahead(ok, nxt, K * W * es, N // W, b.mul(bt.blk, i64(es))),)


def _pack_a(fl, n, a, sa, cvt, *, M, K, Mp, Kp, KS, et):
    """A packed row-major Mp x Kp, zero-padded."""
    Ap = fl.alloca((Mp * Kp,), dt.int8 if et == I8 else dt.bfloat16, n.loc).ptr

    def pack(load):
        pack_rows(fl, load, cvt, Ap, et, rows=M, cols=K, dst_rs=Kp, w=KS, pad_to=Kp)
        zero_rows(fl, Ap, et, start=M, stop=Mp, row_len=Kp, w=KS)

    if sa.transposed:  # rows of the operand gathered through its lazy transpose
        pack(lambda b_, r, c0, w: a.emit(b_, [r], c0, w))
    else:
        with_loader(fl, sa, pack)
    return Ap


__all__ = ["lower_dot_amx", "amx_loops", "convert_block", "tile_row", "tile_config", "bf16_bits"]
