"""Pricing: roofline time with overlap, energy, bounds, diagnostics."""
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autotune import Accelerator, Estimate, get_accelerator, price
from autotune.pricing import matrix_utilization
from codegen.counts import KernelCounts

TOY = {
    "name": "toy", "clock_hz": 1e9, "cores": 4, "static_power_w": 10.0, "program_overhead_s": 1e-6,
    "engines": [
        {"name": "MXU", "role": "matrix", "flops_per_cycle": {"bfloat16": 1000, "float8_e4m3fn": 2000},
         "pj_per_flop": {"bfloat16": 0.5, "float8_e4m3fn": 0.25}},
        {"name": "VPU", "role": "vector", "flops_per_cycle": {"float32": 100}, "pj_per_flop": {"float32": 2.0}},
        {"name": "SPU", "role": "scalar", "flops_per_cycle": {"float32": 10}, "pj_per_flop": {"float32": 4.0}},
    ],
    "memory": [
        {"name": "HBM", "role": "offchip", "capacity_bytes": 1 << 30, "per_core": False,
         "bandwidth_bytes_per_s": 1e11, "pj_per_byte": 10.0},
        {"name": "SBUF", "role": "onchip", "capacity_bytes": 1 << 20, "per_core": True,
         "bandwidth_bytes_per_s": 1e12, "pj_per_byte": 1.0},
        {"name": "PSUM", "role": "local", "capacity_bytes": 1 << 16, "per_core": True,
         "bandwidth_bytes_per_s": 2e12, "pj_per_byte": 0.5},
    ],
    "tile": {"partition_dim": 128, "max_stationary_free": 128, "max_moving_free": 512, "matmul_min_cycles": 64,
             "psum_bank_bytes": 2048},
    "sources": {},
}


@pytest.fixture(scope="module")
def toy() -> Accelerator:
    return Accelerator.from_dict(TOY)


def test_compute_bound(toy):
    counts = KernelCounts(flops={("matrix", "bfloat16"): 8e12}, bytes={"offchip": 1e9}, programs=4)
    est = price(counts, toy)
    assert est.bound == "matrix:bfloat16"
    compute = 8e12 / (1000 * 1e9 * 4)  # 2 s on 4 cores
    assert est.times["matrix:bfloat16"] == pytest.approx(compute)
    assert est.times["HBM"] == pytest.approx(1e9 / 1e11)
    assert est.seconds == pytest.approx(compute + 1e-6)  # overlap: max, not sum; one wave of overhead
    assert est.cores_used == 4 and est.energy_source == "modeled"


def test_memory_bound(toy):
    counts = KernelCounts(flops={("matrix", "bfloat16"): 1e9}, bytes={"offchip": 5e11, "onchip": 1e9},
                          programs=8)
    est = price(counts, toy)
    assert est.bound == "HBM"
    assert est.seconds == pytest.approx(5e11 / 1e11 + 2 * 1e-6)  # 8 programs on 4 cores: 2 waves


def test_per_core_level_scales_with_cores_and_shared_does_not(toy):
    one = price(KernelCounts(bytes={"onchip": 4e12, "offchip": 1e11}, programs=1), toy)
    four = price(KernelCounts(bytes={"onchip": 4e12, "offchip": 1e11}, programs=4), toy)
    assert one.times["SBUF"] == pytest.approx(4.0) and four.times["SBUF"] == pytest.approx(1.0)
    assert one.times["HBM"] == four.times["HBM"] == pytest.approx(1.0)


def test_energy_is_actions_plus_static(toy):
    counts = KernelCounts(flops={("matrix", "bfloat16"): 4e12, ("vector", "float32"): 1e9},
                          bytes={"offchip": 1e10, "onchip": 2e10, "local": 4e10}, programs=4)
    est = price(counts, toy)
    actions = (4e12 * 0.5 + 1e9 * 2.0 + 1e10 * 10 + 2e10 * 1.0 + 4e10 * 0.5) * 1e-12
    assert est.joules == pytest.approx(actions + 10.0 * est.seconds)
    assert est.watts == pytest.approx(est.joules / est.seconds)
    assert est.flop_per_joule == pytest.approx((4e12 + 1e9) / est.joules)


def test_core_power_counts_active_cores():
    host = get_accelerator("host_default")
    counts = KernelCounts(flops={("vector", "float32"): 1e9}, programs=1)
    one, two = price(counts, host, threads=1), price(KernelCounts(flops=counts.flops, programs=2), host)
    assert one.cores_used == 1 and two.cores_used == 2
    for est in (one, two):
        actions = 1e9 * host.pj_per_flop("vector", "float32") * 1e-12
        power = host.static_power_w + host.core_power_w * est.cores_used
        assert est.joules == pytest.approx(actions + power * est.seconds)


def test_threads_cap_cores_and_waves_quantize(toy):
    counts = KernelCounts(flops={("vector", "float32"): 4e11}, programs=4)
    assert price(counts, toy, threads=1).times["vector:float32"] == pytest.approx(4.0)
    assert price(counts, toy).times["vector:float32"] == pytest.approx(1.0)
    five = price(KernelCounts(flops={("vector", "float32"): 5e11}, programs=5), toy)
    assert five.times["vector:float32"] == pytest.approx(2.0)  # 2 waves: the tail runs on 1 core
    with pytest.raises(ValueError, match="threads"):
        price(counts, toy, threads=0)


def test_overhead_bound_for_tiny_kernels(toy):
    est = price(KernelCounts(flops={("vector", "float32"): 10}, programs=400), toy)
    assert est.bound == "overhead" and est.overhead_s == pytest.approx(100 * 1e-6)


def test_capacity_violation_names_the_level():
    trn2 = get_accelerator("trn2")
    fits = price(KernelCounts(footprint={"onchip": 20 << 20, "local": 1 << 20}), trn2)
    assert fits.diagnostics == ()
    est = price(KernelCounts(footprint={"onchip": 30 << 20, "local": 3 << 20}), trn2)
    assert any("SBUF" in d and "30.0 MiB" in d and "28.0 MiB" in d for d in est.diagnostics)
    assert any("PSUM" in d for d in est.diagnostics)


def test_shared_level_holds_all_concurrent_programs():
    h100 = get_accelerator("h100")
    one = price(KernelCounts(footprint={"onchip": 1 << 20}, programs=1), h100)
    many = price(KernelCounts(footprint={"onchip": 1 << 20}, programs=132), h100)
    assert one.diagnostics == ()
    assert any("L2" in d and "132 concurrent" in d for d in many.diagnostics)


def test_dot_over_partition_dim_is_diagnosed_on_targets_with_one():
    counts = KernelCounts(flops={("matrix", "bfloat16"): 1e9}, dot_shapes=((128, 512, 256),))
    trn2 = price(counts, get_accelerator("trn2"))
    assert any("K=256 exceeds the partition dimension 128" in d for d in trn2.diagnostics)
    assert not any("partition" in d for d in price(counts, get_accelerator("h100")).diagnostics)
    wide = price(KernelCounts(flops={("matrix", "bfloat16"): 1e9}, dot_shapes=((256, 1024, 128),)),
                 get_accelerator("trn2"))
    assert any("M=256 exceeds the stationary free size 128" in d for d in wide.diagnostics)
    assert any("N=1024 exceeds the moving free size 512" in d for d in wide.diagnostics)


def test_matrix_utilization_from_dot_shapes():
    trn2, trn3 = get_accelerator("trn2"), get_accelerator("trn3")
    bf16 = {("matrix", "bfloat16"): 1.0}
    assert matrix_utilization(KernelCounts(flops=bf16, dot_shapes=((128, 512, 128),)), trn2) == 1.0
    assert matrix_utilization(KernelCounts(flops=bf16, dot_shapes=((128, 32, 128),)), trn2) == 0.5  # 64 cycles
    assert matrix_utilization(KernelCounts(flops=bf16, dot_shapes=((64, 512, 128),)), trn2) == 0.5
    fp8 = {("matrix", "float8_e4m3fn"): 1.0}
    assert matrix_utilization(KernelCounts(flops=fp8, dot_shapes=((128, 512, 128),)), trn3) == 0.25  # MX x4
    assert matrix_utilization(KernelCounts(flops=fp8, dot_shapes=((128, 512, 512),)), trn3) == 1.0
    host = get_accelerator("host_default")
    assert matrix_utilization(KernelCounts(flops=bf16, dot_shapes=((24, 16, 32),)), host) == 0.75
    slow = price(KernelCounts(flops={("matrix", "bfloat16"): 1e12}, dot_shapes=((128, 32, 128),), programs=8),
                 trn2)
    fast = price(KernelCounts(flops={("matrix", "bfloat16"): 1e12}, dot_shapes=((128, 512, 128),), programs=8),
                 trn2)
    assert slow.times["matrix:bfloat16"] == pytest.approx(2 * fast.times["matrix:bfloat16"])


def test_unsupported_dtype_falls_back_to_vector_engine():
    trn2 = get_accelerator("trn2")
    est = price(KernelCounts(flops={("matrix", "int8"): 1e12}, programs=8), trn2)
    assert est.bound == "vector:float32"
    assert any("no int8 rate" in d and "VectorE" in d for d in est.diagnostics)
    vec = trn2.engine("vector")
    assert est.times["vector:float32"] == pytest.approx(1e12 / (vec.flops_per_cycle["float32"] * vec.clock_hz * 8))


def test_unknown_memory_role_is_an_error(toy):
    with pytest.raises(ValueError, match="no memory level 'l3'.*offchip"):
        price(KernelCounts(bytes={"l3": 1.0}), toy)


def test_empty_counts(toy):
    est = price(KernelCounts(), toy)
    assert isinstance(est, Estimate) and est.bound == "overhead"
    assert est.seconds == pytest.approx(1e-6) and est.flop_per_joule == 0.0


counts_strategy = st.builds(
    KernelCounts,
    flops=st.dictionaries(st.sampled_from([("matrix", "bfloat16"), ("matrix", "float8_e4m3fn"),
                                           ("vector", "float32"), ("scalar", "float32")]),
                          st.floats(0, 1e15)),
    bytes=st.dictionaries(st.sampled_from(["offchip", "onchip", "local"]), st.floats(0, 1e13)),
    programs=st.integers(1, 10_000))


@settings(max_examples=60, deadline=None)
@given(counts=counts_strategy, extra=st.floats(1.0, 1e12))
def test_roofline_properties(toy, counts, extra):
    est = price(counts, toy)
    assert est.seconds >= max(est.times.values(), default=0.0)
    assert est.seconds == pytest.approx(max(est.times.values(), default=0.0) + est.overhead_s)
    assert est.joules >= toy.static_power_w * est.seconds * (1 - 1e-12)
    more = KernelCounts(flops=counts.flops, bytes={**counts.bytes, "offchip": counts.bytes.get("offchip", 0) + extra},
                        programs=counts.programs)
    priced = price(more, toy)
    assert priced.seconds >= est.seconds and priced.joules >= est.joules
    assert math.isfinite(est.flop_per_joule)
