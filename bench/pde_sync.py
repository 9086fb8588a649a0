"""Where pde-bench's training loop makes the host wait for the GPU (device only).

A graphed T1 step is 6.1 ms of GPU work, but an epoch of 50 steps takes 0.36 s (7.1 ms per step,
H200): if the loop never waited, the host's per-step work (optimizer, Lightning) would overlap the
replays. This trains the models as pde-bench does, with torch's sync debug mode on from the second
epoch (the capture synchronizes by design) and validation excluded, and prints every call stack
that synchronized, most frequent first.

Usage (device): python bench/pde_sync.py [--models t1] [--epochs 3] [--n 240]
"""

from __future__ import annotations

import argparse
import collections
import sys
import tempfile
import traceback
import warnings
from pathlib import Path

import lightning.pytorch as pl
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from apps import pde_bench as pb  # noqa: E402
from datamodules.navier_stokes import generate_navier_stokes, write_netcdf  # noqa: E402


class SyncDebug(pl.Callback):
    """torch.cuda sync debug mode "warn" during training epochs >= 1, off during validation."""

    def _set(self, on: bool) -> None:
        torch.cuda.set_sync_debug_mode("warn" if on else 0)

    def on_train_epoch_start(self, trainer, pl_module):
        self._set(trainer.current_epoch >= 1)

    def on_validation_start(self, trainer, pl_module):
        self._set(False)

    def on_validation_end(self, trainer, pl_module):
        self._set(trainer.current_epoch >= 1)

    def on_train_epoch_end(self, trainer, pl_module):
        self._set(False)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--models", default="t1")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--n", type=int, default=240)
    a = p.parse_args()

    stacks: collections.Counter = collections.Counter()

    def record(message, category, filename, lineno, file=None, line=None):
        if "synchroniz" in str(message):  # torch's "called a synchronizing CUDA operation"; others pass
            stacks["".join(traceback.format_stack(limit=16)[:-2])] += 1

    warnings.showwarning = record
    warnings.simplefilter("always")
    trainer_cls = pl.Trainer

    def trainer_with_debug(*args, **kwargs):
        kwargs["callbacks"] = list(kwargs.get("callbacks") or []) + [SyncDebug()]
        return trainer_cls(*args, **kwargs)

    pl.Trainer = trainer_with_debug  # pde_bench builds its Trainer through this module attribute
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "ns.nc"
        write_netcdf(generate_navier_stokes(n=a.n, res=64, steps=20, viscosity=1e-3, dt=1e-3, seed=0,
                                            batch_size=a.n, device="cuda"), data)
        pb.pde_bench(dataset=data, models=a.models, epochs=a.epochs, out_dir=Path(tmp) / "out", lr=3e-3,
                     progress=False, t1_options={"learned_skip": True} if "t1" in a.models else None)
    torch.cuda.set_sync_debug_mode(0)
    for stack, count in stacks.most_common(10):
        print(f"==== {count} synchronizations at:\n{stack}")
    print(f"{len(stacks)} distinct call stacks, {sum(stacks.values())} synchronizations")


if __name__ == "__main__":
    main()
