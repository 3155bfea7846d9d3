"""The FP8 kernels, written in the language. `ops/fp8.py` validates arguments and launches them;
`ops/fp8_ref.py` holds the NumPy references they are tested against, operation for operation.

Conventions shared by every kernel:
- Scales are *dequantization* scales: x ~= q * scale. A group (tensor, row, block) is quantized with
  the float32 quantization factor `sq = FMAX / amax` (IEEE division), q = cast(x * sq), and its stored
  scale is the float32 `1 / sq`. amax = 0, NaN or inf gives sq = 1; sq = inf (a tiny amax) becomes
  FLT_MAX (TransformerEngine's `compute_scale_from_amax` guards, shared/reference/fp8-attention.md 2.2).
- MX (OCP MXFP8) scales are E8M0 bytes handed to the kernels as int8 (the same bits); a power of two
  is built exactly from its integer exponent (`_pow2`), never through exp2.
- Masked (ragged) loads fill 0, which never changes an amax, and masked stores are skipped.
"""
from __future__ import annotations

import tilelang as tl
from ops.matmul import packed_block, packed_dot

FLT_MAX = 3.4028234663852886e38
INF = float("inf")
NAN = float("nan")


# ---------------------------------------------------------------------------------------------
# helpers, inlined into the kernels that call them


@tl.jit
def _isnan(v):
    return v != v  # noqa: PLR0124 - the NaN test: only NaN compares unequal to itself


@tl.jit
def _quant_scale(am, FMAX):
    """The float32 quantization factor of a group with absolute maximum `am` (tile or scalar)."""
    sq = FMAX / am
    sq = tl.where(sq == INF, FLT_MAX, sq)
    bad = (am == 0.0) | _isnan(am) | (am == INF)
    return tl.where(bad, 1.0, sq)


@tl.jit
def _floor_log2(a):
    """(floor(log2(a)) as int32, a / 2^that in [1, 2)) for finite a > 0, exactly, subnormals included:
    a binary search over the exponent by multiplications with powers of two (exact)."""
    e = tl.zeros(a.shape, tl.int32)
    m = a
    c = m < 2.0 ** -100
    m = tl.where(c, m * 2.0 ** 64, m)
    e = tl.where(c, e - 64, e)
    for k in (64, 32, 16, 8, 4, 2, 1):
        c = m >= 2.0 ** k
        m = tl.where(c, m * 2.0 ** -k, m)
        e = tl.where(c, e + k, e)
    for k in (64, 32, 16, 8, 4, 2, 1):
        c = m < 2.0 ** (1 - k)
        m = tl.where(c, m * 2.0 ** k, m)
        e = tl.where(c, e - k, e)
    return e, m


@tl.jit
def _pow2(n):
    """2^n as float32 for int32 n in [-127, 127], exactly (2^-127 is a float32 subnormal)."""
    a = tl.abs(n)
    up = tl.full(n.shape, 1.0, tl.float32)
    down = tl.full(n.shape, 1.0, tl.float32)
    for k in (64, 32, 16, 8, 4, 2, 1):
        c = a >= k
        a = tl.where(c, a - k, a)
        up = tl.where(c, up * 2.0 ** k, up)
        down = tl.where(c, down * 2.0 ** -k, down)
    return tl.where(n >= 0, up, down)


@tl.jit
def _mx_scale(am, FMAX, EMAX, RCEIL):
    """OCP MX shared scale of blocks with absolute maxima `am`: (1 / X as float32, E8M0 byte as int8).
    floor rule: X = 2^clamp(floor(log2(amax)) - EMAX, -127, 127); RCEIL (NVIDIA):
    X = 2^clamp(ceil(log2(fl32(amax / FMAX))), -127, 127). NaN or inf amax: byte 0xFF (NaN), 1/X = 1."""
    if RCEIL:
        e, m = _floor_log2(am / FMAX)
        sh = tl.where(m > 1.0, e + 1, e)
    else:
        e, m = _floor_log2(am)
        sh = e - EMAX
    sh = tl.minimum(tl.maximum(sh, -127), 127)
    bad = _isnan(am) | (am == INF)
    byte = tl.where(bad, 255, sh + 127)
    inv = tl.where(bad, 1.0, _pow2(0 - sh))
    return inv, byte.to(tl.int8)


@tl.jit
def _e8m0_value(byte):
    """The float32 value of E8M0 bytes given as int8 (0xFF is NaN)."""
    b = byte.to(tl.int32)
    b = tl.where(b < 0, b + 256, b)
    return tl.where(b == 255, NAN, _pow2(b - 127))


# ---------------------------------------------------------------------------------------------
# casts


@tl.jit
def cast_1d(x, y, B: tl.constexpr = 16384, SAT: tl.constexpr = False):
    """y = x.to(fp8) elementwise over a flat array."""
    for i in tl.grid(tl.cdiv(x.shape[0], B)):
        y[i * B:(i + 1) * B] = x[i * B:(i + 1) * B].to(y.dtype, saturate=SAT)


@tl.jit
def cast_2d(x, y, BR: tl.constexpr = 64, BC: tl.constexpr = 256, SAT: tl.constexpr = False,
            TRANS: tl.constexpr = False):
    """y (M, N) = x.to(fp8) for a strided 2-D x; with TRANS, `x` is the (N, M) array whose transpose
    is the input (its tiles load contiguously and are transposed in registers)."""
    M, N = y.shape
    for i, j in tl.grid(tl.cdiv(M, BR), tl.cdiv(N, BC)):
        if TRANS:
            t = x[j * BC:(j + 1) * BC, i * BR:(i + 1) * BR].T
        else:
            t = x[i * BR:(i + 1) * BR, j * BC:(j + 1) * BC]
        y[i * BR:(i + 1) * BR, j * BC:(j + 1) * BC] = t.to(y.dtype, saturate=SAT)


# ---------------------------------------------------------------------------------------------
# tensor (current) scaling: partial amax per program, one program reduces them, then scale + cast


AMAX_CHUNK = 32768  # elements per partial amax: fixed, so the partials' count does not depend on the tiles


@tl.jit
def amax_partial(x, part, B: tl.constexpr = 4096):
    """part[i] = max |x| over elements [i*AMAX_CHUNK, (i+1)*AMAX_CHUNK) (NaN propagates), in
    AMAX_CHUNK / B independent chains of B-element tiles (B divides AMAX_CHUNK)."""
    U = AMAX_CHUNK // B
    for i in tl.grid(tl.cdiv(x.shape[0], AMAX_CHUNK)):
        base = i * AMAX_CHUNK
        m = tl.abs(x[base:base + B].to(tl.float32))
        for u in range(1, U):
            m = tl.maximum(m, tl.abs(x[base + u * B:base + (u + 1) * B].to(tl.float32)))
        part[i] = tl.max(m)


@tl.jit
def tensor_scale(part, sc, scale, FMAX, B: tl.constexpr = 1024):
    """From the partial maxima of a whole tensor (one program): sc[0] = sq and scale[0] = 1 / sq."""
    acc = tl.zeros((B,), tl.float32)
    for k in tl.range(tl.cdiv(part.shape[0], B)):
        acc = tl.maximum(acc, part[k * B:(k + 1) * B])
    sq = _quant_scale(tl.max(acc), FMAX)
    sc[0] = sq
    scale[0] = 1.0 / sq


@tl.jit
def copy_scalar(src, dst, I: tl.constexpr = 0):
    """dst[0] = src[I]."""
    dst[0] = src[I]


@tl.jit
def scale_cast(x, q, sc, B: tl.constexpr = 16384, SAT: tl.constexpr = True):
    """q = (x * sc[0]).to(fp8) over a flat array."""
    s = sc[0]
    for i in tl.grid(tl.cdiv(x.shape[0], B)):
        q[i * B:(i + 1) * B] = (x[i * B:(i + 1) * B].to(tl.float32) * s).to(q.dtype, saturate=SAT)


@tl.jit
def scale_cast_amax(x, q, sc, part, B: tl.constexpr = 16384, SAT: tl.constexpr = True):
    """Delayed scaling in one pass: q = (x * sc[0]).to(fp8) and part[i] = max |x| of program i."""
    s = sc[0]
    for i in tl.grid(tl.cdiv(x.shape[0], B)):
        t = x[i * B:(i + 1) * B].to(tl.float32)
        q[i * B:(i + 1) * B] = (t * s).to(q.dtype, saturate=SAT)
        part[i] = tl.max(tl.abs(t))


@tl.jit
def delayed_record(part, hist, B: tl.constexpr = 1024):
    """hist[0] = max(hist[0], max(part)) (NaN-propagating): record a use without updating (one program)."""
    acc = tl.zeros((B,), tl.float32)
    for k in tl.range(tl.cdiv(part.shape[0], B)):
        acc = tl.maximum(acc, part[k * B:(k + 1) * B])
    hist[0] = tl.maximum(hist[0], tl.max(acc))


@tl.jit
def delayed_update(part, hist, new_hist, sc, SMAX, L: tl.constexpr = 1024, MOST_RECENT: tl.constexpr = False,
                   B: tl.constexpr = 1024):
    """TransformerEngine's amax-and-scale update (delayed_scaling.cu), one program.

    The step's amax, now = max(hist[0], max(part)) (NaN-propagating), is slot 0 of the history;
    amax = now ("most_recent") or the max over the window ("max", NaN entries ignored like CUDA's
    fmaxf); the scale becomes SMAX / amax (SMAX = FMAX * 2^-margin) when amax is finite and > 0, else
    it keeps its value; inf becomes FLT_MAX. new_hist = the history rolled by -1 (slot 0 to the end)
    with slot 0 zeroed. sc = [scale, 1 / scale] is read and rewritten."""
    acc = tl.zeros((B,), tl.float32)
    for k in tl.range(tl.cdiv(part.shape[0], B)):
        acc = tl.maximum(acc, part[k * B:(k + 1) * B])
    now = tl.maximum(hist[0], tl.max(acc))
    if MOST_RECENT:
        am = now
    else:
        am = tl.where(_isnan(now), 0.0, now)
        if L > 1:
            h = hist[1:L]
            am = tl.maximum(am, tl.max(tl.where(_isnan(h), 0.0, h)))
    ok = (am > 0.0) & (am < INF)
    s = tl.where(ok, SMAX / am, sc[0])
    s = tl.where(s == INF, FLT_MAX, s)
    sc[0] = s
    sc[1] = 1.0 / s
    if L > 1:
        new_hist[0:L - 1] = hist[1:L]
    new_hist[L - 1] = now
    new_hist[0] = 0.0


# ---------------------------------------------------------------------------------------------
# row scaling (one scale per row of the reduced axis)


@tl.jit
def quant_rows(x, q, s, FMAX, BR: tl.constexpr = 8, BK: tl.constexpr = 2048, SAT: tl.constexpr = True):
    """x, q (M, K); s (M, 1): one scale per row. Two sweeps over each strip of BR rows (the second
    one hits the cache for strips that fit)."""
    M, K = x.shape
    for i in tl.grid(tl.cdiv(M, BR)):
        am = tl.zeros((BR, 1), tl.float32)
        for k in tl.range(tl.cdiv(K, BK)):
            t = tl.abs(x[i * BR:(i + 1) * BR, k * BK:(k + 1) * BK].to(tl.float32))
            am = tl.maximum(am, tl.max(t, axis=1, keepdims=True))
        sq = _quant_scale(am, FMAX)
        s[i * BR:(i + 1) * BR, 0:1] = 1.0 / sq
        for k in tl.range(tl.cdiv(K, BK)):
            t = x[i * BR:(i + 1) * BR, k * BK:(k + 1) * BK].to(tl.float32)
            q[i * BR:(i + 1) * BR, k * BK:(k + 1) * BK] = (t * sq).to(q.dtype, saturate=SAT)


@tl.jit
def quant_mid(x, q, s, FMAX, BR: tl.constexpr = 64, BQ: tl.constexpr = 256, SAT: tl.constexpr = True):
    """x, q (P, R, Q); s (P, 1, Q): one scale per (p, q) column, reducing over the middle axis."""
    P, R, Q = x.shape
    for p, j in tl.grid(P, tl.cdiv(Q, BQ)):
        am = tl.zeros((1, BQ), tl.float32)
        for r in tl.range(tl.cdiv(R, BR)):
            t = tl.abs(x[p, r * BR:(r + 1) * BR, j * BQ:(j + 1) * BQ].to(tl.float32))
            am = tl.maximum(am, tl.max(t, axis=0, keepdims=True))
        sq = _quant_scale(am, FMAX)
        s[p, 0:1, j * BQ:(j + 1) * BQ] = 1.0 / sq
        for r in tl.range(tl.cdiv(R, BR)):
            t = x[p, r * BR:(r + 1) * BR, j * BQ:(j + 1) * BQ].to(tl.float32)
            q[p, r * BR:(r + 1) * BR, j * BQ:(j + 1) * BQ] = (t * sq).to(q.dtype, saturate=SAT)


# ---------------------------------------------------------------------------------------------
# block and MX scaling: every group lies inside one tile


@tl.jit
def quant_blocks(x, q, s, FMAX, RB: tl.constexpr = 1, CB: tl.constexpr = 128, BR: tl.constexpr = 16,
                 BC: tl.constexpr = 128, SAT: tl.constexpr = True, MX: tl.constexpr = 0, EMAX: tl.constexpr = 8):
    """x, q (Z, M, K) in blocks of RB x CB elements of the last two axes, s (Z, ceil(M/RB), ceil(K/CB)).

    RB == 1: tiles of BR rows x CB columns, one scale per row (1 x CB blocks, e.g. DeepSeek 1x128, MX).
    CB == 1: tiles of RB rows x BC columns, one scale per column (RB x 1 blocks).
    otherwise: one RB x CB block per tile (e.g. DeepSeek 128x128 weight blocks).
    MX: 0 float32 scales; 1 E8M0 scales, OCP floor rule; 2 E8M0 scales, RCEIL (`s` is then int8)."""
    Z, M, K = x.shape
    if RB == 1:
        for z, i, j in tl.grid(Z, tl.cdiv(M, BR), tl.cdiv(K, CB)):
            t = x[z, i * BR:(i + 1) * BR, j * CB:(j + 1) * CB].to(tl.float32)
            am = tl.max(tl.abs(t), axis=1)  # (BR,): the per-block math runs across vector lanes
            if MX == 0:
                sq = _quant_scale(am, FMAX)
                sv = 1.0 / sq
            else:
                sq, sv = _mx_scale(am, FMAX, EMAX, MX == 2)
            q[z, i * BR:(i + 1) * BR, j * CB:(j + 1) * CB] = (t * sq.reshape(BR, 1)).to(q.dtype, saturate=SAT)
            s[z, i * BR:(i + 1) * BR, j] = sv
    elif CB == 1:
        for z, i, j in tl.grid(Z, tl.cdiv(M, RB), tl.cdiv(K, BC)):
            t = x[z, i * RB:(i + 1) * RB, j * BC:(j + 1) * BC].to(tl.float32)
            am = tl.max(tl.abs(t), axis=0, keepdims=True)
            sq = _quant_scale(am, FMAX)
            q[z, i * RB:(i + 1) * RB, j * BC:(j + 1) * BC] = (t * sq).to(q.dtype, saturate=SAT)
            s[z, i:i + 1, j * BC:(j + 1) * BC] = 1.0 / sq
    else:
        for z, i, j in tl.grid(Z, tl.cdiv(M, RB), tl.cdiv(K, CB)):
            t = x[z, i * RB:(i + 1) * RB, j * CB:(j + 1) * CB].to(tl.float32)
            am = tl.max(tl.abs(t))
            sq = _quant_scale(am, FMAX)
            q[z, i * RB:(i + 1) * RB, j * CB:(j + 1) * CB] = (t * sq).to(q.dtype, saturate=SAT)
            s[z, i, j] = 1.0 / sq


# ---------------------------------------------------------------------------------------------
# dequantization


@tl.jit
def _scale_index(i, B, G):
    """The scales of tile i (B elements) along an axis with one scale per G elements: a slice of B for
    G = 1, the single scale for G = 0, else the scale of the tile's block."""
    if G == 1:
        return slice(i * B, (i + 1) * B)
    elif G == 0:
        return 0
    return (i * B) // G


@tl.jit
def dequant(q, s, out, RB: tl.constexpr = 0, CB: tl.constexpr = 0, BR: tl.constexpr = 1,
            BC: tl.constexpr = 16384, MX: tl.constexpr = False):
    """out = q * scale over (Z, M, K) arrays, s (Z, ., .) with one scale per RB x CB group of the last
    two axes. Per axis: 1 = one scale per element (a per-row or per-column scale), 0 = one scale for
    the whole axis, n > 1 = blocks of n (BR divides RB, BC divides CB). MX: `s` holds E8M0 bytes."""
    Z, M, K = q.shape
    for z, i, j in tl.grid(Z, tl.cdiv(M, BR), tl.cdiv(K, BC)):
        # an axis with one scale per tile is indexed (dropped), so a per-row scale is a (BR,) vector
        sv = s[z, _scale_index(i, BR, RB), _scale_index(j, BC, CB)]
        if MX:
            sv = _e8m0_value(sv)
        if RB == 1 and CB != 1:
            sv = sv.reshape(BR, 1)
        t = q[z, i * BR:(i + 1) * BR, j * BC:(j + 1) * BC].to(tl.float32) * sv
        out[z, i * BR:(i + 1) * BR, j * BC:(j + 1) * BC] = t.to(out.dtype)


# ---------------------------------------------------------------------------------------------
# scaled matmul


@tl.jit
def scaled_mm(a, b, sa, sb, bias, c, sres, BM: tl.constexpr = 128, BN: tl.constexpr = 128,
              BK: tl.constexpr = 512, AM: tl.constexpr = 0, BMODE: tl.constexpr = 0, BLK: tl.constexpr = 128,
              BT: tl.constexpr = False, CONV: tl.constexpr = False, HAS_BIAS: tl.constexpr = False,
              SRES: tl.constexpr = False, SAT: tl.constexpr = False):
    """c (M, N) = cast(((sum_k a[m, k] b[k, n]) * scales) + bias) with float32 accumulation.

    Scale modes (AM for `sa`, BMODE for `sb`): 0 tensor-wise (a (1, 1) array), 1 row-wise (sa (M, 1),
    sb (1, N)), 2 one scale per 1 x BLK block along K (sa (M, KB), sb (KB, N)), 3 one per BLK x BLK
    block (sa (ceil(M/BLK), KB), sb (KB, ceil(N/BLK))). Modes 0/1 scale the float32 sum at the end;
    modes 2/3 scale each K block's partial product before it is accumulated (BK == BLK then, and
    BLK is a multiple of BM / BN for mode 3). With BT, `b` is passed transposed, (N, K). CONV widens
    both operands to bfloat16 first (exact; needed when their FP8 formats differ). SRES divides the
    result by sres[0, 0] (the output's dequantization scale); SAT saturates an FP8 output."""
    M, K = a.shape
    N = c.shape[1]
    for i, j in tl.grid(tl.cdiv(M, BM), tl.cdiv(N, BN)):
        acc = tl.zeros((BM, BN), tl.float32)
        for k in tl.range(tl.cdiv(K, BK)):
            at = a[i * BM:(i + 1) * BM, k * BK:(k + 1) * BK]
            if BT:
                bt = b[j * BN:(j + 1) * BN, k * BK:(k + 1) * BK].T
            else:
                bt = b[k * BK:(k + 1) * BK, j * BN:(j + 1) * BN]
            if CONV:
                at = at.to(tl.bfloat16)
                bt = bt.to(tl.bfloat16)
            if AM >= 2 or BMODE >= 2:
                acc = acc + tl.dot(at, bt) * _block_scale(sa, sb, i, j, k, BM, BN, AM, BMODE, BLK)
            else:
                acc += tl.dot(at, bt)
        _scaled_out(acc, sa, sb, bias, c, sres, i, j, BM, BN, AM, BMODE, HAS_BIAS, SRES, SAT)


@tl.jit
def _block_scale(sa, sb, i, j, k, BM, BN, AM, BMODE, BLK):
    """What K block k's partial product of the (BM, BN) block (i, j) is scaled by: the block scales of
    `sa` (mode 2: per row, 3: per BLK x BLK block) times those of `sb` (2: per column, 3: per block)."""
    f = 1.0
    if AM == 2:
        f = sa[i * BM:(i + 1) * BM, k:k + 1]
    elif AM == 3:
        f = sa[(i * BM) // BLK, k]
    if BMODE == 2:
        f = f * sb[k:k + 1, j * BN:(j + 1) * BN]
    elif BMODE == 3:
        f = f * sb[k, (j * BN) // BLK]
    return f


@tl.jit
def scaled_mm_packed(ap, bp, sa, sb, bias, c, sres, BM: tl.constexpr = 256, BN: tl.constexpr = 512,
                     BK: tl.constexpr = 256, W: tl.constexpr = 32, AM: tl.constexpr = 0, BMODE: tl.constexpr = 0,
                     BLK: tl.constexpr = 128, HAS_BIAS: tl.constexpr = False, SRES: tl.constexpr = False,
                     SAT: tl.constexpr = False):
    """scaled_mm on the operands `ops.matmul.pack_operands` packed (ap (1, MB, KB, BM, BK), bp (1, P, Kq, 2W),
    bfloat16: FP8 widens exactly); with block scales BK == BLK, as in scaled_mm."""
    MB, KB = ap.shape[1], ap.shape[2]
    N = c.shape[1]
    for i, j in tl.grid(MB, tl.cdiv(N, BN)):
        if AM >= 2 or BMODE >= 2:
            acc = tl.zeros((BM, BN), tl.float32)
            for k in tl.range(KB):
                acc = acc + packed_dot(ap, bp, 0, i, j, k, BM, BN, BK, W) * _block_scale(sa, sb, i, j, k, BM, BN,
                                                                                           AM, BMODE, BLK)
        else:
            acc = packed_block(ap, bp, 0, i, j, KB, BM, BN, BK, W)
        _scaled_out(acc, sa, sb, bias, c, sres, i, j, BM, BN, AM, BMODE, HAS_BIAS, SRES, SAT)


@tl.jit
def _scaled_out(acc, sa, sb, bias, c, sres, i, j, BM, BN, AM, BMODE, HAS_BIAS, SRES, SAT):
    """c's (BM, BN) block (i, j) from the float32 sum `acc`: tensor / row scales, bias, result scale, cast."""
    out = acc
    if AM == 0:
        out = out * sa[0, 0]
    elif AM == 1:
        out = out * sa[i * BM:(i + 1) * BM, 0:1]
    if BMODE == 0:
        out = out * sb[0, 0]
    elif BMODE == 1:
        out = out * sb[0:1, j * BN:(j + 1) * BN]
    if HAS_BIAS:
        out = out + bias[0:1, j * BN:(j + 1) * BN].to(tl.float32)
    if SRES:
        out = out / sres[0, 0]
    c[i * BM:(i + 1) * BM, j * BN:(j + 1) * BN] = out.to(c.dtype, saturate=SAT)
