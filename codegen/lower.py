"""Tile IR -> LLVM IR, built with llvmlite's IRBuilder.

The kernel becomes `void entry(ptr ptrs, ptr ints, ptr floats, ptr parallel_for)`: array data pointers,
then per array its shape and element strides (then int scalars) in `ints`, float scalars in `floats`.
Each GRID region is outlined into `void body(ptr ctx, i64 begin, i64 end)` handed to the runtime's
`parallel_for`. Tiles are lowered as `Buf`/`Lazy` (tiles.py): elementwise chains fuse into their
consumer; values used twice, used inside a nested loop, reduced or multiplied are materialized.
"""
from __future__ import annotations

import functools
import math
from collections import Counter
from dataclasses import dataclass

from llvmlite import ir

from codegen import convert
from codegen import dtypes as dt
from codegen.dot import choose_path, lower_dot
from codegen.dot_amx import tile_row
from codegen.dtypes import DType
from codegen.ir import (BINARY, COMPARE, Block, CompileError, Kernel, Node, Op, Value, walk)
from codegen.llvm_util import (F32, I32, I64, PTR, alloca, const_bits, nbytes, for_range, i64, iota, masked_gather,
                               masked_load, masked_scatter, masked_store, mem_type, reg_type, splat, vec,
                               from_mem, to_mem)
from codegen.scalar_ops import arith, clamp_lanes, combiner, gather_lanes, hreduce, identity, split_nan
from codegen.tiles import Buf, Lazy, interleave_tiles

STACK_LIMIT = 2 << 20  # bytes of tile buffers per function (worker threads have >= 8 MiB stacks)
ROW_GROUP = 4  # rows a row reduction (last axis) reduces together, interleaved
ROW_ACCS = 2   # vector accumulators per row of a row reduction


# A k loop's first DOT starts from zero (no zeroed accumulator to load) only in loops of at most this many
# iterations. One-off A/B (bfloat16 inputs, 1 and 2 threads, M = N = 1024): with the first dot from zero in every
# loop, K = 2048 measured 0.91-0.95x with a bfloat16 `c` (float32 `c`: 0.96-1.04x, noise level); K = 256 / 512
# (one, two iterations) keep their 1.35-1.41x / 1.06-1.09x (bfloat16 `c`, where the last dot converts into it).
FRESH_TRIPS = 2


@dataclass(frozen=True)
class StoreTarget:
    """Where a k loop's result is stored (FunctionLowering._store_targets)."""
    ptr: ir.Value         # the tile's first element in the array
    row_stride: ir.Value  # elements between its rows
    inside: ir.Value      # i1: the tile lies wholly inside the array
    store: Node           # the STORE after the loop that copies the result there otherwise
    done: ir.Value        # i1 (after the loop): the loop's last DOT stored it (inside, and the loop ran)
    cast: Node | None     # the CAST to the array's dtype between the loop and the STORE (a bfloat16 `c`), or None


@dataclass(frozen=True)
class Layout:
    """Where each parameter sits in the launch arrays."""
    ptr: dict[int, int]     # array param -> slot in ptrs
    ints: dict[int, int]    # array param -> offset of its shape in ints (strides follow); int scalar -> slot
    floats: dict[int, int]  # float scalar -> slot

    @staticmethod
    def of(kernel: Kernel) -> Layout:
        ptr, ints, floats, n_ptr, n_int, n_float = {}, {}, {}, 0, 0, 0
        for i, p in enumerate(kernel.params):
            if p.kind == "array":
                ptr[i], ints[i] = n_ptr, n_int
                n_ptr, n_int = n_ptr + 1, n_int + 2 * p.ndim
            elif p.dtype.is_float:
                floats[i], n_float = n_float, n_float + 1
            else:
                ints[i], n_int = n_int, n_int + 1
        return Layout(ptr, ints, floats)


def free_values(block: Block) -> list[Value]:
    """Values used inside `block` (or its regions) but defined outside it, in first-use order."""
    free: dict[Value, None] = {}

    def visit(b: Block, defined: set) -> None:
        defined = defined | set(b.args)
        for n in b.nodes:
            for v in n.srcs:
                if v not in defined:
                    free.setdefault(v, None)
            for r in n.regions:
                visit(r, defined)
            defined |= set(n.results)
        for v in b.yields:
            if v not in defined:
                free.setdefault(v, None)
    visit(block, set())
    return list(free)


def _accesses(nodes, param: int) -> bool:
    """Whether any of `nodes` (or their regions) loads from or stores into array parameter `param`."""
    return any(m.op in (Op.LOAD, Op.STORE) and m.arg.param == param for m in walk(Block((), tuple(nodes))))


def _corner(b: ir.IRBuilder, base: ir.Value, dims, elem: ir.Type) -> ir.Value:
    """The address of a tile's first element from `_addressing`'s base and dims."""
    return b.gep(base, [_dot(b, [(s, stride) for s, stride, _ in dims])], source_etype=elem)


def _dot(b: ir.IRBuilder, terms) -> ir.Value:
    """sum(x * y) of (i64, i64) pairs."""
    out = i64(0)
    for x, y in terms:
        out = b.add(out, x if isinstance(y, ir.Constant) and y.constant == 1 else b.mul(x, y))
    return out


class FunctionLowering:
    """Lowers one LLVM function: the kernel entry, or one outlined grid body."""

    def __init__(self, module: ir.Module, kernel: Kernel, layout: Layout, fn: ir.Function, vlen: int,
                 uses: Counter, options: dict):
        self.module, self.kernel, self.layout, self.fn, self.vlen = module, kernel, layout, fn, vlen
        self.uses, self.options = uses, options
        self.entry = fn.append_basic_block("entry")
        start = fn.append_basic_block("start")
        self.b = ir.IRBuilder(self.entry)
        self.b.branch(start)
        self.b.position_at_end(start)
        self.env: dict[Value, object] = {}
        self.stack = 0
        self.zeros: set[Value] = set()  # tile constants that are all zeros
        self.fresh: dict[Value, ir.Value] = {}  # DOT accumulators -> i1: "holds no value yet, start from zero"
        # tiles -> (the STORE of them, or of their only CAST; the nodes between the tile and the STORE; the CAST or None)
        self.result_stores: dict[Value, tuple] = {}
        self.loads: dict[Value, frozenset[Node]] = {}  # lazy tiles -> the LOAD nodes they are computed from
        self.whole_loads: dict[Node, tuple] = {}  # plain-slice contiguous LOADs -> their addressing (_addressing)
        self.plain_loads: dict[Node, ir.Value] = {}  # LOADs wholly inside their array in the code being emitted -> corner
        self.direct: dict[Value, tuple[StoreTarget, ir.Value]] = {}  # DOT accumulators -> (target, i1 "last")
        self.stored: dict[Node, ir.Value] = {}  # STORE nodes -> i1: "a loop's last DOT already stored the value"
        self.scaled: dict[Node, tuple[Node, Node, Value]] = {}  # ADD -> (DOT, MUL, acc): see _scaled_accumulations
        self.deferred: set[Node] = set()  # the DOT and MUL nodes of those, lowered at their ADD
        self.argv: tuple[ir.Value, ir.Value, ir.Value, ir.Value] | None = None

    # ---- helpers ------------------------------------------------------------------------------
    def alloca(self, shape: tuple[int, ...], d: DType, loc=None, *, counted: bool = True) -> Buf:
        """A 64-byte-aligned stack buffer, `counted` against STACK_LIMIT (the tile sizes' budget; a few KiB of
        fixed scratch need not be: the worker threads' stacks are far larger)."""
        n = math.prod(shape)
        t = mem_type(d)
        self.stack += n * nbytes(t) if counted else 0
        if self.stack > STACK_LIMIT:
            raise CompileError(f"the tiles of this kernel need more than {STACK_LIMIT >> 20} MiB of on-chip "
                               f"buffers (the last one is {d.name}{list(shape)}); use smaller tile sizes", loc)
        with self.b.goto_block(self.entry):
            ptr = alloca(self.b, ir.ArrayType(t, n), 64)
        return Buf(ptr, shape, d)

    def room(self) -> int:
        """Bytes of STACK_LIMIT not yet taken by counted buffers."""
        return STACK_LIMIT - self.stack

    def _argv_load(self, which: int, slot: int, t: ir.Type) -> ir.Value:
        with self.b.goto_block(self.entry):
            p = self.b.gep(self.argv[which], [i64(slot)], source_etype=t)
            return self.b.load(p, typ=t)

    def array_ptr(self, param: int) -> ir.Value:
        return self._argv_load(0, self.layout.ptr[param], PTR)

    def array_shape(self, param: int, d: int) -> ir.Value:
        return self._argv_load(1, self.layout.ints[param] + d, I64)

    def array_stride(self, param: int, d: int) -> ir.Value:
        """The element stride of dim d (the launcher passes byte strides, multiples of the itemsize)."""
        p = self.kernel.params[param]
        if d == p.ndim - 1 and p.unit_stride:
            return i64(1)
        byte_stride = self._argv_load(1, self.layout.ints[param] + p.ndim + d, I64)
        shift = p.dtype.itemsize.bit_length() - 1
        if not shift:
            return byte_stride
        with self.b.goto_block(self.entry):
            return self.b.ashr(byte_stride, i64(shift))

    def get(self, v: Value):
        return self.env[v]

    def tile(self, v: Value):
        """The Buf/Lazy of a tile value; a scalar is wrapped as a splatting Lazy."""
        x = self.env[v]
        if isinstance(x, (Buf, Lazy)):
            return x
        return Lazy(lambda b, idx, col, w: splat(b, x, w), (), v.dtype, cheap=True)

    def materialize(self, t, d: DType | None = None, into: Buf | None = None, loc=None) -> Buf:
        if isinstance(t, Buf) and into is None:
            return t
        buf = into or self.alloca(t.shape, d or t.dtype, loc)
        self.each_vector(t.shape, lambda idx, col, w: buf.put(self.b, idx, col, t.emit(self.b, idx, col, w)))
        return buf

    def each_vector(self, shape, body) -> None:
        """Call body(idx, col, w) over a tile shape: loops over outer dims, vectors along the last."""
        b = self.b
        if shape == ():
            body([], i64(0), 1)
            return

        def outer(d, idx):
            if d == len(shape) - 1:
                n = shape[-1]
                full, rest = divmod(n, self.vlen)
                if full == 1:
                    body(idx, i64(0), self.vlen)
                elif full > 1:
                    with for_range(b, 0, full * self.vlen, self.vlen, "c") as col:
                        body(idx, col, self.vlen)
                if rest:
                    body(idx, i64(full * self.vlen), rest)
                return
            if shape[d] == 1:
                outer(d + 1, idx + [i64(0)])
                return
            with for_range(b, 0, shape[d], 1, f"d{d}") as i:
                outer(d + 1, idx + [i])
        outer(0, [])

    # ---- blocks -------------------------------------------------------------------------------
    def lower_block(self, block: Block) -> None:
        made = {r: i for i, n in enumerate(block.nodes) for r in n.results}
        for i, n in enumerate(block.nodes):
            if n.op != Op.STORE or n.srcs[0] not in made:
                continue
            v, cast = n.srcs[0], None
            m = block.nodes[made[v]]
            if m.op == Op.CAST and m.srcs[0] in made and self.uses[v] == 1:  # stored converted: keyed by its source
                v, cast = m.srcs[0], m
            self.result_stores[v] = (n, block.nodes[made[v] + 1:i], cast)
        last_use = {v: i for i, n in enumerate(block.nodes) for v in n.srcs}
        last_use.update(dict.fromkeys(block.yields, len(block.nodes)))
        self._scaled_accumulations(block)
        for i, n in enumerate(block.nodes):
            if n in self.deferred:
                continue
            written = self._written(n)
            if written:  # a tile loaded from an array it writes, still to be read afterwards, is read now
                self._snapshot(written, lambda v, i=i: last_use.get(v, -1) > i, n.loc)
            try:
                self.lower_node(n)
            except CompileError as e:
                raise CompileError(e.msg, e.loc or n.loc) from None
            if n.results and len(n.results) == 1 and n.result.shape:
                x = self.env[n.result]
                if isinstance(x, Lazy) and not x.cheap and self.uses[n.result] > 1:
                    self.env[n.result] = self.materialize(x, loc=n.loc)
                elif isinstance(x, Lazy):
                    loads = frozenset().union(*(self.loads.get(v, ()) for v in n.srcs if isinstance(self.env.get(v), Lazy)))
                    self.loads[n.result] = loads | {n} if n.op == Op.LOAD else loads

    @functools.cached_property
    def _dot_b_operands(self) -> set[Value]:
        """The B operands of the kernel's DOTs."""
        return {m.srcs[1] for m in walk(self.kernel.body) if m.op == Op.DOT}

    def _written(self, n: Node) -> set[int]:
        """The array parameters node `n` stores into: a STORE's, those of the STOREs in its regions, and those
        its results are stored into next (a k loop's last DOT may store there, see _store_targets)."""
        if n.op == Op.STORE:
            return {n.arg.param}
        out = {m.arg.param for r in n.regions for m in walk(r) if m.op == Op.STORE}
        return out | {self.result_stores[r][0].arg.param for r in n.results if r in self.result_stores}

    def _snapshot(self, params: set[int], live, loc) -> None:
        """Materialize the lazy tiles that load from one of `params` and are `live` (read after this point):
        the loads are emitted where a tile is used, which may come after the store that changes the array."""
        for v, x in list(self.env.items()):
            if isinstance(x, Lazy) and live(v) and any(ld.arg.param in params for ld in self.loads.get(v, ())):
                self.env[v] = self.materialize(x, loc=loc)

    def lower_node(self, n: Node) -> None:
        op = n.op
        if n in self.scaled:
            self._scaled_dot(n)
        elif op in BINARY or op in COMPARE:
            self.env[n.result] = self.elementwise(n)
        elif op in (Op.NEG, Op.ABS, Op.NOT, Op.EXP, Op.EXP2, Op.LOG, Op.SQRT, Op.RSQRT, Op.WHERE, Op.CAST):
            self.env[n.result] = self.elementwise(n)
        else:
            getattr(self, "op_" + op.name.lower())(n)

    # ---- leaves -------------------------------------------------------------------------------
    def op_arg(self, n: Node) -> None:
        i, d = n.arg, n.result.dtype
        if d.is_float:
            x = self.b.fptrunc(self._argv_load(2, self.layout.floats[i], ir.DoubleType()), F32)
        else:
            x = self._argv_load(1, self.layout.ints[i], I64)
            x = self.b.icmp_signed("!=", x, i64(0)) if d == dt.bool_ else x
        self.env[n.result] = x

    def op_shape(self, n: Node) -> None:
        self.env[n.result] = self.array_shape(*n.arg)

    def op_const(self, n: Node) -> None:
        c = const_bits(n.arg, n.result.dtype)
        if n.result.shape == ():
            self.env[n.result] = c
        else:
            if n.arg == 0:
                self.zeros.add(n.result)
            self.env[n.result] = Lazy(lambda b, idx, col, w: splat(b, c, w), n.result.shape, n.result.dtype, True)

    def op_arange(self, n: Node) -> None:
        start = n.arg[0]

        def emit(b, idx, col, w):
            base = b.trunc(b.add(col, i64(start)), I32)
            return b.add(splat(b, base, w), iota(I32, w))
        self.env[n.result] = Lazy(emit, n.result.shape, dt.int32, True)

    # ---- memory -------------------------------------------------------------------------------
    def _addressing(self, n: Node, starts):
        """(base pointer, per-tile-dim (start, stride, extent), dropped-dim validity) of an access."""
        acc = n.arg
        base = self.array_ptr(acc.param)
        elem = mem_type(self.kernel.params[acc.param].dtype)
        b = self.b
        dims, valid, off = [], None, i64(0)
        for d, kept in enumerate(acc.kept):
            size, stride, s = self.array_shape(acc.param, d), self.array_stride(acc.param, d), starts[d]
            if kept:
                dims.append((s, stride, size))
            else:
                ok = b.and_(b.icmp_signed(">=", s, i64(0)), b.icmp_signed("<", s, size))
                valid = ok if valid is None else b.and_(valid, ok)
                off = b.add(off, b.mul(b.select(ok, s, i64(0)), stride))
        base = b.gep(base, [off], source_etype=elem)
        return base, dims, valid, elem

    def _lanes(self, b, base, dims, valid, elem, idx, col, w, contiguous):
        """Pointer(s) and mask of `w` elements of the access at tile position (idx, col)."""
        off, ok = i64(0), valid
        for (s, stride, size), i in zip(dims[:-1], idx):
            pos = b.add(s, i)
            inb = b.and_(b.icmp_signed(">=", pos, i64(0)), b.icmp_signed("<", pos, size))
            ok = inb if ok is None else b.and_(ok, inb)
            off = b.add(off, b.mul(b.select(inb, pos, i64(0)), stride))
        s, stride, size = dims[-1]
        pos = b.add(s, col)
        # lanes [lo, hi) are inside the array: clamp in scalar i64, compare lane numbers in i32
        lo = clamp_lanes(b, b.neg(pos), w)
        hi = clamp_lanes(b, b.sub(size, pos), w)
        if ok is not None:
            hi = b.select(ok, hi, i64(0))
        lane = iota(I32, w)
        mask = b.and_(b.icmp_signed(">=", lane, splat(b, b.trunc(lo, I32), w)),
                      b.icmp_signed("<", lane, splat(b, b.trunc(hi, I32), w)))
        if contiguous:
            return b.gep(base, [b.add(off, pos)], source_etype=elem), mask, True
        lanes = b.add(splat(b, pos, w), iota(I64, w))
        safe = b.select(mask, lanes, splat(b, i64(0), w))
        ptrs = b.gep(base, [b.add(splat(b, off, w), b.mul(safe, splat(b, stride, w)))], source_etype=elem)
        ptrs.type = vec(PTR, w)  # llvmlite types a GEP over a vector index as a scalar pointer
        return ptrs, mask, False

    def _contiguous(self, n: Node) -> bool:
        p = self.kernel.params[n.arg.param]
        return n.arg.kept[-1] and p.unit_stride

    def op_load(self, n: Node) -> None:
        d = n.result.dtype
        starts = [self.get(s) for s in n.srcs]
        t = n.result.type
        if t.shape == ():  # every dim indexed: one element
            t_shape = (1,)
        else:
            t_shape = t.shape
        base, dims, valid, elem = self._addressing(n, starts)
        if not dims:
            dims = [(i64(0), i64(1), i64(1))]
        contiguous = self._contiguous(n) if t.shape else True
        fill = const_bits(n.arg.fill, d)
        align = nbytes(elem)

        def emit(b, idx, col, w):
            corner = self.plain_loads.get(n)
            if corner is not None:  # inside a store's branch where this tile lies wholly inside its array
                off = _dot(b, [(i, stride) for i, (_, stride, _) in zip(idx, dims[:-1])] + [(col, i64(1))])
                return from_mem(b, b.load(b.gep(corner, [off], source_etype=elem), typ=vec(elem, w), align=align), d)
            ptr, mask, contig = self._lanes(b, base, dims, valid, elem, idx, col, w, contiguous)
            passthru = splat(b, to_mem(b, fill, d) if d == dt.bool_ else fill, w)
            v = masked_load(b, ptr, mask, passthru, align) if contig else masked_gather(b, ptr, mask, passthru, align)
            return from_mem(b, v, d)
        if t.shape == ():
            self.env[n.result] = self.b.extract_element(emit(self.b, [], i64(0), 1), ir.Constant(I32, 0))
        else:
            self.env[n.result] = Lazy(emit, t_shape, d)
            if contiguous and tuple(n.arg.extents) == tuple(t.shape):
                self.whole_loads[n] = (base, dims, valid, elem, t.shape)

    def op_store(self, n: Node) -> None:
        value, where = n.srcs[0], (n.srcs[1:], n.arg.kept, n.arg.extents)
        if any(ld.arg.param == n.arg.param and (ld.srcs, ld.arg.kept, ld.arg.extents) != where
               for ld in self.loads.get(value, ())):  # other elements of its own array (c[1:33] = c[0:32]): read first
            self.env[value] = self.materialize(self.env[value], loc=n.loc)
        done = self.stored.get(n)
        if done is None:
            self._store(n)
            return
        with self.b.if_then(self.b.not_(done)):
            self._store(n)

    def _whole_tile(self, dims, valid, shape) -> ir.Value:
        """i1: the tile of `shape` at `dims` (from _addressing) lies wholly inside the array."""
        b = self.b
        ok = valid
        for (s, _, size), extent in zip(dims, shape):
            inb = b.and_(b.icmp_signed(">=", s, i64(0)), b.icmp_signed("<=", b.add(s, i64(extent)), size))
            ok = inb if ok is None else b.and_(ok, inb)
        return ok

    def _store(self, n: Node) -> None:
        value = n.srcs[0]
        d = self.kernel.params[n.arg.param].dtype
        starts = [self.get(s) for s in n.srcs[1:]]
        base, dims, valid, elem = self._addressing(n, starts)
        src = self.tile(value) if value.shape else None
        if not dims:
            dims = [(i64(0), i64(1), i64(1))]
        contiguous = self._contiguous(n) if value.shape else True
        align = nbytes(elem)

        def body(idx, col, w):
            b = self.b
            v = src.emit(b, idx, col, w) if src is not None else splat(b, self.get(value), 1)
            ptr, mask, contig = self._lanes(b, base, dims, valid, elem, idx, col, w, contiguous)
            v = to_mem(b, v, d)
            if contig:
                masked_store(b, v, ptr, mask, align)
            else:
                masked_scatter(b, v, ptr, mask, align)
        if not (value.shape and contiguous and tuple(n.arg.extents) == tuple(value.shape)):
            self.each_vector(value.shape, body)
            return
        # a tile wholly inside the array (one check per store) takes plain vector stores, and plain vector loads of
        # the tiles it is computed from where those lie wholly inside theirs too (a second check): masked loads cost
        # their masks' arithmetic each vector, and on AVX2 a slower load
        b = self.b
        ok = self._whole_tile(dims, valid, value.shape)
        corner = _corner(b, base, dims, elem)
        feeding = self.loads.get(value, frozenset())
        loads_ok, corners = None, {}
        for ld, (lbase, ldims, lvalid, lelem, lshape) in self.whole_loads.items():  # (in program order)
            if ld not in feeding:
                continue
            inside = self._whole_tile(ldims, lvalid, lshape)
            loads_ok = inside if loads_ok is None else b.and_(loads_ok, inside)
            corners[ld] = _corner(b, lbase, ldims, lelem)

        def plain(idx, col, w):
            off = _dot(b, [(i, stride) for i, (_, stride, _) in zip(idx, dims[:-1])] + [(col, i64(1))])
            v = to_mem(b, src.emit(b, idx, col, w), d)
            b.store(v, b.gep(corner, [off], source_etype=elem), align=align)
        with b.if_else(ok, likely=True) as (then, otherwise):
            with then:
                if loads_ok is None:
                    self.each_vector(value.shape, plain)
                else:
                    with b.if_else(loads_ok, likely=True) as (inner, masked):
                        with inner:
                            self.plain_loads = corners
                            self.each_vector(value.shape, plain)
                            self.plain_loads = {}
                        with masked:
                            self.each_vector(value.shape, plain)
            with otherwise:
                self.each_vector(value.shape, body)

    # ---- elementwise --------------------------------------------------------------------------
    def elementwise(self, n: Node):
        out = n.result
        if out.shape == ():
            return self.scalar_op(self.b, n, [self.get(s) for s in n.srcs])
        srcs = [self.tile(s) for s in n.srcs]

        def emit(b, idx, col, w):
            return self.scalar_op(b, n, [s.emit(b, idx, col, w) for s in srcs])
        return Lazy(emit, out.shape, out.dtype)

    def scalar_op(self, b: ir.IRBuilder, n: Node, xs: list[ir.Value]) -> ir.Value:
        """The op on register values (scalars or vectors of any width)."""
        op, src_d, out_d = n.op, n.srcs[0].dtype, n.result.dtype
        if op == Op.CAST:
            return convert.cast(b, xs[0], src_d.name, out_d.name, saturate=n.arg is True, fast=n.arg == "fast",
                                avx512bf16=bool(self.options.get("avx512bf16")))
        if op == Op.WHERE:
            return b.select(xs[0], xs[1], xs[2])
        cd = dt.compute_type(src_d)
        if cd != src_d:
            xs = [convert.cast(b, x, src_d.name, "float32") for x in xs]
        r = arith(b, op, xs, cd, n.arg, self.options)
        if op not in COMPARE and cd != out_d:
            r = convert.cast(b, r, cd.name, out_d.name)
        return r

    # ---- shapes -------------------------------------------------------------------------------
    def op_broadcast(self, n: Node) -> None:
        src, shape = n.srcs[0], n.result.shape
        if src.shape == ():
            x = self.get(src)
            self.env[n.result] = Lazy(lambda b, idx, col, w: splat(b, x, w), shape, n.result.dtype, True)
            return
        t = self.tile(src)
        ones = [s == 1 and o != 1 for s, o in zip(src.shape, shape)]

        def emit(b, idx, col, w):
            sidx = [i64(0) if one else i for one, i in zip(ones, idx)]
            if ones[-1]:
                x = t.emit(b, sidx, i64(0), 1)
                return splat(b, b.extract_element(x, ir.Constant(I32, 0)), w)
            return t.emit(b, sidx, col, w)
        self.env[n.result] = Lazy(emit, shape, n.result.dtype, isinstance(t, Buf) or t.cheap)

    def op_reshape(self, n: Node) -> None:
        src, shape = n.srcs[0], n.result.shape
        t = self.tile(src)
        src_big = [d for d, s in enumerate(src.shape) if s != 1]
        out_big = [d for d, s in enumerate(shape) if s != 1]

        def element(b, idx, col):  # one element at the target position (idx, col)
            full = list(idx) + [col]
            sfull = [i64(0)] * len(src.shape)
            for sd, od in zip(src_big, out_big):
                sfull[sd] = full[od]
            return t.emit(b, sfull[:-1], sfull[-1], 1)

        def emit(b, idx, col, w):
            if w > 1 and src.shape[-1] == shape[-1] and (not src_big or src_big[-1] == len(src.shape) - 1):
                sidx = [i64(0)] * (len(src.shape) - 1)
                for sd, od in zip(src_big[:-1], out_big[:-1]):
                    sidx[sd] = idx[od]
                return t.emit(b, sidx, col, w)
            return gather_lanes(b, lambda c: element(b, idx, c), col, w)
        self.env[n.result] = Lazy(emit, shape, n.result.dtype, isinstance(t, Buf) or getattr(t, "cheap", False))

    def op_transpose(self, n: Node) -> None:
        src = self.tile(n.srcs[0])
        if not (self.uses[n.result] == 1 and n.result in self._dot_b_operands):
            src = self.materialize(src, loc=n.loc)
        # else only a dot's B: every dot path reads the untransposed tile itself (dot_pack.source_of, with_loader),
        # in place, and a copy of it (a few-row dot's whole rows of w in x @ w.T) would be work and buffer for nothing

        def emit(b, idx, col, w):
            return gather_lanes(b, lambda c: src.emit(b, [c], idx[0], 1), col, w)
        self.env[n.result] = Lazy(emit, n.result.shape, n.result.dtype, isinstance(src, Buf))

    def op_interleave(self, n: Node) -> None:
        self.env[n.result] = interleave_tiles(self.tile(n.srcs[0]), self.tile(n.srcs[1]))

    # ---- reductions ---------------------------------------------------------------------------
    def op_reduce(self, n: Node) -> None:
        kind, axis, keep = n.arg
        src, out = n.srcs[0], n.result
        t = self.tile(src)
        cd = dt.compute_type(out.dtype)
        b = self.b
        out_shape = out.shape if out.shape else (1,)
        buf = self.alloca(out_shape, out.dtype, n.loc)
        combine = combiner(kind, cd)
        ident = identity(kind, cd)
        shape = src.shape

        def widen(v):
            return convert.cast(b, v, src.dtype.name, cd.name) if src.dtype != cd else v

        def narrow(v):
            return convert.cast(b, v, cd.name, out.dtype.name) if out.dtype != cd else v

        if axis == len(shape) - 1:
            def store(idx, total):
                oidx = list(idx) + ([i64(0)] if keep else [])
                if not oidx:
                    oidx = [i64(0)]
                buf.put(b, oidx[:-1], oidx[-1], splat(b, narrow(total), 1))
            self._reduce_rows(t, shape, combine, widen, store)
        else:
            red = shape[axis]
            rest_shape = shape[:axis] + shape[axis + 1:]

            def body(idx, col, w):
                accp = self.alloca((w,), cd, n.loc)
                accp.put(b, [], i64(0), splat(b, ident, w))
                with for_range(b, 0, red, 1, "r") as k:
                    sidx = list(idx[:axis]) + [k] + list(idx[axis:])
                    accp.put(b, [], i64(0), combine(b, accp.emit(b, [], i64(0), w), widen(t.emit(b, sidx, col, w))))
                oidx = list(idx[:axis]) + ([i64(0)] if keep else []) + list(idx[axis:])
                buf.put(b, oidx, col, narrow(accp.emit(b, [], i64(0), w)))
            self.each_vector(rest_shape, body)
        if out.shape == ():
            self.env[out] = b.extract_element(buf.emit(b, [], i64(0), 1), ir.Constant(I32, 0))
        else:
            self.env[out] = buf

    def _reduce_rows(self, t, shape, combine, widen, store) -> None:
        """Reduce the last axis of tile t: `store(idx, total)` per row. Rows go ROW_GROUP at a time (the
        last outer dim), each row with up to ROW_ACCS vector accumulators, so the combines form
        ROW_GROUP * ROW_ACCS independent dependency chains instead of one chain per row."""
        def group(outer, rows):
            for idx, total in zip(rows, self._row_totals(t, [outer + [r] for r in rows], shape[-1], combine, widen)):
                store(outer + [idx], total)

        def outer_body(outer):
            if len(shape) == 1:
                store([], self._row_totals(t, [[]], shape[-1], combine, widen)[0])
                return
            m = shape[-2]
            whole = m - m % ROW_GROUP if m > ROW_GROUP else 0  # a single group is straight-line code: LLVM
            if whole:  # 22's O3 broke dominance on a one-trip group loop (a 4 x 128 tile, fp8 block scales)
                with for_range(self.b, 0, whole, ROW_GROUP, "rg") as r0:
                    group(outer, [r0 if g == 0 else self.b.add(r0, i64(g)) for g in range(ROW_GROUP)])
            if whole < m:
                group(outer, [i64(r) for r in range(whole, m)])
        self._outer_loops(shape[:-2], outer_body)

    def _row_totals(self, t, rows, n: int, combine, widen) -> list:
        """The reductions (scalars in the compute type) of `rows` (outer indices) of t's last axis of
        length n: the full vectors interleaved (`_full_vectors`), then the ragged tail of each row."""
        b, vl = self.b, self.vlen
        full, rest = divmod(n, vl)
        totals = self._full_vectors(t, rows, full, combine, widen) if full else [None] * len(rows)
        if rest:
            for r, idx in enumerate(rows):
                part = hreduce(b, widen(t.emit(b, idx, i64(full * vl), rest)), combine)
                totals[r] = part if totals[r] is None else combine(b, totals[r], part)
        return totals

    def _full_vectors(self, t, rows, full: int, combine, widen) -> list:
        """The reductions of the first `full` vectors of each row. Each row keeps k accumulators (vector
        j goes to accumulator j % k), combined pairwise at the end, so the rows' k * len(rows) chains
        run side by side. A float max / min accumulates with plain vmaxps / vminps and ANDs a "no NaN"
        lane mask over every vector, one compare per two vectors (scalar_ops.split_nan); NaN if any
        lane ever failed, as `combine`."""
        b, vl = self.b, self.vlen
        k = min(ROW_ACCS, full)
        split = split_nan(combine)
        step = split[0] if split else combine

        def load(idx, j, col=None):  # vector j of a row (of the group of k at `col`, when given)
            c = i64(j * vl) if col is None else (b.add(col, i64(j * vl)) if j else col)
            return widen(t.emit(b, idx, c, vl))

        def ok_of(xs, ok=None):  # ok AND the lanes where no vector of xs is NaN
            for i in range(0, len(xs), 2):
                o = split[1](b, xs[i], xs[min(i + 1, len(xs) - 1)])
                ok = o if ok is None else b.and_(ok, o)
            return ok

        first = [[load(idx, j) for j in range(k)] for idx in rows]
        acc_t, ok_t = first[0][0].type, vec(ir.IntType(1), vl)
        accs = self._acc_slots(acc_t, len(rows) * k)
        oks = self._acc_slots(ok_t, len(rows)) if split else None
        for r, xs in enumerate(first):
            for j, x in enumerate(xs):
                b.store(x, accs[r * k + j])
            if split:
                b.store(ok_of(xs), oks[r])
        steps = full // k
        if steps > 1:
            with for_range(b, k * vl, steps * k * vl, k * vl, "r") as col:
                for r, idx in enumerate(rows):
                    xs = [load(idx, j, col) for j in range(k)]
                    for j, x in enumerate(xs):
                        b.store(step(b, b.load(accs[r * k + j], typ=acc_t), x), accs[r * k + j])
                    if split:
                        b.store(ok_of(xs, b.load(oks[r], typ=ok_t)), oks[r])
        totals = []
        for r, idx in enumerate(rows):
            xs = [load(idx, j) for j in range(steps * k, full)]  # left over from the groups of k
            vs = [b.load(accs[r * k + j], typ=acc_t) for j in range(k)]
            for j, x in enumerate(xs):
                vs[j % k] = step(b, vs[j % k], x)
            totals.append(self._finish_row(vs, step, ok_of(xs, b.load(oks[r], typ=ok_t)) if split else None))
        return totals

    def _finish_row(self, accs: list, step, ok) -> ir.Value:
        """One row's total from its accumulators: combined pairwise, reduced across lanes; NaN where the
        "no NaN" lane mask `ok` (None: no NaN test) has a lane unset."""
        b = self.b
        while len(accs) > 1:
            accs = [step(b, accs[i], accs[i + 1]) if i + 1 < len(accs) else accs[i] for i in range(0, len(accs), 2)]
        total = hreduce(b, accs[0], step)
        if ok is None:
            return total
        lanes = ir.IntType(ok.type.count)
        nan = b.icmp_unsigned("!=", b.bitcast(ok, lanes), ir.Constant(lanes, (1 << ok.type.count) - 1))
        return b.select(nan, ir.Constant(total.type, float("nan")), total)

    def _acc_slots(self, typ, count: int) -> list:
        """`count` stack slots of register type `typ` in the entry block (promoted to registers)."""
        with self.b.goto_block(self.entry):
            return [alloca(self.b, typ) for _ in range(count)]

    def _scaled_accumulations(self, block: Block) -> None:
        """Find `acc = acc + tl.dot(a, b) * f` in the loop body `block` (either operand order of the sum and the
        product): an AMX DOT of whole tiles whose product, scaled product and carried `acc` have no other use, the
        sum yielded back as acc, and no STORE or region between the DOT and the sum (block-scaled FP8 products:
        each K block's product scaled before it is summed). The DOT and MUL are then lowered at the ADD
        (`_scaled_dot`)."""
        carried = dict(zip(block.yields, block.args[1:]))
        users = {v: m for m in block.nodes for v in m.srcs}  # (consulted for values used once)
        at = {m: i for i, m in enumerate(block.nodes)}
        for d in block.nodes:
            if not (d.op == Op.DOT and len(d.srcs) == 2 and d.result.dtype == dt.float32 and self.uses[d.result] == 1
                    and all(e % 16 == 0 for e in d.result.shape)
                    and choose_path(self.options, d.srcs[0].dtype, d.srcs[0].shape[0]) == "amx"):
                continue
            mul = users.get(d.result)
            if not (mul is not None and mul.op == Op.MUL and self.uses[mul.result] == 1):
                continue
            add = users.get(mul.result)
            if not (add is not None and add.op == Op.ADD):
                continue
            acc = add.srcs[1] if add.srcs[0] is mul.result else add.srcs[0]
            if (carried.get(add.result) is acc and self.uses[acc] == 1 and self.uses[add.result] == 1
                    and not any(m.op == Op.STORE or m.regions for m in block.nodes[at[d]:at[add]])):
                self.scaled[add] = (d, mul, acc)
                self.deferred |= {d, mul}

    def _scaled_dot(self, add: Node) -> None:
        """`acc + tl.dot(a, b) * f` (see _scaled_accumulations): the AMX dot scales each 32 x 32 block of its product
        and adds it into acc straight from the 4 KiB of L1 it stores the block to, with the MUL and ADD's own
        arithmetic (the same bits), instead of storing the whole product for an elementwise pass to read back
        (DeepSeek-scaled FP8 products 1.3-1.5x: README, "Block-scaled FP8")."""
        d, mul, acc_v = self.scaled[add]
        acc = self.tile(acc_v)
        assert isinstance(acc, Buf), "a loop's carried tile is a buffer"
        dot_first = mul.srcs[0] is d.result
        factor = self.tile(mul.srcs[1] if dot_first else mul.srcs[0])

        def epilogue(b, tiles, i0, j0):
            with for_range(b, 0, 16, 1, "amx.sa") as row:
                for r, tiles_r in enumerate(tiles):
                    idx = [b.add(i0, b.add(row, i64(16 * r)))]
                    for c, tile in enumerate(tiles_r):
                        col = b.add(j0, i64(16 * c))
                        x = tile_row(b, tile, row)
                        f = factor.emit(b, idx, col, 16)
                        t = self.scalar_op(b, mul, [x, f] if dot_first else [f, x])
                        y = acc.emit(b, idx, col, 16)
                        acc.put(b, idx, col, self.scalar_op(b, add, [y, t] if add.srcs[0] is acc_v else [t, y]))
        lower_dot(self, d, self.tile(d.srcs[0]), None, epilogue=epilogue)
        self.env[add.result] = acc

    def _fast_bf16(self, cast: Node) -> tuple | None:
        """For the exact float32 -> bfloat16 CAST `cast` on a target with vcvtneps2bf16: (that conversion, the
        lanes where it may differ from the exact one), which the AMX dot's converted store takes for whole blocks
        of C, converting exactly only blocks that hold such a value; else None. (vfpclassps needs AVX512-DQ, which
        every CPU with AVX512-BF16 has.)"""
        if not (not cast.arg and cast.srcs[0].dtype == dt.float32 and cast.result.dtype == dt.bfloat16
                and self.options.get("avx512bf16")):
            return None
        return (lambda b, x: convert.f32_to_bf16_fast(b, x, True)), convert.bf16_fast_differs

    def _outer_loops(self, shape, body, idx=()):
        if not shape:
            body(list(idx))
            return
        with for_range(self.b, 0, shape[0], 1, "o") as i:
            self._outer_loops(shape[1:], body, idx + (i,))

    def op_dot(self, n: Node) -> None:
        a = self.tile(n.srcs[0])
        acc = fresh = None
        if len(n.srcs) == 3:
            acc_v = n.srcs[2]
            acc = self.tile(acc_v)
            if not (isinstance(acc, Buf) and self.uses[acc_v] == 1):
                acc = self.materialize(acc, into=self.alloca(n.result.shape, n.result.dtype, n.loc))
            fresh = self.fresh.get(acc_v)
        target, last = self.direct.get(n.srcs[2], (None, None)) if acc is not None else (None, None)
        into = None
        if target:
            cast = target.cast  # converted on the way exactly as the STORE's CAST would

            def convert(b, x):
                return to_mem(b, self.scalar_op(b, cast, [x]), cast.result.dtype)
            cvt = None if cast is None else (convert, mem_type(cast.result.dtype), self._fast_bf16(cast))
            into = (target.ptr, target.row_stride, self.b.and_(target.inside, last), cvt)
        self.env[n.result], stored = lower_dot(self, n, a, acc, fresh, into)
        if stored:
            self.stored[target.store] = target.done

    # ---- control flow -------------------------------------------------------------------------
    def op_for(self, n: Node) -> None:
        b = self.b
        start, stop, step = (self.get(s) for s in n.srcs[:3])
        step_val = step.constant if isinstance(step, ir.Constant) else 1
        body = n.regions[0]
        inits = n.srcs[3:]
        carried = []
        cmp = ">=" if step_val > 0 else "<="
        runs = b.not_(b.icmp_signed(cmp, start, stop))
        few = b.and_(runs, b.icmp_signed(cmp, b.add(start, b.mul(step, i64(FRESH_TRIPS))), stop))  # 1..FRESH_TRIPS runs
        targets = self._store_targets(n, runs, few)
        fresh = self._fresh_accumulators(n) & targets.keys()
        for v, arg in zip(inits, body.args[1:]):
            if not v.shape:
                carried.append(self.get(v))
            elif arg in fresh:  # zeros unless the loop's first DOT starts from zero itself
                buf = self.alloca(v.shape, v.dtype, n.loc)
                with b.if_then(b.not_(few)):
                    self.materialize(self.tile(v), into=buf)
                carried.append(buf)
            else:
                carried.append(self.materialize(self.tile(v), into=self.alloca(v.shape, v.dtype, n.loc)))
        pre = b.block
        header = b.append_basic_block("for.head")
        loop = b.append_basic_block("for.body")
        end = b.append_basic_block("for.end")
        b.branch(header)
        b.position_at_end(header)
        iv = b.phi(I64)
        iv.add_incoming(start, pre)
        phis = []
        for c, arg in zip(carried, body.args[1:]):
            if isinstance(c, Buf):
                phis.append(None)
            else:
                p = b.phi(c.type)
                p.add_incoming(c, pre)
                phis.append(p)
        b.cbranch(b.icmp_signed("<" if step_val > 0 else ">", iv, stop), loop, end)
        b.position_at_end(loop)
        self.env[body.args[0]] = iv
        for arg, c, p in zip(body.args[1:], carried, phis):
            self.env[arg] = c if p is None else p
        first = b.and_(b.icmp_signed("==", iv, start), few)
        self.fresh.update(dict.fromkeys(fresh, first))
        last = b.icmp_signed(">=" if step_val > 0 else "<=", b.add(iv, step), stop)
        self.direct.update({arg: (t, last) for arg, t in targets.items()})
        self.lower_block(body)
        self._write_back([self.env[y] if not y.shape else self.tile(y) for y in body.yields], carried, n)
        for p, y in zip(phis, body.yields):
            if p is not None:
                p.add_incoming(self.get(y), b.block)
        iv.add_incoming(b.add(iv, step), b.block)
        b.branch(header)
        b.position_at_end(end)
        for r, c, p in zip(n.results, carried, phis):
            self.env[r] = c if p is None else p

    def _fresh_accumulators(self, n: Node) -> set[Value]:
        """The body arguments of FOR `n` whose tiles start as zeros and are used once, as the accumulator of a
        DOT run on every iteration: on the first iteration that DOT starts from zero instead of reading them."""
        body = n.regions[0]
        args = {arg for v, arg in zip(n.srcs[3:], body.args[1:]) if v.shape and v in self.zeros and self.uses[arg] == 1}
        return {m.srcs[2] for m in body.nodes if m.op == Op.DOT and len(m.srcs) == 3 and m.srcs[2] in args}

    def _store_targets(self, n: Node, runs: ir.Value, few: ir.Value) -> dict[Value, StoreTarget]:
        """FOR `n`'s 2-D carried tiles that an AMX DOT accumulates on every iteration and that are then stored
        whole into an array of their dtype (a k loop and its float32 output tile), or of the dtype a single CAST of
        them converts to (a bfloat16 output tile), by body argument, where nothing else in the loop or before that
        STORE touches the array. The DOT may then store its last result there instead of into the accumulator that
        the STORE would copy, and with a first DOT from zero the accumulator is not touched at all by a one-iteration
        loop (AMX, bfloat16 -> float32, one-off on 1 and 2 threads: 1.35-1.94x at K = 256, 1.08-1.26x at K = 512,
        0.96-1.11x at K >= 1024). A converted result goes there only from loops of at most FRESH_TRIPS iterations
        (`few`), through a 4 KiB scratch in L1 (bfloat16 -> bfloat16, M = N = 1024, 1 and 2 threads: 1.35-1.41x at
        K = 256, 1.06-1.09x at K = 512)."""
        body, out = n.regions[0], {}
        dots = {m.result: m for m in body.nodes if m.op == Op.DOT and len(m.srcs) == 3}
        for r, arg, y in zip(n.results, body.args[1:], body.yields):
            st, between, cast = self.result_stores.get(r, (None, (), None))
            stored = r if cast is None else cast.result  # a cast: to a narrower float (a bfloat16 `c`)
            dot = dots.get(y)
            if (st is None or dot is None or dot.srcs[2] is not arg or len(r.shape) != 2
                    or (cast is not None and not (r.dtype == dt.float32 and stored.dtype.is_float))
                    or choose_path(self.options or {}, dot.srcs[0].dtype, dot.srcs[0].shape[0]) != "amx"
                    or _accesses(body.nodes, st.arg.param) or _accesses(between, st.arg.param)
                    or any(self.uses[v] != 1 for v in (r, arg, y)) or tuple(st.arg.extents) != r.shape
                    or self.kernel.params[st.arg.param].dtype != stored.dtype or not self._contiguous(st)
                    or not all(v in self.env for v in st.srcs[1:])):
                continue
            base, dims, valid, elem = self._addressing(st, [self.get(v) for v in st.srcs[1:]])
            ok = self._whole_tile(dims, valid, r.shape)
            if cast is not None:  # (in longer loops converting there measured 0.95-0.99x the STORE's conversion)
                ok = self.b.and_(ok, few)
            corner = _corner(self.b, base, dims, elem)
            out[arg] = StoreTarget(corner, dims[0][1], ok, st, self.b.and_(ok, runs), cast)
        return out

    def _write_back(self, values, targets, n: Node) -> None:
        """Copy yielded tiles into their carried buffers, through temporaries where they may alias."""
        staged = []
        for v, t in zip(values, targets):
            if not isinstance(t, Buf) or v is t:
                staged.append(None)
                continue
            if isinstance(v, Buf) and all(v is not o for o in targets):
                staged.append(v)
            else:
                staged.append(self.materialize(v, into=self.alloca(t.shape, t.dtype, n.loc)))
        for s, t in zip(staged, targets):
            if s is not None:
                self.materialize(s, into=t)

    def op_if(self, n: Node) -> None:
        b = self.b
        cond = self.get(n.srcs[0])
        outs = [self.alloca(r.shape, r.dtype, n.loc) if r.shape else None for r in n.results]
        incoming = []
        merge = b.append_basic_block("if.end")
        then_bb = b.append_basic_block("if.then")
        else_bb = b.append_basic_block("if.else")
        b.cbranch(cond, then_bb, else_bb)
        for region, bb in zip(n.regions, (then_bb, else_bb)):
            b.position_at_end(bb)
            self.lower_block(region)
            scalars = []
            for y, o in zip(region.yields, outs):
                if o is not None:
                    self.materialize(self.tile(y), into=o)
                else:
                    scalars.append(self.get(y))
            incoming.append((scalars, b.block))
            b.branch(merge)
        b.position_at_end(merge)
        k = 0
        for r, o in zip(n.results, outs):
            if o is not None:
                self.env[r] = o
            else:
                p = b.phi(reg_type(r.dtype))
                for scalars, bb in incoming:
                    p.add_incoming(scalars[k], bb)
                k += 1
                self.env[r] = p

    def op_grid(self, n: Node) -> None:
        b = self.b
        extents = [self.get(e) for e in n.srcs]
        region = n.regions[0]
        free = free_values(region)
        # tiles cross into the body as buffers
        caps = []
        for v in free:
            x = self.env[v]
            caps.append(self.materialize(x, loc=n.loc) if isinstance(x, Lazy) else x)
        total = i64(1)
        for e in extents:
            total = b.mul(total, b.select(b.icmp_signed(">", e, i64(0)), e, i64(0)))
        fields = [PTR, PTR, PTR, PTR] + [I64] * len(extents) + [PTR if isinstance(c, Buf) else c.type for c in caps]
        ctx_t = ir.LiteralStructType(fields)
        with b.goto_block(self.entry):
            ctx = alloca(b, ctx_t)
        for i, x in enumerate([*self.argv, *extents, *[c.ptr if isinstance(c, Buf) else c for c in caps]]):
            b.store(x, b.gep(ctx, [ir.Constant(I32, 0), ir.Constant(I32, i)], source_etype=ctx_t))
        body_fn = self._outline(region, ctx_t, len(extents), free, caps)
        pfor = _FnPtr(self.argv[3], ir.FunctionType(I32, [PTR, PTR, I64, I64]))
        b.call(pfor, [body_fn, ctx, total, i64(0)])

    def _outline(self, region: Block, ctx_t, n_ext: int, free, caps) -> ir.Function:
        fnty = ir.FunctionType(ir.VoidType(), [PTR, I64, I64])
        fn = ir.Function(self.module, fnty, name=f"{self.fn.name}.grid{len(self.module.globals)}")
        fn.linkage = "internal"
        sub = FunctionLowering(self.module, self.kernel, self.layout, fn, self.vlen, self.uses, self.options)
        b = sub.b
        ctx, begin, end = fn.args
        with b.goto_block(sub.entry):
            vals = [b.load(b.gep(ctx, [ir.Constant(I32, 0), ir.Constant(I32, i)], source_etype=ctx_t),
                           typ=ctx_t.elements[i]) for i in range(len(ctx_t.elements))]
        sub.argv = tuple(vals[:4])
        extents = vals[4:4 + n_ext]
        for v, c, x in zip(free, caps, vals[4 + n_ext:]):
            sub.env[v] = Buf(x, c.shape, c.dtype) if isinstance(c, Buf) else x
        with for_range(b, begin, end, 1, "pid") as lin:
            rem = lin
            pids = [None] * n_ext
            for d in range(n_ext - 1, -1, -1):
                if d == 0:
                    pids[d] = rem
                else:
                    pids[d] = b.srem(rem, extents[d])
                    rem = b.sdiv(rem, extents[d])
            for a, p in zip(region.args, pids):
                sub.env[a] = p
            sub.lower_block(region)
        b.ret_void()
        return fn


class _FnPtr:
    """Lets IRBuilder.call go through a function pointer value (opaque pointers carry no type)."""

    def __init__(self, ptr: ir.Value, fnty: ir.FunctionType):
        self.ptr, self.function_type = ptr, fnty
        self.type = PTR

    def get_reference(self):
        return self.ptr.get_reference()

    @property
    def args(self):
        return ()


def lower_kernel(kernel: Kernel, name: str, vlen: int, options: dict | None = None) -> ir.Module:
    """Build the LLVM module of a kernel whose entry function is called `name`."""
    module = ir.Module(name=kernel.name)
    fn = ir.Function(module, ir.FunctionType(ir.VoidType(), [PTR, PTR, PTR, PTR]), name=name)
    uses = Counter()
    for n in walk(kernel.body):
        uses.update(n.srcs)
        for r in n.regions:
            uses.update(r.yields)
            uses.update(free_values(r))  # used inside a loop or grid: it is read many times

    f = FunctionLowering(module, kernel, Layout.of(kernel), fn, vlen, uses, options or {})
    f.argv = tuple(fn.args)
    f.lower_block(kernel.body)
    f.b.ret_void()
    return module
