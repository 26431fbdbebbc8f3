"""What every benchmark prints and records first: the machine, the versions and the thread counts."""

from __future__ import annotations

import os
import platform
import resource
import sys
from importlib import metadata


def machine_info() -> dict:
    info = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "processor": _cpu_name(),
        "cores": os.cpu_count(),
    }
    for package in ("torch", "transformers", "timm", "numpy", "av", "onnxruntime", "onnx", "tokenizers"):
        try:
            info[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
        info["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:
        pass
    return info


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def print_header(title: str, info: dict) -> None:
    print(f"# {title}")
    for key, value in info.items():
        print(f"#   {key}: {value}")
