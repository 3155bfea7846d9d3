"""The tutorial kernels (vector add, fused softmax, layer norm, a simple matmul): the end-to-end tests, the
core benchmark and the model/dot benchmarks all run these same definitions."""
import tilelang as tl


@tl.jit
def add(x, y, out, B: tl.constexpr = 1024):
    for i in tl.grid(tl.cdiv(x.shape[0], B)):
        out[i * B:(i + 1) * B] = x[i * B:(i + 1) * B] + y[i * B:(i + 1) * B]


@tl.jit
def softmax(x, y, BR: tl.constexpr = 8, N: tl.constexpr = 1024):
    for r in tl.grid(tl.cdiv(x.shape[0], BR)):
        t = tl.load(x[r * BR:(r + 1) * BR, 0:N], fill=float("-inf")).to(tl.float32)
        e = tl.exp(t - t.max(axis=1, keepdims=True))
        y[r * BR:(r + 1) * BR, 0:N] = (e / e.sum(axis=1, keepdims=True)).to(y.dtype)


@tl.jit
def layer_norm(x, w, b, y, eps, BR: tl.constexpr = 4, N: tl.constexpr = 256):
    n = x.shape[1]
    for r in tl.grid(tl.cdiv(x.shape[0], BR)):
        t = x[r * BR:(r + 1) * BR, 0:N].to(tl.float32)
        mean = t.sum(axis=1, keepdims=True) / n
        cols = tl.arange(0, N).reshape(1, N)
        d = tl.where(cols < n, t - mean, 0.0)
        var = (d * d).sum(axis=1, keepdims=True) / n
        out = d * tl.rsqrt(var + eps) * w[0:N].to(tl.float32) + b[0:N].to(tl.float32)
        y[r * BR:(r + 1) * BR, 0:N] = out


@tl.jit
def matmul(a, b, c, BM: tl.constexpr = 32, BN: tl.constexpr = 32, BK: tl.constexpr = 32):
    M, K = a.shape
    N = b.shape[1]
    for i, j in tl.grid(tl.cdiv(M, BM), tl.cdiv(N, BN)):
        acc = tl.zeros((BM, BN), tl.float32)
        for k in tl.range(tl.cdiv(K, BK)):
            acc += tl.dot(a[i * BM:(i + 1) * BM, k * BK:(k + 1) * BK], b[k * BK:(k + 1) * BK, j * BN:(j + 1) * BN])
        c[i * BM:(i + 1) * BM, j * BN:(j + 1) * BN] = acc
