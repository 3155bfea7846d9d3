"""Autotuning and the accelerator model (specs + pricing)."""
from autotune.accelerator import Accelerator, get_accelerator, list_accelerators
from autotune.database import TuningDatabase
from autotune.estimate import estimate
from autotune.measure import Options
from autotune.objectives import Result, TuneResult
from autotune.pricing import Estimate, price
from autotune.space import Config
from autotune.tuner import Autotuner, autotune, lookup, precompile, tune

__all__ = ["Accelerator", "Autotuner", "Config", "Estimate", "Options", "Result", "TuneResult", "TuningDatabase",
           "autotune", "estimate", "get_accelerator", "list_accelerators", "lookup", "precompile", "price", "tune"]
