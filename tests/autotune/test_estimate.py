"""autotune.estimate: trace + analyze + price a kernel call without running it."""
import numpy as np
import pytest

import autotune
from autotune import estimate, get_accelerator, price
from autotune.estimate import counts
from benchmarks.kernels import add as vadd
from benchmarks.kernels import matmul


def operands(n=256):
    a = np.ones((n, n), np.float32)
    return a, a.copy(), np.empty((n, n), np.float32)


def test_exported():
    assert autotune.estimate is estimate
    assert "estimate" in autotune.__all__


@pytest.mark.parametrize("target", ["trn2", "h100", "host"])
def test_matmul_estimate(target):
    a, b, c = operands()
    est = estimate(matmul, a, b, c, BM=64, BN=64, BK=64, target=target)
    assert est.flops == 2.0 * 256 ** 3
    assert est.seconds > 0 and est.joules > 0 and est.flop_per_joule > 0
    assert est.target in (target, "host")
    # the same as pricing the counts by hand
    acc = get_accelerator(target)
    assert est.seconds == pytest.approx(price(counts(matmul, a, b, c, BM=64, BN=64, BK=64), acc).seconds)


def test_accepts_an_accelerator_and_threads():
    a, b, c = operands()
    acc = get_accelerator("trn2")
    one = estimate(matmul, a, b, c, target=acc, threads=1, BM=64, BN=64, BK=64)
    many = estimate(matmul, a, b, c, target=acc, BM=64, BN=64, BK=64)
    assert one.cores_used == 1 and many.cores_used > 1
    assert one.seconds > many.seconds


def test_bigger_tiles_move_fewer_bytes():
    a, b, c = operands(512)
    small = counts(matmul, a, b, c, BM=16, BN=16, BK=64)
    big = counts(matmul, a, b, c, BM=128, BN=128, BK=64)
    assert small.bytes["offchip"] == big.bytes["offchip"]
    assert small.bytes["onchip"] > big.bytes["onchip"]
    assert small.programs == 1024 and big.programs == 16


def test_memory_bound_vector_add():
    x = np.ones(1 << 20, np.float32)
    est = estimate(vadd, x, x.copy(), np.empty_like(x), target="h100")
    assert est.bound == "HBM"


def test_nothing_runs():
    a, b, _ = operands(64)
    c = np.full((64, 64), 7.0, np.float32)
    estimate(matmul, a, b, c, target="trn2", BM=64, BN=64, BK=64)
    assert (c == 7.0).all()


def test_rejects_non_kernels():
    with pytest.raises(TypeError, match="tl.jit"):
        estimate(lambda x: x, np.ones(3))


def test_estimate_is_a_method_of_every_kernel():
    from ops.matmul import matmul_kernel
    a = np.zeros((1, 256, 256), np.float32)
    e = matmul_kernel.estimate(a, a, a.copy(), target="trn2", BM=64, BN=64, BK=64)
    direct = autotune.estimate(matmul_kernel, a, a, a.copy(), target="trn2", BM=64, BN=64, BK=64)
    assert e.seconds == direct.seconds and e.flops == 2 * 256 ** 3
