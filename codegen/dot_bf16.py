"""tl.dot with AVX512-BF16 `vdpbf16ps` (bfloat16 / FP8 inputs where AMX is not available).

The register-blocked micro-kernel of dot_kernel.py with one k-step per pair of k: each accumulator lane
(a column of C) gains a[i, 2q]*b[2q, n] + a[i, 2q+1]*b[2q+1, n]. A is row-major bfloat16 with an even
padded K, so a pair is one 32-bit broadcast; B is packed in VNNI pairs (dot_pack.Vnni), one block of NR
columns per micro-kernel panel, so the vector of 16 columns x 2 k is contiguous.
"""
from __future__ import annotations

from codegen import convert
from codegen import dtypes as dt
from codegen.dot_amx import bf16_bits
from codegen.dot_kernel import Scheme, block_loops
from codegen.dot_pack import Vnni, pack_rows, pack_vnni, pack_vnni_t, panels_of, source_of, with_loader
from codegen.ir import Node
from codegen.llvm_util import BFLOAT, F32, I16, I32, intrinsic, splat, vec
from codegen.tiles import Buf

MR, NV, UNROLL = 8, 3, 4


def _dp(b, acc, a_pair, bv):
    """acc + pairwise products: vdpbf16ps with `a_pair` (i32: two bf16) broadcast."""
    t = vec(BFLOAT, 32)
    av = b.bitcast(splat(b, a_pair, 16), t)
    return intrinsic(b, "llvm.x86.avx512bf16.dpbf16ps.512", vec(F32, 16), [acc, av, b.bitcast(bv, t)])


SCHEME = Scheme(V=16, acc_t=F32, a_elem=I32, b_elem=I16, b_vw=32, mac=_dp, b_align=64)


def lower_dot_bf16(fl, n: Node, a, acc: Buf | None) -> Buf:
    (M, K), N = n.srcs[0].shape, n.result.shape[1]
    b = fl.b
    NR = NV * 16
    pairs = -(-K // 2)
    Ka = -(-K // 32) * 32                 # A row length: whole 32-element chunks (even, zero-padded)
    Np = -(-N // NR) * NR

    def cvt_of(d):
        if d == dt.bfloat16:
            return lambda x: x
        return lambda x: bf16_bits(b, convert.cast(b, x, d.name, "float32"))

    sa = source_of(fl, n.srcs[0])
    Ap = fl.alloca((M * Ka,), dt.bfloat16, n.loc).ptr
    cvt = cvt_of(sa.dtype)
    if sa.transposed:
        pack_rows(fl, lambda b_, r, c0, w: a.emit(b_, [r], c0, w), cvt, Ap, I16, rows=M, cols=K, dst_rs=Ka, w=32,
                  pad_to=Ka)
    else:
        with_loader(fl, sa, lambda ld: pack_rows(fl, ld, cvt, Ap, I16, rows=M, cols=K, dst_rs=Ka, w=32, pad_to=Ka))
    lay = Vnni(2 * pairs, Np, 2, NR)
    Bp = fl.alloca((2 * pairs * Np,), dt.bfloat16, n.loc).ptr
    if n.arg == "panels":  # unpacked from its k-groups into this kernel's NR-column blocks
        pan = panels_of(fl, n.srcs[1])
        pack_vnni(fl, pan.load, cvt_of(pan.dtype), Bp, I16, lay, K=K, N=N)
    else:
        sb = source_of(fl, n.srcs[1])
        pack = pack_vnni_t if sb.transposed else pack_vnni
        cvt = cvt_of(sb.dtype)
        with_loader(fl, sb, lambda ld: pack(fl, ld, cvt, Bp, I16, lay, K=K, N=N))
    C = acc if acc is not None else fl.alloca((M, N), dt.float32, n.loc)
    block_loops(b, SCHEME, M=M, N=N, steps=pairs, MR=MR, NV=NV, unroll=UNROLL, a_ptr=Ap, a_rs=Ka // 2, a_ks=1,
                b_ptr=Bp, b_step=NR * 2, b_panel=lay.block_base(1), c_ptr=C.ptr, init_zero=acc is None)
    return C
