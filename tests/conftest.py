"""Shared test fixtures: the real data root, and skipping GPU tests without CUDA."""

from __future__ import annotations

import os

import pytest
import torch

# Triton reads TRITON_INTERPRET when a kernel is decorated, i.e. when kernels/ is first imported,
# and any test module (apps, models) may import it before tests/kernels/ is collected: set it here,
# at the root, so without CUDA every Triton kernel runs in the interpreter.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from datamodules._paths import data_root


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def data_dir():
    """Root of ../shared/data (or $TSMODELS_DATA); skips when it is truly absent."""
    root = data_root()
    if not root.is_dir():
        pytest.skip(f"real data not found at {root}: set TSMODELS_DATA to the shared data folder")
    return root


@pytest.fixture(scope="session")
def ett_dir(data_dir):
    """Folder holding ETTh1.csv / ETTh2.csv."""
    d = data_dir / "ett"
    if not (d / "ETTh1.csv").is_file():
        pytest.skip(f"ETTh1.csv not found in {d}")
    return d


# CI runs two pytest workers on two cores: one intra-op thread each avoids oversubscription,
# which makes small CPU FFTs thousands of times slower.
torch.set_num_threads(1)
