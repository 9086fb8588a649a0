"""What the compiler makes of our Triton kernels for sm_90, without a GPU: registers, stack and shared
memory (cuobjdump), spill bytes (ptxas's log of that build), and per loop of the SASS the
instructions, barriers, shuffles, shared-memory, tensor-core and local-memory instructions.

The "local sm_90 compile" figures in bench/README.md come from here. They describe code, not speed:
an A/B on the device decides, and the device's Triton version may compile differently (Triton >= 3.4,
with the ptxas and cuobjdump of its wheel).

    python bench/kernel_resources.py                     # every preset
    python bench/kernel_resources.py long_fwd_4K ss_bwd_few
    python bench/kernel_resources.py --maxnreg 168 long_fwd_16K

Presets take the constexprs the launchers take today (kernels/fftconv/triton_long.py at B = 8,
H = 768; kernels/scan/triton_scan.py at D = 1536, N = 16 with D, z, delta_bias and softplus), and
mark pointers and the sizes that are multiples of 16 in the benchmarks as such (what Triton
specializes on at a launch); integer arguments equal to 1 are passed as constants, as Triton does.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import io
import os
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

from kernels.fftconv import triton_long as TL  # noqa: E402
from kernels.scan import triton_scan as TS  # noqa: E402


def _long(L: int, bwd: bool, dots16: bool = False):
    plan = TL.plan_long(L, L)
    n = plan[0] * plan[1] * plan[2]
    tile = min(TL.BWD_TILE, n // 2) if bwd else TL.TILE
    const = dict(**TL._meta(plan, L, tile, kind="bwd" if bwd else "fwd"),
                 G1=0, G2=1, S1=1, S2=1, BF16=False)
    if dots16:
        const["PREC"] = "fp16"  # what launch gives the forward kernel under FP16_DOTS
    if bwd:
        const["NSPLIT"] = 1  # one work item per channel at H = 768 (launch_bwd)
    else:
        const["CONJ"] = False
    fn = TL._long_bwd_kernel if bwd else TL._long_kernel
    # the scratch has its own dtype (launch, launch_bwd), and the scales' bound is a float
    scratch = TL.BWD_SCRATCH_DTYPE if bwd else TL.SCRATCH_DTYPE
    types = {"s_ptr": "*" + str(scratch).replace("torch.float", "fp"), "LOG2B" if bwd else "LOG2U": "fp32", **({} if bwd else {"KMUL": "fp32"})}
    ints = {a for a in fn.arg_names if not a.endswith("_ptr") and a not in types}
    return fn, const, TL.BWD_WARPS if bwd else TL.WARPS, ints, {"L", "H"}, types


def _spectrum(L: int, dots16: bool = False):
    plan = TL.plan_long(L, L)
    const = dict(**TL._meta(plan, L, TL.TILE), HAS_D=True, DOTS16=dots16)
    if dots16:
        const["PREC"] = "fp16"
    fn = TL._long_spectrum_kernel
    floats = {"inv_n": "fp32", "LOG2K": "fp32"}
    ints = {a for a in fn.arg_names if not a.endswith("_ptr") and a not in floats}
    return fn, const, TL.WARPS, ints, {"LK"}, floats


def _selective(few: bool, bwd: bool):
    cfg = {**TS.SELECTIVE_CFG, **(TS.FEW_ROWS_TILING if few else {})}
    pre = "bwd_" if bwd else ""
    const = dict(HAS_D=True, HAS_Z=True, HAS_DB=True, SOFTPLUS=True, BLOCK_D=cfg[pre + "block_d"], CHUNK=cfg["chunk"])
    if bwd:
        const.update(BLOCK_N=16, ROTATE=cfg["bwd_rotate"])
    else:
        const["SAVE_STATES"] = True
    const["G"] = 1  # B, C shared by all channels, as Mamba has them
    fn = TS._ss_bwd_kernel if bwd else TS._ss_fwd_kernel
    return fn, const, cfg[pre + "num_warps"], {"Dm", "L", "N", "NCH"}, {"Dm", "L", "N"}, {}


PRESETS = {
    **{f"long_{d}_{k}": (lambda L=L, b=(d == "bwd"): _long(L, b))
       for d in ("fwd", "bwd") for k, L in (("4K", 4096), ("16K", 16384), ("64K", 65536))},
    **{f"long_fwd16_{k}": (lambda L=L: _long(L, False, True)) for k, L in (("4K", 4096), ("16K", 16384), ("64K", 65536))},
    **{f"spectrum{d}_{k}": (lambda L=L, d16=bool(d): _spectrum(L, d16))
       for d in ("", "16") for k, L in (("4K", 4096), ("16K", 16384), ("64K", 65536))},
    **{f"ss_{d}_{t}": (lambda f=(t == "few"), b=(d == "bwd"): _selective(f, b))
       for d in ("fwd", "bwd") for t in ("main", "few")},
}
COUNTED = ("BAR", "SHFL", "LDS", "STS", "HMMA", "HGMMA", "STL", "LDL")


def compile_sm90(fn, const: dict, num_warps: int, ints: set, div16: set, types: dict,
                 maxnreg: int | None = None, num_stages: int = 1):
    """The kernel compiled for sm_90a: (cubin, ptxas's log). Arguments in ints are i32 (div16:
    multiples of 16), those in types as named there, the others fp32 pointers (16-byte aligned)."""
    names = fn.arg_names
    const = {k: v for k, v in const.items() if k in names}
    sig = {n: "constexpr" if n in const else types.get(n, "i32" if n in ints else "*fp32") for n in names}
    attrs = {(names.index(n),): [["tt.divisibility", 16]] for n in names
             if sig[n].startswith("*") or (sig[n] == "i32" and n in div16)}
    src = ASTSource(fn=fn, signature=sig, constexprs={(names.index(k),): v for k, v in const.items()}, attrs=attrs)
    opts = dict(num_warps=num_warps, num_stages=num_stages, **({"maxnreg": maxnreg} if maxnreg else {}))
    log = io.StringIO()
    # Triton runs ptxas -v itself and prints its log when asked; a cached kernel is not reassembled
    with tempfile.TemporaryDirectory() as cache, contextlib.redirect_stdout(log):
        with triton.knobs.nvidia.scope(), triton.knobs.cache.scope():
            triton.knobs.nvidia.dump_ptxas_log = True
            triton.knobs.cache.dir = cache
            ck = triton.compile(src, target=GPUTarget("cuda", 90, 32), options=opts)
    return ck.asm["cubin"], log.getvalue()


def _cuobjdump(cubin: bytes, flag: str) -> str:
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        return subprocess.run([triton.knobs.nvidia.cuobjdump.path, flag, f.name], capture_output=True, text=True).stdout


def resources(cubin: bytes, ptxas_log: str) -> dict:
    """Registers per thread, stack and shared memory bytes of the kernel in the cubin, and the spill
    bytes ptxas reported when it built it."""
    use = _cuobjdump(cubin, "--dump-resource-usage")
    out = {k.lower(): int(v) for k, v in re.findall(r"(REG|STACK|SHARED):(\d+)", use)}
    if m := re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", ptxas_log):
        out.update(spill_stores=int(m.group(1)), spill_loads=int(m.group(2)))
    return out


def sass_loops(cubin: bytes) -> tuple[int, list[dict]]:
    """(instructions in the kernel, one dict per loop: its address range, instructions and COUNTED
    opcodes). A loop is a backward branch; nested loops are listed each with their whole body."""
    sass = _cuobjdump(cubin, "-sass")
    code = []  # (address, opcode, branch target or None)
    for line in sass.splitlines():
        m = re.match(r"\s+/\*([0-9a-f]{4,})\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_]*)([^;]*)", line)
        if m:
            t = re.search(r"BRA\s+0x([0-9a-f]+)", m.group(2) + m.group(3))
            code.append((int(m.group(1), 16), m.group(2), int(t.group(1), 16) if t else None))
    loops = []
    for addr, _, target in code:
        if target is not None and target < addr:
            ops = collections.Counter(op for a, op, _ in code if target <= a <= addr)
            loops.append({"from": hex(target), "to": hex(addr), "instr": sum(ops.values()),
                          **{k: ops[k] for k in COUNTED}})
    return len(code), loops


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("presets", nargs="*", metavar="preset", help=f"some of: {', '.join(PRESETS)} (default: all)")
    p.add_argument("--maxnreg", type=int, default=None, help="register cap per thread, as the launch option")
    p.add_argument("--stages", type=int, default=1, help="num_stages (software pipelining of the loops' loads)")
    args = p.parse_args()
    if unknown := [name for name in args.presets if name not in PRESETS]:
        p.error(f"unknown preset(s) {', '.join(unknown)}; choose from {', '.join(PRESETS)}")
    for name in args.presets or PRESETS:
        fn, const, warps, ints, div16, types = PRESETS[name]()
        cubin, log = compile_sm90(fn, const, warps, ints, div16, types, args.maxnreg, args.stages)
        total, loops = sass_loops(cubin)
        use = resources(cubin, log)
        print(f"{name} ({fn.__name__}, {warps} warps): " + ", ".join(f"{k} {v}" for k, v in use.items())
              + f", {total} SASS instructions", flush=True)
        for lp in loops:
            print("  loop " + " ".join(f"{k} {v}" for k, v in lp.items()))


if __name__ == "__main__":
    main()
