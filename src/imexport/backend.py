"""Choose the array library that the numerical code runs on: numpy (CPU) or cupy (GPU).

The phase and axial estimators take an ``xp`` namespace and call only functions that
numpy and cupy share, so the CPU and GPU paths are one and the same code.

``gpu: auto`` uses cupy when it is installed and sees a CUDA device. Setting the
environment variable ``IMEXPORT_GPU=0`` (or ``off``, ``false``, ``no``, ``cpu``, ``none``)
keeps ``auto`` on the CPU, e.g. on a login node whose GPU belongs to someone else.
``gpu: true`` insists on cupy and fails loudly rather than silently running on the CPU.
"""

from __future__ import annotations

import os
from types import ModuleType
from typing import Any

import numpy as np

GPU_ENV_VAR = "IMEXPORT_GPU"
_CPU_ONLY_ENV_VALUES = frozenset({"0", "off", "false", "no", "cpu", "none"})
_REQUESTS = {"auto": "auto", "true": True, "false": False}


def array_module(gpu: bool | str = "auto") -> tuple[ModuleType, str]:
    """Return ``(xp, name)``: the array module to compute with and ``"cupy"`` or ``"numpy"``.

    ``gpu`` is ``"auto"``, ``True`` or ``False`` (the strings ``"true"``/``"false"`` come
    from YAML or the command line and mean the same as the booleans).
    """
    request = _parse_gpu_request(gpu)
    if request is False:
        return np, "numpy"
    if request == "auto":
        if _cpu_forced_by_env():
            return np, "numpy"
        cupy, _ = _cupy_with_device()
        return (cupy, "cupy") if cupy is not None else (np, "numpy")
    cupy, missing = _cupy_with_device()
    if cupy is None:
        raise RuntimeError(
            f"gpu: true was requested but {missing}; `pip install imexport[gpu]` "
            "provides cupy, or set gpu: auto to fall back to the CPU"
        )
    return cupy, "cupy"


def to_numpy(a: Any) -> np.ndarray:
    """Bring an array (numpy or cupy) to host memory as a numpy array."""
    if type(a).__module__.split(".")[0] == "cupy":
        import cupy

        return cupy.asnumpy(a)
    return np.asarray(a)


def _parse_gpu_request(gpu: bool | str) -> bool | str:
    if isinstance(gpu, bool):
        return gpu
    if isinstance(gpu, str) and gpu.strip().lower() in _REQUESTS:
        return _REQUESTS[gpu.strip().lower()]
    raise ValueError(f"gpu must be 'auto', true or false, not {gpu!r}")


def _cpu_forced_by_env() -> bool:
    return os.environ.get(GPU_ENV_VAR, "").strip().lower() in _CPU_ONLY_ENV_VALUES


def _cupy_with_device() -> tuple[ModuleType | None, str]:
    """Return ``(cupy, "")`` when it can compute, else ``(None, what is missing)``."""
    # Broad excepts: a broken CUDA install fails the import with errors other than
    # ImportError, and a missing driver raises from getDeviceCount instead of returning 0.
    try:
        import cupy
    except Exception as exc:
        return None, f"cupy cannot be imported ({exc})"
    try:
        n_devices = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:
        return None, f"cupy finds no CUDA device ({exc})"
    if n_devices < 1:
        return None, "cupy finds no CUDA device"
    return cupy, ""
