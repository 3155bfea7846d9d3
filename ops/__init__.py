"""The op library: tuned kernels written in the language, behind a NumPy API.

Each op has a NumPy reference beside it (`ref_*`) with written-down tolerances.
"""
from ops.attention import attention, ref_attention
from ops.fp8 import DelayedScaling, cast_fp8, dequantize_fp8, quantize_fp8, scaled_matmul
from ops.fp8_ref import ref_cast_fp8, ref_dequantize_fp8, ref_quantize_fp8, ref_scaled_matmul
from ops.matmul import matmul, ref_matmul

__all__ = ["DelayedScaling", "attention", "cast_fp8", "dequantize_fp8", "matmul", "quantize_fp8", "ref_attention",
           "ref_cast_fp8", "ref_dequantize_fp8", "ref_matmul", "ref_quantize_fp8", "ref_scaled_matmul",
           "scaled_matmul"]
