"""Packing of tl.dot operands into micro-panels (the "on-chip" level of the dot).

An operand is read through a `Source`: the tile as it is stored (`rows x cols`, row-major), and whether
the operand is that tile or its transpose (`x.T`, read from the untransposed tile so no element-wise
gather is needed). Two ways to read a row of a source:
- directly with plain vector loads, when its elements sit at `base + r*rs + c` (a materialized buffer,
  or a tile load from an array whose last dim is contiguous, taken only when the whole tile is in bounds:
  a runtime check per dot, so interior tiles skip every mask computation);
- through the tile's own `emit` (masked loads, fused elementwise chains): the general case.
Each pack is emitted once per way in use, the runtime check choosing between them.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable

from llvmlite import ir

from codegen.dtypes import DType
from codegen.ir import Op, Value, panel_group, walk
from codegen.llvm_util import I32, concat, for_range, i64, mem_type, nbytes, vec
from codegen.tiles import Buf, Lazy

Loader = Callable  # load(b, r, c0, w) -> <w x T>: elements c0 .. c0+w-1 of stored row r (i64 values)


class _Direct:
    """An operand with optional direct addressing: `direct` () -> (base pointer, strides, in-bounds (i1) or
    None = always), or None."""
    direct: Callable | None
    _resolved: tuple | None

    def resolve(self) -> tuple | None:
        """`direct()`, emitted once (at the first call's position, which must dominate later uses)."""
        if self.direct is not None and self._resolved is None:
            self._resolved = self.direct()
        return self._resolved


@dataclass
class Source(_Direct):
    tile: Buf | Lazy          # the stored tile (the operand, or the tile it is the transpose of)
    dtype: DType
    rows: int
    cols: int
    transposed: bool          # the operand is tile.T
    direct: Callable | None   # () -> (base pointer, row stride (i64), in-bounds (i1) or None = always)
    from_array: bool = False  # `direct` reads an array argument (not a local buffer)
    _resolved: tuple | None = None
    extent: Callable | None = None  # (from an array) () -> (i1, rows, columns in bounds (i64)): _extent


def _producers(fl) -> dict:
    p = getattr(fl, "_dot_producers", None)
    if p is None:
        p = {r: n for n in walk(fl.kernel.body) for r in n.results}
        fl._dot_producers = p
    return p


def _direct_buf(buf: Buf):
    return lambda: (buf.ptr, i64(buf.shape[-1]), None)


def _dims(fl, node) -> list[tuple]:
    """Each dim of a tile load: (start (i64), the array's size (i64), the slice's extent, None for a dropped index)."""
    acc, ki, out = node.arg, 0, []
    for d, kept in enumerate(acc.kept):
        out.append((fl.get(node.srcs[d]), fl.array_shape(acc.param, d), acc.extents[ki] if kept else None))
        ki += kept
    return out


def _within(b: ir.IRBuilder, s, size, extent: int | None) -> ir.Value:
    """i1: the index `s` (extent None), or the slice s : s + extent, lies in 0 .. size."""
    end = b.icmp_signed("<", s, size) if extent is None else b.icmp_signed("<=", b.add(s, i64(extent)), size)
    return b.and_(b.icmp_signed(">=", s, i64(0)), end)


def _all(b: ir.IRBuilder, conds: list) -> ir.Value:
    return functools.reduce(b.and_, conds)


def _direct_load(fl, node, lazy: Lazy, rank: int = 2):
    """Direct addressing of a `rank`-D tile load with a contiguous last dim, or None: () -> (base, row
    stride, in-bounds) for rank 2, (base, (stride of dim 0, stride of dim 1), in-bounds) for rank 3."""
    acc = node.arg
    param = fl.kernel.params[acc.param]
    if sum(acc.kept) != rank or not acc.kept[-1] or not param.unit_stride or param.ndim != len(acc.kept):
        return None
    if tuple(acc.extents) != tuple(lazy.shape):
        return None

    def direct():
        b = fl.b
        dims = _dims(fl, node)
        strides = [fl.array_stride(acc.param, d) for d in range(len(dims))]
        off = functools.reduce(b.add, [b.mul(s, stride) for (s, _, _), stride in zip(dims, strides)])
        base = b.gep(fl.array_ptr(acc.param), [off], source_etype=mem_type(param.dtype))
        kept = [stride for stride, k in zip(strides, acc.kept) if k]
        return base, (kept[0] if rank == 2 else tuple(kept[:-1])), _all(b, [_within(b, *x) for x in dims])
    return direct


def _extent(fl, node):
    """For a 2-D `_direct_load` tile: () -> (i1: every dropped index in bounds and both slices' starts at or past 0;
    i64, i64: how many of the tile's rows and columns lie in the array, 0 .. its extents). A tile wholly inside
    the array has the i1 and its whole extents; an edge tile past the array's last row or column, fewer."""
    def extent():
        b = fl.b
        dims = _dims(fl, node)
        kept = [x for x in dims if x[2] is not None]
        ok = _all(b, [_within(b, *x) for x in dims if x[2] is None]
                  + [b.icmp_signed(">=", s, i64(0)) for s, _, _ in kept])

        def inside(s, size, extent):
            left = b.sub(size, s)
            n = b.select(b.icmp_signed("<", left, i64(0)), i64(0), left)
            return b.select(b.icmp_signed(">", n, i64(extent)), i64(extent), n)
        return (ok, *(inside(*x) for x in kept))
    return extent


def source_of(fl, v: Value) -> Source:
    """How to read dot operand `v` (a 2-D tile)."""
    prod = _producers(fl).get(v)
    x = fl.tile(v)
    transposed = False
    if isinstance(x, Lazy) and prod is not None and prod.op == Op.TRANSPOSE and tuple(prod.arg) == (1, 0):
        v, transposed = prod.srcs[0], True
        x = fl.tile(v)
        prod = _producers(fl).get(v)
    rows, cols = v.shape
    direct, from_array, extent = None, False, None
    if isinstance(x, Buf) and tuple(x.shape) == (rows, cols):
        direct = _direct_buf(x)
    elif isinstance(x, Lazy) and prod is not None and prod.op == Op.LOAD:
        direct = _direct_load(fl, prod, x)
        from_array = direct is not None
        extent = _extent(fl, prod) if from_array else None
    return Source(x, v.dtype, rows, cols, transposed, direct, from_array, extent=extent)


@dataclass
class Panels(_Direct):
    """A B operand given as column panels of k-groups (tl.dot(..., b_layout="panels")): the 3-D tile
    t[p, q, G*c + g] = B[G*q + g, p*W + c]; `load` reads it as the plain K x N operand (in chunks that
    do not cross a panel: W is a multiple of 16, chunks start at multiples of their width), `direct`
    (when the tile is a load from an array) gives (base, (panel stride, group-row stride), in-bounds)."""
    tile: Buf | Lazy
    dtype: DType
    G: int
    W: int
    direct: Callable | None
    _resolved: tuple | None = None

    def load(self, b, k, c0, w: int) -> ir.Value:
        G, W = self.G, self.W
        p, c = b.udiv(c0, i64(W)), b.urem(c0, i64(W))
        if G == 1:
            return self.tile.emit(b, [p, k], c, w)
        x = self.tile.emit(b, [p, b.udiv(k, i64(G))], b.mul(c, i64(G)), G * w)
        lanes = [b.shuffle_vector(x, x, ir.Constant(vec(I32, w), [G * i + g for i in range(w)])) for g in range(G)]
        g = b.urem(k, i64(G))
        r = lanes[0]
        for j in range(1, G):
            r = b.select(b.icmp_unsigned("==", g, i64(j)), lanes[j], r)
        return r


def panels_of(fl, v: Value) -> Panels:
    """How to read the "panels" B operand `v` (P x K/G x G*W)."""
    prod = _producers(fl).get(v)
    x = fl.tile(v)
    G = panel_group(v.dtype)
    direct = None
    if isinstance(x, Lazy) and prod is not None and prod.op == Op.LOAD:
        direct = _direct_load(fl, prod, x, rank=3)
    return Panels(x, v.dtype, G, v.shape[2] // G, direct)


def with_loader(fl, src: Source, body: Callable[[Loader], None]) -> None:
    """Emit `body(load)` reading `src` directly where possible (behind a runtime in-bounds check), else
    through the tile's emit."""
    b = fl.b
    t = src.tile
    d = src.dtype

    def generic(b_, r, c0, w):
        return t.emit(b_, [r], c0, w)
    if src.direct is None:
        body(generic)
        return
    base, rs, ok = src.resolve()
    elem = mem_type(d)

    def fast(b_, r, c0, w):
        p = b_.gep(base, [b_.add(b_.mul(r, rs), c0)], source_etype=elem)
        return b_.load(p, typ=vec(elem, w), align=nbytes(elem))
    if ok is None or isinstance(t, Buf):
        body(fast)
        return
    with b.if_else(ok, likely=True) as (then, otherwise):
        with then:
            body(fast)
        with otherwise:
            body(generic)


def in_place_or_packed(b: ir.IRBuilder, ok: ir.Value, in_place: tuple[ir.Value, ...],
                       pack: Callable[[], tuple[ir.Value, ...]]) -> list[ir.Value]:
    """An operand read in place where `ok` holds, else packed: `pack()` is emitted in a branch taken when
    `ok` fails and returns the packed counterparts of the `in_place` values (which, computed before this
    call, dominate the branch). One phi per pair, in order."""
    pre = b.block
    with b.if_then(b.not_(ok), likely=False):
        packed = pack()
        done = b.block
    phis = []
    for x, y in zip(in_place, packed, strict=True):
        v = b.phi(x.type)
        v.add_incoming(x, pre)
        v.add_incoming(y, done)
        phis.append(v)
    return phis


# ---- vector helpers ------------------------------------------------------------------------------

def pad(b: ir.IRBuilder, x: ir.Value, width: int) -> ir.Value:
    """`x` (<w x T>) widened to <width x T> with zeros in the new lanes."""
    w = x.type.count
    if w == width:
        return x
    zero = ir.Constant(x.type, None)
    return b.shuffle_vector(x, zero, ir.Constant(vec(I32, width), [i if i < w else w for i in range(width)]))


def interleave(b: ir.IRBuilder, xs: list) -> ir.Value:
    """out[c*G + g] = xs[g][c] for G = len(xs) (a power of two) equal-width vectors."""
    G, n = len(xs), xs[0].type.count
    if G == 1:
        return xs[0]
    cat = concat(b, xs)
    return b.shuffle_vector(cat, ir.Constant(cat.type, ir.Undefined),
                            ir.Constant(vec(I32, G * n), [g * n + c for c in range(n) for g in range(G)]))


def transpose(b: ir.IRBuilder, rows: list) -> list:
    """The transpose of an n x n block held as n vectors of n lanes (n a power of two)."""
    n = len(rows)
    v = list(rows)
    s = n // 2
    while s >= 1:
        lo_idx = [j if not j & s else n + j - s for j in range(n)]
        hi_idx = [j + s if not j & s else n + j for j in range(n)]
        for i in range(n):
            if i & s:
                continue
            x, y = v[i], v[i + s]
            v[i] = b.shuffle_vector(x, y, ir.Constant(vec(I32, n), lo_idx))
            v[i + s] = b.shuffle_vector(x, y, ir.Constant(vec(I32, n), hi_idx))
        s //= 2
    return v


def _loop(b, n: int, name: str, body) -> None:
    """body(i) for i in range(n): straight-line for n == 1, else a loop."""
    if n == 1:
        body(i64(0))
    elif n > 1:
        with for_range(b, 0, n, 1, name) as i:
            body(i)


def store(b, x, ptr, t, off) -> None:
    b.store(x, b.gep(ptr, [off], source_etype=t), align=nbytes(t))


def zero_fill(b, ptr, t, start: int, count: int, width: int) -> None:
    """ptr[start : start+count] = 0 (count a multiple of width)."""
    z = ir.Constant(vec(t, width), None)
    _loop(b, count // width, "zf", lambda i: store(b, z, ptr, t, b.add(i64(start), b.mul(i, i64(width)))))


# ---- packs ---------------------------------------------------------------------------------------

def pack_rows(fl, load: Loader, cvt, dst, dst_t, *, rows: int, cols: int, dst_rs: int, w: int,
              pad_to: int | None = None) -> None:
    """dst[r*dst_rs + c] = cvt(src[r, c]) for r < rows, c < cols; with `pad_to`, each row's tail up to
    `pad_to` (a multiple of w) is zeroed, else only `cols` elements are written."""
    b = fl.b
    full, rem = divmod(cols, w)

    def row(r):
        base = b.mul(r, i64(dst_rs))

        def chunk(c):
            c0 = b.mul(c, i64(w))
            store(b, cvt(load(b, r, c0, w)), dst, dst_t, b.add(base, c0))
        _loop(b, full, "pc", chunk)
        if rem:
            x = cvt(load(b, r, i64(full * w), rem))
            store(b, pad(b, x, w) if pad_to else x, dst, dst_t, b.add(base, i64(full * w)))
        if pad_to:
            done = -(-cols // w) * w
            z = ir.Constant(vec(dst_t, w), None)
            for c0 in range(done, pad_to, w):
                store(b, z, dst, dst_t, b.add(base, i64(c0)))
    _loop(b, rows, "pr", row)


def pack_panel(fl, load: Loader, cvt, dst, dst_t, p, ncols: int, *, K: int, V: int, NV: int) -> None:
    """FMA B panel p (an i64 value) from a K x N source: dst[k*NR + c] = cvt(src[k, p*NR + c]) for c < ncols,
    the ragged panel's last vector zero-padded."""
    b = fl.b
    NR = NV * V
    with for_range(b, 0, K, 1, "pk") as k:
        base = b.mul(k, i64(NR))
        for v in range(-(-ncols // V)):
            w = min(V, ncols - v * V)
            x = pad(b, cvt(load(b, k, b.add(b.mul(p, i64(NR)), i64(v * V)), w)), V)
            store(b, x, dst, dst_t, b.add(base, i64(v * V)))


def pack_tile(fl, load: Loader, cvt, dst, dst_t, *, K: int, N: int, V: int, NV: int, stride: int) -> None:
    """All FMA B panels of a K x N source at once, row by row: dst[p*stride + k*NR + c] = cvt(src[k, p*NR + c])
    (stride >= K*NR), the ragged last panel's last vector zero-padded. Each source row is read as one run of N
    elements (a panel at a time reads one NR-column piece of every row)."""
    b = fl.b
    NR = NV * V
    full, rem = divmod(N, NR)

    def piece(k, p, ncols):
        """Row k's ncols columns of panel p (an i64 value) into the panel."""
        base = b.add(b.mul(p, i64(stride)), b.mul(k, i64(NR)))
        for v in range(-(-ncols // V)):
            w = min(V, ncols - v * V)
            x = pad(b, cvt(load(b, k, b.add(b.mul(p, i64(NR)), i64(v * V)), w)), V)
            store(b, x, dst, dst_t, b.add(base, i64(v * V)))

    def row(k):
        _loop(b, full, "tp", lambda p: piece(k, p, NR))
        if rem:
            piece(k, i64(full), rem)
    _loop(b, K, "tk", row)


def pack_panel_t(fl, load: Loader, cvt, dst, dst_t, p, ncols: int, *, K: int, V: int, NV: int) -> None:
    """FMA B panel p from an N x K source (B = src.T), through V x V register transposes."""
    b = fl.b
    NR = NV * V
    kfull, krem = divmod(K, V)
    zero = ir.Constant(vec(dst_t, V), None)

    def block(c0, nrows, k0, kw):
        """Rows n = p*NR + c0 + i (i < nrows) by columns k0 .. k0+kw (c0, k0 i64 values)."""
        n0 = b.add(b.mul(p, i64(NR)), c0)
        rows = [pad(b, cvt(load(b, b.add(n0, i64(i)), k0, kw)), V) if i < nrows else zero for i in range(V)]
        cols = transpose(b, rows)
        for j in range(kw):
            store(b, cols[j], dst, dst_t, b.add(b.mul(b.add(k0, i64(j)), i64(NR)), c0))

    def columns(c0, nrows):
        _loop(b, kfull, "pt", lambda kc: block(c0, nrows, b.mul(kc, i64(V)), V))
        if krem:
            block(c0, nrows, i64(kfull * V), krem)
    full, rem = divmod(ncols, V)
    _loop(b, full, "pn", lambda nb: columns(b.mul(nb, i64(V)), V))
    if rem:
        columns(i64(full * V), rem)


@dataclass(frozen=True)
class Vnni:
    """The AMX B layout: Kp/G groups of G consecutive k per 32-bit lane, in blocks of CB columns (one
    block is a contiguous Kp/G x width*G run, so the B tiles of one column block stream sequentially):
    element (k, n) at blk*(Kp/G)*CB*G + (k//G)*width*G + (n % CB)*G + k%G, blk = n // CB, width the
    block's column count (CB, or less for the last block). Np is N rounded up to 16."""
    Kp: int
    Np: int
    G: int
    CB: int = 32

    @property
    def blocks(self) -> int:
        return -(-self.Np // self.CB)

    def width(self, blk: int) -> int:
        return min(self.CB, self.Np - blk * self.CB)

    def block_base(self, blk) -> ir.Value:
        return blk * (self.Kp // self.G) * self.CB * self.G

    def offset(self, b, q, n0) -> ir.Value:
        """Element offset of group row q (i64) at column n0 (i64, a multiple of 16)."""
        blk = b.udiv(n0, i64(self.CB))
        within = b.urem(n0, i64(self.CB))
        last = self.blocks - 1
        w = i64(self.CB)
        if self.width(last) != self.CB:
            w = b.select(b.icmp_unsigned("==", blk, i64(last)), i64(self.width(last)), w)
        base = b.mul(blk, i64(self.block_base(1)))
        return b.add(base, b.add(b.mul(q, b.mul(w, i64(self.G))), b.mul(within, i64(self.G))))

    def zero_tail(self, b, dst, dst_t, done: int) -> None:
        """Zero the groups q >= done of every block."""
        for blk in range(self.blocks):
            w = self.width(blk) * self.G
            zero_fill(b, dst, dst_t, self.block_base(blk) + done * w, (self.Kp // self.G - done) * w, 16 * self.G)


def pack_vnni(fl, load: Loader, cvt, dst, dst_t, lay: Vnni, *, K: int, N: int) -> None:
    """B in the Vnni layout from a K x N source."""
    b = fl.b
    G, L = lay.G, 16
    full, rem = divmod(K, G)
    nfull, nrem = divmod(N, L)
    zero = ir.Constant(vec(dst_t, L), None)

    def group(q, kcount):
        def chunk(c0, w):
            xs = [pad(b, cvt(load(b, b.add(b.mul(q, i64(G)), i64(g)), c0, w)), L) if g < kcount else zero
                  for g in range(G)]
            store(b, interleave(b, xs), dst, dst_t, lay.offset(b, q, c0))
        _loop(b, nfull, "vc", lambda c: chunk(b.mul(c, i64(L)), L))
        if nrem:
            chunk(i64(nfull * L), nrem)
    _loop(b, full, "vg", lambda q: group(q, G))
    if rem:
        group(i64(full), rem)
    lay.zero_tail(b, dst, dst_t, -(-K // G))


def pack_vnni_t(fl, load: Loader, cvt, dst, dst_t, lay: Vnni, *, K: int, N: int) -> None:
    """B in the Vnni layout from an N x K source (B = src.T): each source row holds, per k-group, the G
    elements of one column as one 32-bit lane, so 16 x 16 blocks of 32-bit lanes are transposed."""
    b = fl.b
    G, L = lay.G, 16
    span = L * G                     # k values per block
    kfull, krem = divmod(K, span)
    nfull, nrem = divmod(N, L)
    zero = ir.Constant(vec(I32, L), None)

    def block(n0, nrows, k0, kw):
        rows = []
        for i in range(L):
            if i < nrows:
                x = pad(b, cvt(load(b, b.add(n0, i64(i)), k0, kw)), span)
                rows.append(b.bitcast(x, vec(I32, L)))
            else:
                rows.append(zero)
        cols = transpose(b, rows)
        q0 = b.udiv(k0, i64(G))
        for j in range(-(-kw // G)):
            store(b, b.bitcast(cols[j], vec(dst_t, span)), dst, dst_t, lay.offset(b, b.add(q0, i64(j)), n0))

    def nblock(n0, nrows):
        _loop(b, kfull, "tk", lambda kc: block(n0, nrows, b.mul(kc, i64(span)), span))
        if krem:
            block(n0, nrows, i64(kfull * span), krem)
    _loop(b, nfull, "tn", lambda nb: nblock(b.mul(nb, i64(L)), L))
    if nrem:
        nblock(i64(nfull * L), nrem)
    lay.zero_tail(b, dst, dst_t, -(-K // G))


def zero_rows(fl, dst, dst_t, *, start: int, stop: int, row_len: int, w: int) -> None:
    if stop > start:
        zero_fill(fl.b, dst, dst_t, start * row_len, (stop - start) * row_len, w)


__all__ = ["Source", "source_of", "Panels", "panels_of", "with_loader", "pack_rows", "pack_panel", "pack_tile",
           "pack_panel_t", "pack_vnni", "pack_vnni_t", "in_place_or_packed", "Vnni", "zero_rows", "pad", "interleave",
           "transpose"]
