"""Autotuning and the accelerator model (specs + pricing)."""
from autotune.accelerator import Accelerator, get_accelerator, list_accelerators
from autotune.pricing import Estimate, price
from autotune.estimate import estimate

__all__ = ["Accelerator", "Estimate", "estimate", "get_accelerator", "list_accelerators", "price"]
