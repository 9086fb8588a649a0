"""Kernel tests run the Triton kernels through the interpreter on machines without CUDA.

TRITON_INTERPRET must be in the environment before triton is first imported, so it is set
here, at collection time, ahead of every test module of this folder. With a GPU present the
kernels compile for it instead (the @pytest.mark.gpu tests need that).
"""

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
