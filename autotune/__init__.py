"""Autotuning and the accelerator model (specs + pricing)."""
from autotune.accelerator import Accelerator, get_accelerator, list_accelerators
from autotune.pricing import Estimate, price
from autotune.estimate import estimate

__all__ = ["Accelerator", "Estimate", "estimate", "get_accelerator", "list_accelerators", "price"]

# The tuner, imported on first use (`import autotune` for the model alone stays light).
_TUNER = {"Autotuner": "autotune.tuner", "autotune": "autotune.tuner", "lookup": "autotune.tuner",
          "precompile": "autotune.tuner", "tune": "autotune.tuner", "Options": "autotune.measure",
          "Config": "autotune.space", "Result": "autotune.objectives", "TuneResult": "autotune.objectives",
          "TuningDatabase": "autotune.database"}
__all__ += ["Autotuner", "Config", "Options", "Result", "TuneResult", "TuningDatabase", "autotune", "lookup",
            "precompile", "tune"]


def __getattr__(name: str):
    if name in _TUNER:
        import importlib
        return getattr(importlib.import_module(_TUNER[name]), name)
    raise AttributeError(f"module 'autotune' has no attribute {name!r}")
