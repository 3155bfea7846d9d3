"""Autotuning and the accelerator model (specs + pricing)."""
from autotune.accelerator import Accelerator, get_accelerator, list_accelerators
from autotune.pricing import Estimate, price

__all__ = ["Accelerator", "Estimate", "get_accelerator", "list_accelerators", "price"]
