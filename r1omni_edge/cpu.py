"""What this CPU offers int8 inference, read from the flags the kernel reports (Linux; elsewhere "unknown").

onnxruntime picks its int8 kernels by these instructions. On x86 without VNNI it multiplies uint8 activations by
int8 weights with vpmaddubsw, which saturates for full-range weights (bundle.INT8_WEIGHTS says which formats are
safe): a bundle's int8 format must be checked against the CPU it runs on, not the one it was exported on. Torch-free.
"""

from __future__ import annotations

import functools
import platform
from dataclasses import dataclass
from pathlib import Path

# x86 flags, best first: each gives onnxruntime an int8 dot product without 16-bit intermediate sums.
X86_INT8 = (("amx_int8", "AMX"), ("avx512_vnni", "AVX512-VNNI"), ("avx_vnni", "AVX-VNNI"))
X86_SATURATING = (("avx512bw", "AVX-512 without VNNI"), ("avx2", "AVX2 without VNNI"), ("sse4_1", "SSE4.1"))


@dataclass(frozen=True)
class Int8Support:
    instructions: str  # what onnxruntime's int8 kernels use here, e.g. "AVX512-VNNI" or "AVX2 without VNNI"
    saturates_full_range: bool  # full-range (s8) int8 weights saturate here

    def describe(self) -> str:
        if self.saturates_full_range:
            return (f"{self.instructions} (onnxruntime's u8 x s8 products saturate with full-range int8 weights "
                    "here; 7-bit and u8 weights do not)")
        return self.instructions


def _flags(cpuinfo: str) -> set[str]:
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):  # x86, ARM
            return set(value.split())
    return set()


def int8_support_from(cpuinfo: str, machine: str) -> Int8Support:
    """From the text of /proc/cpuinfo and ``platform.machine()``."""
    flags = _flags(cpuinfo)
    machine = machine.lower()
    if machine in ("x86_64", "amd64", "i686", "i386"):
        for flag, name in X86_INT8:
            if flag in flags:
                return Int8Support(name, False)
        for flag, name in X86_SATURATING:
            if flag in flags:
                return Int8Support(name, True)
        return Int8Support("x86 without SSE4.1" if flags else "x86, flags unknown", bool(flags))
    if machine in ("aarch64", "arm64"):
        if "i8mm" in flags:
            return Int8Support("ARM NEON with I8MM", False)
        return Int8Support("ARM NEON with dot product" if "asimddp" in flags else "ARM NEON", False)
    return Int8Support(f"{machine or 'unknown'} (flags unknown)", False)


@functools.lru_cache(maxsize=1)
def int8_support() -> Int8Support:
    """This machine's int8 support (read once)."""
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        cpuinfo = ""
    return int8_support_from(cpuinfo, platform.machine())


def saturating_parts(int8_weights: dict[str, str], support: Int8Support | None = None) -> list[str]:
    """The parts (of ``Manifest.int8_weights()``) whose full-range int8 weights saturate on this CPU."""
    support = support or int8_support()
    return sorted(part for part, weights in int8_weights.items() if weights == "s8" and support.saturates_full_range)
