"""The register-blocked micro-kernel of tl.dot on vector units (FMA, integer, AVX512-BF16).

C[M, N] (+)= A[M, K] @ B[K, N], the operands laid out for it:
- A: element (i, s) of k-step s at `a_ptr + i*a_rs + s*a_ks` (`a_elem` units): row-major A has a_ks = 1
  (a_rs = K packed, or the array's row stride when a tile is read in place), k-major (a transposed
  operand) a_rs = 1, a_ks = M.
- B: NR-column panels; in panel p, k-step s, vector v at `b_ptr + p*b_panel + s*b_step + v*b_vw`
  (`b_elem` units). A ragged last panel has its last vector zero-padded, so whole vectors are read.
  `b_panel` = 0 reuses one buffer that each panel is packed into just before it runs.
- C: a row-major buffer (row stride N) of float32 / int32.

For each NR-column panel and MR-row block the MR x NV accumulator vectors stay in registers across all
k-steps (a do-while loop unrolled by U, phi-carried accumulators), each k-step broadcasting one A value per
row against NV vectors of B. Partial row blocks (M % MR) and column panels (N % NR) are separate, smaller
instances of the same code; partial C vectors are read and written with constant masks.

A few-row dot reads B in place instead: `stream_loops` (the same micro-kernel over B's own rows, a narrow B
widened in registers: `Scheme.widen`) and, for a B given as its transpose W, `rowdot_loops` (dot products along
W's rows).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Callable

from llvmlite import ir

from codegen.llvm_util import (
    I1,
    I64,
    fmuladd,
    for_range,
    i64,
    iota,
    masked_load,
    masked_store,
    nbytes,
    prefetch,
    splat,
    vec,
)
from codegen.scalar_ops import hreduce

# Where block_loops reads B's panels in place (a "panels" operand, e.g. ops.matmul's B packed once per call), the
# next panel's rows are prefetched with this locality (2: into L2) while the row blocks of the current one run, the
# first line of a k-step's row per prefetch (all of it for AVX2's 16-float panels), spread evenly over them. One-off
# on AMD Zen 3 (float32 n = 2048, 16-float panels, 1 thread, medians of 15 interleaved rounds against
# matmul_kernel's per-tile packing): no prefetch 1.02x, into L2 1.07x, into L1 (3) 1.01x.
PANEL_AHEAD = 2
AHEAD_MAX = 8  # prefetches before a row block at most (a short tile's few row blocks prefetch the panel's first rows)
TILE_AHEAD_MAX = 32  # block_loops' tile_ahead: lines prefetched before a block at most


@dataclass(frozen=True)
class Scheme:
    """What one k-step of the micro-kernel does."""
    V: int                 # lanes of an accumulator vector
    acc_t: ir.Type         # accumulator element type (float / i32)
    a_elem: ir.Type        # what one A load reads (float, i32 = a bf16 pair, ...)
    b_elem: ir.Type        # B panel element type
    b_vw: int              # B elements per vector (V for FMA, 2V for a bf16 pair vector)
    mac: Callable          # mac(b, acc, a_scalar, b_vector) -> acc
    b_align: int           # alignment of B vector loads (bytes)
    widen: Callable | None = None  # widen(b, loaded B vector) -> acc_t vector (a B of narrower elements)
    widen64: Callable | None = None  # widen64(b, 64 loaded B elements) -> their 64 // V acc_t vectors (or None)


def fma_scheme(V: int, acc_t: ir.Type, b_elem: ir.Type | None = None, widen: Callable | None = None,
               widen64: Callable | None = None) -> Scheme:
    """The FMA (float) or multiply-add (int) k-step; `b_elem` and `widen`: B read as vectors of `b_elem` elements,
    widened in registers (a narrow B streamed in place); `widen64`: the same for 64 consecutive elements at once,
    which the loops use where whole groups of 64 // V vectors are read unmasked."""
    if isinstance(acc_t, ir.FloatType):
        def mac(b, acc, a, bv):
            return fmuladd(b, splat(b, a, V), bv, acc)
    else:
        def mac(b, acc, a, bv):
            return b.add(b.mul(splat(b, a, V), bv), acc)
    if widen is None:
        return Scheme(V, acc_t, acc_t, acc_t, V, mac, min(64, V * 4))
    return Scheme(V, acc_t, acc_t, b_elem, V, mac, nbytes(b_elem), widen, widen64)


def _lane_mask(V: int, w: int) -> ir.Constant:
    return ir.Constant(vec(I1, V), [1 if i < w else 0 for i in range(V)])


def _load(b, ptr, t: ir.VectorType, mask, align: int):
    """A vector of type `t`; under `mask` (i1 lanes, or None for all) the other lanes read as zeros and touch no
    memory."""
    if mask is None:
        return b.load(ptr, typ=t, align=align)
    return masked_load(b, ptr, mask, ir.Constant(t, None), align)


def _c_load(b, ptr, V, w, t):
    return _load(b, ptr, vec(t, V), None if w == V else _lane_mask(V, w), 4)


def _c_store(b, val, ptr, V, w):
    if w == V:
        b.store(val, ptr, align=4)
    else:
        masked_store(b, val, ptr, _lane_mask(V, w), 4)


def micro_kernel(b: ir.IRBuilder, s: Scheme, *, steps: int, unroll: int, mr: int, widths: list[int],
                 a_base: ir.Value, a_rs, a_ks: int, b_base: ir.Value, b_step,
                 c_base: ir.Value, c_rs: int, init_zero: bool, b_masks: list | None = None) -> None:
    """One MR x NR block: C[0:mr, 0:sum(widths)] (+)= A[0:mr, :] @ Bpanel, pointers already offset.
    `a_rs` and `b_step` are ints or i64 values (a B panel read in place from an array). `b_masks`: per B
    vector, None (a whole vector) or the i1 lanes to read (the others read as zeros and touch no memory)."""
    V, nv = s.V, len(widths)
    vt = vec(s.acc_t, V)
    b_align = s.b_align if isinstance(b_step, int) else nbytes(s.b_elem)
    # one pointer per A row, loop-invariant: each broadcast is then `[row_r + k*size]`, no address
    # arithmetic on the FMA ports inside the loop
    a_rows = [b.gep(a_base, [_scaled(b, a_rs, r)], source_etype=s.a_elem) if r else a_base for r in range(mr)]
    cptrs = [[b.gep(c_base, [i64(r * c_rs + v * V)], source_etype=s.acc_t) for v in range(nv)] for r in range(mr)]
    if init_zero:
        accs = [ir.Constant(vt, None)] * (mr * nv)
    else:
        accs = [_c_load(b, cptrs[r][v], V, widths[v], s.acc_t) for r in range(mr) for v in range(nv)]

    def _b_load(ptr, mask):
        x = _load(b, ptr, vec(s.b_elem, s.b_vw), mask, b_align if mask is None else nbytes(s.b_elem))
        return x if s.widen is None else s.widen(b, x)

    group = 64 // s.b_vw if s.widen64 is not None and not any(b_masks or ()) else 0  # B vectors widened at once

    def step(k, accs, u):
        """accs after k-step `k + u` (k an i64 value)."""
        kk = b.add(k, i64(u)) if u else k
        bo = b.mul(kk, i64(b_step) if isinstance(b_step, int) else b_step)
        ptrs = [b.gep(b_base, [b.add(bo, i64(v * s.b_vw))], source_etype=s.b_elem) for v in range(nv)]
        ao = b.mul(kk, i64(a_ks)) if a_ks != 1 else kk

        def a_row(r):
            return b.load(b.gep(a_rows[r], [ao], source_etype=s.a_elem), typ=s.a_elem, align=nbytes(s.a_elem))
        out = list(accs)
        if group and nv >= group:  # each group used right after it is widened (few registers live), then the rest
            avs = [a_row(r) for r in range(mr)]
            for v0 in range(0, nv, group):
                bvs = (s.widen64(b, _load(b, ptrs[v0], vec(s.b_elem, 64), None, nbytes(s.b_elem))) if v0 + group <= nv
                       else [_b_load(ptrs[v], b_masks[v] if b_masks else None) for v in range(v0, nv)])
                for r in range(mr):
                    for v, x in enumerate(bvs, v0):
                        out[r * nv + v] = s.mac(b, out[r * nv + v], avs[r], x)
            return out
        bvs = [_b_load(ptrs[v], b_masks[v] if b_masks else None) for v in range(nv)]
        for r in range(mr):
            a = a_row(r)
            for v in range(nv):
                out[r * nv + v] = s.mac(b, out[r * nv + v], a, bvs[v])
        return out

    def unrolled(k, accs):
        for u in range(unroll):
            accs = step(k, accs, u)
        return accs

    full = steps // unroll
    accs = _loop_carried(b, i64(0), full, unroll, accs, unrolled)
    for u in range(steps - full * unroll):
        accs = step(i64(full * unroll), accs, u)
    for r in range(mr):
        for v in range(nv):
            _c_store(b, accs[r * nv + v], cptrs[r][v], V, widths[v])


def _loop_carried(b, start, count: int, stride: int, values: list, body) -> list:
    """A do-while loop of `count` iterations, i = start, start+stride, ...; `body(i, values) -> values`
    (vectors carried in registers through phis). Returns the values after the loop."""
    if count <= 0:
        return values
    if count == 1:
        return body(start, values)
    pre = b.block
    loop = b.append_basic_block("uk.loop")
    done = b.append_basic_block("uk.done")
    b.branch(loop)
    b.position_at_end(loop)
    i = b.phi(I64, name="uk.k")
    i.add_incoming(start, pre)
    phis = []
    for v0 in values:
        p = b.phi(v0.type)
        p.add_incoming(v0, pre)
        phis.append(p)
    cur = body(i, phis)
    nxt = b.add(i, i64(stride))
    i.add_incoming(nxt, b.block)
    for p, c in zip(phis, cur):
        p.add_incoming(c, b.block)
    b.cbranch(b.icmp_signed("<", nxt, b.add(start, i64(count * stride))), loop, done)
    b.position_at_end(done)
    return cur


def _scaled(b, x, k: int):
    """x * k for an int or an i64 value x."""
    return i64(x * k) if isinstance(x, int) else b.mul(x, i64(k))


def block_loops(b: ir.IRBuilder, s: Scheme, *, M: int, N: int, steps: int, MR: int, NV: int, unroll: int,
                a_ptr: ir.Value, a_rs, a_ks: int, b_ptr: ir.Value, b_step: int,
                c_ptr: ir.Value, init_zero: bool, b_panel: int | None = None,
                pack_panel: Callable | None = None, panel_ahead: Callable | None = None,
                tile_ahead: tuple[int, Callable] | None = None, a_panel: ir.Value | None = None) -> None:
    """All MR x NR blocks of C[M, N]: panels outer (the B panel stays in L1), row blocks inner.
    B panel p starts `b_panel` elements after panel p-1 (default steps*b_step; 0: one panel buffer
    reused). `pack_panel(p, ncols)` is emitted before the row blocks of each panel; it may return the
    (base, k step) the panel is to be read from instead. `panel_ahead(p)`: where the panel after p lies (read in
    place with p's k step), prefetched into L2 a few lines before each of p's whole row blocks (PANEL_AHEAD).
    `tile_ahead` (lines, line(l) -> pointer): cache lines prefetched into L2 while the blocks run, shared out
    in order over the whole MR x NR blocks, a few before each (at most TILE_AHEAD_MAX). `a_panel` (i64): A given as
    panels of MR rows this many elements apart (k-major within: a_rs 1, a_ks MR) instead of rows a_rs apart."""
    V = s.V
    NR = NV * V
    npan_full, nrem = divmod(N, NR)
    mfull, mrem = divmod(M, MR)
    panel_elems = steps * b_step if b_panel is None else b_panel
    tile_share = 0  # tile_ahead's lines before each whole block
    if tile_ahead is not None and npan_full * mfull:
        lines, line = tile_ahead
        tile_share = min(TILE_AHEAD_MAX, -(-lines // (npan_full * mfull)))

    def panel(p, widths):
        bpan = b.gep(b_ptr, [b.mul(p, i64(panel_elems))], source_etype=s.b_elem)
        step = b_step
        if pack_panel is not None:
            bpan, step = pack_panel(p, sum(widths)) or (bpan, step)
        ncol0 = b.mul(p, i64(NR))
        ahead = panel_ahead(p) if panel_ahead is not None and mfull else None
        per_block = min(AHEAD_MAX, -(-steps // max(1, mfull)))  # the next panel's k-steps prefetched per row block

        def rows(i0, mr):
            a_off = (b.mul(i0, a_rs if not isinstance(a_rs, int) else i64(a_rs)) if a_panel is None
                     else b.mul(b.udiv(i0, i64(MR)), a_panel))
            a_base = b.gep(a_ptr, [a_off], source_etype=s.a_elem)
            c_base = b.gep(c_ptr, [b.add(b.mul(i0, i64(N)), ncol0)], source_etype=s.acc_t)
            if ahead is not None and mr == MR:
                first = b.mul(b.udiv(i0, i64(MR)), _scaled(b, step, per_block))  # this block's first k-step's row
                for j in range(per_block):
                    row = b.gep(ahead, [b.add(first, _scaled(b, step, j))], source_etype=s.b_elem)
                    prefetch(b, row, PANEL_AHEAD)
            if tile_share and mr == MR and sum(widths) == NR:  # (a whole block: block p * mfull + i0 / MR)
                first = b.mul(b.add(b.mul(p, i64(mfull)), b.udiv(i0, i64(MR))), i64(tile_share))
                for j in range(tile_share):
                    prefetch(b, line(b.add(first, i64(j))), PANEL_AHEAD)
            micro_kernel(b, s, steps=steps, unroll=unroll, mr=mr, widths=widths, a_base=a_base, a_rs=a_rs,
                         a_ks=a_ks, b_base=bpan, b_step=step, c_base=c_base, c_rs=N, init_zero=init_zero)
        if mfull == 1:
            rows(i64(0), MR)
        elif mfull > 1:
            with for_range(b, 0, mfull * MR, MR, "uk.i") as i0:
                rows(i0, MR)
        if mrem:
            rows(i64(mfull * MR), mrem)

    if npan_full == 1:
        panel(i64(0), [V] * NV)
    elif npan_full > 1:
        with for_range(b, 0, npan_full, 1, "uk.p") as p:
            panel(p, [V] * NV)
    if nrem:
        nv = -(-nrem // V)
        panel(i64(npan_full), [min(V, nrem - v * V) for v in range(nv)])


def stream_loops(b: ir.IRBuilder, s: Scheme, *, M: int, N: int, steps: int, chunk: int, NV: int, unroll: int,
                 a_ptr: ir.Value, a_rs, a_ks: int, b_ptr: ir.Value, b_rs: ir.Value, c_ptr: ir.Value,
                 init_zero: bool, cols: ir.Value, MR: int) -> None:
    """C[M, N] (+)= A @ B for a few rows (GEMV-like), B read in place (k-step stride `b_rs`). More than `MR` rows
    go in near-equal groups of at most MR within each chunk: the first streams the chunk from memory, the others
    read it again from cache.

    Every B element is used once (once per group), so the dot is a stream of B from memory. The k-steps go in chunks
    of `chunk` outermost and the NR-column panels inner: B is read as `chunk` long runs along whole rows (what
    the hardware prefetchers follow, a few pages at a time) rather than one short run per row and panel; C
    (a few rows) stays in cache between chunks. The ragged last panel streams too, its last vector read under a
    lane mask. `cols` (i64): how many of B's columns lie in its array (`dot_pack._extent`); where that is fewer
    than N (an edge tile), the panels past it read each vector under the mask of its columns before `cols` (the
    others read as zeros and touch no memory)."""
    V = s.V
    NR = NV * V
    npan, nrem = divmod(N, NR)
    lanes = iota(I64, V)

    def masks(col, widths: list[int], edge: bool) -> list | None:
        """The B vectors' lane masks in the panel at column `col` (None: every lane of every vector)."""
        if edge:
            return [b.icmp_signed("<", b.add(splat(b, b.add(col, i64(v * V)), V), lanes), splat(b, cols, V))
                    for v in range(len(widths))]
        if widths[-1] == V:
            return None
        return [None] * (len(widths) - 1) + [_lane_mask(V, widths[-1])]

    ngroups = -(-M // MR)
    bounds = [g * M // ngroups for g in range(ngroups + 1)]
    groups = [(lo, hi - lo) for lo, hi in itertools.pairwise(bounds)]  # (first row, rows)

    def run(k0: int | ir.Value, ksteps: int, zero: bool, edge: bool) -> None:
        for r0, mr in groups:
            group(k0, ksteps, zero, edge, r0, mr)

    def group(k0: int | ir.Value, ksteps: int, zero: bool, edge: bool, r0: int, mr: int) -> None:
        k0 = i64(k0) if isinstance(k0, int) else k0
        a_base = b.gep(a_ptr, [b.add(b.mul(k0, i64(a_ks)), _scaled(b, a_rs, r0))], source_etype=s.a_elem)

        def panel(p, widths, masked: bool):
            col = b.mul(p, i64(NR))
            micro_kernel(b, s, steps=ksteps, unroll=unroll, mr=mr, widths=widths, a_base=a_base, a_rs=a_rs,
                         a_ks=a_ks, b_base=b.gep(b_ptr, [b.add(b.mul(k0, b_rs), col)], source_etype=s.b_elem),
                         b_step=b_rs, c_base=b.gep(c_ptr, [b.add(col, i64(r0 * N))], source_etype=s.acc_t), c_rs=N,
                         init_zero=zero, b_masks=masks(col, widths, masked))
        if edge:  # the panels wholly in the array first, unmasked; then those past its last column
            inside = b.udiv(cols, i64(NR))
            with for_range(b, 0, inside, 1, "st.p") as p:
                panel(p, [V] * NV, False)
            with for_range(b, inside, npan, 1, "st.e") as p:
                panel(p, [V] * NV, True)
        elif npan == 1:
            panel(i64(0), [V] * NV, False)
        elif npan > 1:
            with for_range(b, 0, npan, 1, "st.p") as p:
                panel(p, [V] * NV, False)
        if nrem:
            panel(i64(npan), [min(V, nrem - v * V) for v in range(-(-nrem // V))], edge)

    def chunks(edge: bool) -> None:
        full, rem = divmod(steps, chunk)
        if full:
            run(0, chunk, init_zero, edge)
        if full > 1:
            with for_range(b, chunk, full * chunk, chunk, "st.k") as k0:
                run(k0, chunk, False, edge)
        if rem:
            run(full * chunk, rem, init_zero and not full, edge)
    # every column in the array: whole vectors (a mask on every B load measured 0.65x OpenBLAS at M = 1,
    # K = N = 4096 on 1 thread, against 0.83x without, in runs minutes apart)
    with b.if_else(b.icmp_signed(">=", cols, i64(N)), likely=True) as (whole, edge):
        with whole:
            chunks(False)
        with edge:
            chunks(True)


ROWDOT_ACCS = 16  # accumulator vectors of a few-row dot with a transposed B (rows of W per block: this // M, at most 8)
# Lane counts at which that dot prefetches the next block's rows of W as it goes: AVX-512 (the Xeon). On AVX2 (AMD Zen
# 3), one-off, M = 1, K = 4096, N = 4096 / 11008, 1 / 2 threads, runs with and without alternating: 0.70-0.84x NumPy
# with the prefetches (0.75-0.78x once per 64 bytes instead of per vector), 0.95-1.03x without.
ROWDOT_AHEAD_LANES = (16,)


def rowdot_loops(b: ir.IRBuilder, s: Scheme, *, M: int, N: int, K: int, a_ptr: ir.Value, a_rs, w_ptr: ir.Value,
                 w_rs: ir.Value, c_ptr: ir.Value, init_zero: bool, rows: ir.Value, cols: ir.Value) -> None:
    """C[M, N] (+)= A @ W.T for a few rows (M <= MR, GEMV-like) of a B given as its transpose W (N x K, row-major,
    read in place: rows `w_rs` elements apart, the `s.b_elem` elements widened by `s.widen`): each C element is the
    dot product of a row of A (row-major, rows `a_rs` apart) and a row of W, both contiguous, so W streams row by
    row. Blocks of R rows of W share each A vector; each row's V-lane partial sums are added up at its end.
    `rows`, `cols` (i64): how many rows and columns of W lie in its array. Rows past it are not read (their C
    left as it is, zero when `init_zero`); columns past it read as zeros, under lane masks that touch no memory."""
    V = s.V
    vt = vec(s.acc_t, V)
    R = max(1, min(8, ROWDOT_ACCS // M))
    lanes = iota(I64, V)
    floats = isinstance(s.acc_t, ir.FloatType)
    add = ir.IRBuilder.fadd if floats else ir.IRBuilder.add
    a_rows = [b.gep(a_ptr, [_scaled(b, a_rs, m)], source_etype=s.a_elem) for m in range(M)]

    def mac(acc, x, y):
        return fmuladd(b, x, y, acc) if floats else b.add(b.mul(x, y), acc)

    def load(ptr, elem, mask):
        return _load(b, ptr, vec(elem, V), mask, nbytes(elem))

    def load64(ptr):
        return _load(b, ptr, vec(s.b_elem, 64), None, nbytes(s.b_elem))

    def block(n0, r: int, edge: bool) -> None:
        """C[:, n0 : n0 + r] from rows n0 .. n0 + r - 1 of W; at ROWDOT_AHEAD_LANES the same columns of the next
        block's rows prefetched meanwhile (each row of W is a short run of its own, which the Xeon's hardware
        prefetchers pick up late)."""
        w_rows = [b.gep(w_ptr, [b.mul(b.add(n0, i64(j)), w_rs)], source_etype=s.b_elem) for j in range(r)]
        next_rows = [b.gep(w, [b.mul(w_rs, i64(r))], source_etype=s.b_elem) for w in w_rows]

        def ahead(k):
            for w in next_rows if V in ROWDOT_AHEAD_LANES else ():
                prefetch(b, b.gep(w, [k], source_etype=s.b_elem))

        def step(k, accs, mask):
            ahead(k)
            ws = [load(b.gep(w, [k], source_etype=s.b_elem), s.b_elem, mask) for w in w_rows]
            ws = ws if s.widen is None else [s.widen(b, w) for w in ws]
            out = list(accs)
            for m in range(M):
                x = load(b.gep(a_rows[m], [k], source_etype=s.a_elem), s.a_elem, mask)
                for j in range(r):
                    out[m * r + j] = mac(out[m * r + j], x, ws[j])
            return out

        def step64(k, accs):  # 64 elements of each row widened at once (s.widen64; M == 1), one row after another
            ahead(k)
            xs = [load(b.gep(a_rows[0], [b.add(k, i64(u * V))], source_etype=s.a_elem), s.a_elem, None)
                  for u in range(64 // V)]
            out = list(accs)
            for j, w in enumerate(w_rows):
                for x, wv in zip(xs, s.widen64(b, load64(b.gep(w, [k], source_etype=s.b_elem)))):
                    out[j] = mac(out[j], x, wv)
            return out
        accs = [ir.Constant(vt, None)] * (M * r)
        if edge:  # every vector under the mask of the columns before `cols`
            accs = _loop_carried(b, i64(0), -(-K // V), V, accs, lambda k, a: step(k, a, b.icmp_signed(
                "<", b.add(splat(b, k, V), lanes), splat(b, cols, V))))
        else:
            done = K - K % 64 if s.widen64 is not None and M == 1 else 0  # (more rows of A: too many registers)
            if done:
                accs = _loop_carried(b, i64(0), done // 64, 64, accs, step64)
            accs = _loop_carried(b, i64(done), (K - done) // V, V, accs, lambda k, a: step(k, a, None))
            if K % V:
                accs = step(i64(K - K % V), accs, _lane_mask(V, K % V))
        for m in range(M):
            for j in range(r):
                total = hreduce(b, accs[m * r + j], add)
                p = b.gep(c_ptr, [b.add(i64(m * N + j), n0)], source_etype=s.acc_t)
                b.store(total if init_zero else add(b, b.load(p, typ=s.acc_t), total), p)

    def blocks(edge: bool) -> None:
        full = b.mul(b.udiv(rows, i64(R)), i64(R))
        with for_range(b, 0, full, R, "rd.n") as n0:
            block(n0, R, edge)
        with for_range(b, full, rows, 1, "rd.r") as n0:
            block(n0, 1, edge)
    with b.if_else(b.icmp_signed(">=", cols, i64(K)), likely=True) as (whole, edge):
        with whole:
            blocks(False)
        with edge:
            blocks(True)
    if init_zero:  # C past the array's rows: zeros, as the other paths leave it
        with for_range(b, rows, N, 1, "rd.z") as n:
            for m in range(M):
                b.store(ir.Constant(s.acc_t, None), b.gep(c_ptr, [b.add(i64(m * N), n)], source_etype=s.acc_t))


__all__ = ["Scheme", "fma_scheme", "micro_kernel", "block_loops", "stream_loops", "rowdot_loops"]
