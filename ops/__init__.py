"""The op library: tuned kernels written in the language, behind a NumPy API.

Each op has a NumPy reference beside it (`ref_*`) with written-down tolerances.
"""
from ops.attention import attention, ref_attention
from ops.matmul import matmul, ref_matmul

__all__ = ["attention", "matmul", "ref_attention", "ref_matmul"]
