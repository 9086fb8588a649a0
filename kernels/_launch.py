"""Low-overhead launches of already-compiled Triton kernels.

``kernel[grid](*args, **meta)`` spends most of a launch in Python: binding the arguments,
specializing each one and hashing the key of Triton's kernel cache. On the H200 host a launch of the
one-tile fftconv kernel (~20 arguments) took ~40 us against ~16 us for a one-argument kernel
(bench/host_overhead.py), longer than the kernel itself at short lengths. ``launcher(kernel)``
returns an object used the same way (``launcher(k)[grid](*args, **meta)``) that keeps the compiled
kernel per specialization key and calls its launcher directly. The key holds what Triton
specializes on (constexpr values, options, each tensor's dtype and 16-byte alignment, each
integer's ==1 / %16 / 64-bit class), so a call that Triton would compile differently takes the
normal path. The first call of each key, the interpreter (``TRITON_INTERPRET=1``) and
``TSMODELS_FAST_LAUNCH=0`` go through ``kernel[grid]`` unchanged.
"""

from __future__ import annotations

import os

import torch

_DISABLED = os.environ.get("TSMODELS_FAST_LAUNCH", "1") == "0"


def _arg_key(v):
    if isinstance(v, torch.Tensor):
        return v.dtype, v.data_ptr() & 15 == 0, v.device.index
    if isinstance(v, bool):
        return bool
    if isinstance(v, int):
        return v == 1, v & 15 == 0, v.bit_length() > 31, v < 0
    if isinstance(v, float):
        return float
    return type(v), v


class _Launcher:
    def __init__(self, kernel):
        self.kernel = kernel
        params = getattr(kernel, "params", None)  # an interpreted function (TRITON_INTERPRET=1) has none
        self.names = [p.name for p in params or ()]
        self.const = [p.is_constexpr for p in params or ()]
        self.cache: dict = {}
        self.hooks = None
        self.broken = params is None

    def __getitem__(self, grid):
        return lambda *args, **meta: self.launch(grid, args, meta)

    def launch(self, grid, args, meta):
        if _DISABLED or self.broken:
            return self.kernel[grid](*args, **meta)
        rest = self.names[len(args):]
        if any(n not in meta for n in rest):  # defaulted parameters: leave them to Triton
            return self.kernel[grid](*args, **meta)
        values = list(args) + [meta[n] for n in rest]
        options = tuple(sorted((k, v) for k, v in meta.items() if k not in rest))
        key = (options,) + tuple(v if c else _arg_key(v) for v, c in zip(values, self.const))
        ck = self.cache.get(key)
        if ck is None:
            ck = self.kernel[grid](*args, **meta)
            self.cache[key] = ck
            return ck
        g = tuple(grid) + (1,) * (3 - len(grid))
        try:
            if self.hooks is None:
                from triton import knobs
                from triton.runtime import driver

                self.hooks = (driver.active, knobs.runtime)
            drv, rt = self.hooks
            stream = drv.get_current_stream(drv.get_current_device())
            ck.run(g[0], g[1], g[2], stream, ck.function, ck.packed_metadata, ck.launch_metadata(g, stream, *values),
                   rt.launch_enter_hook, rt.launch_exit_hook, *values)
        except (ImportError, AttributeError, TypeError):
            # another Triton's launcher API (checked before anything is launched): the normal path from now on
            self.broken = True
            return self.kernel[grid](*args, **meta)
        return ck


def launcher(kernel) -> _Launcher:
    """Wrap a ``@triton.jit`` kernel: ``launcher(k)[grid](*args, **meta)`` launches like ``k[grid]``,
    returning the compiled kernel, with the per-call Python work cut to a dict lookup after the first call."""
    return _Launcher(kernel)
