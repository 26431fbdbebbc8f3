"""What every benchmark prints and records first: the machine, the versions and the thread counts."""

from __future__ import annotations

import os
import platform
import resource
import sys
from importlib import metadata
from pathlib import Path


def machine_info(with_torch: bool = True) -> dict:
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
    if not with_torch:  # the torch-free runtime's benchmarks must not load it
        return info
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


def build_real_recognizer(tmp: Path, dtype: str = "fp32", device: str = "cpu"):
    """The real-size R1-Omni-0.5B with random weights and the tiny synthetic tokenizers (nothing downloaded), built
    directly on ``device`` (a GPU initialises the 1.4 B random weights in a second)."""
    import torch

    from r1omni_edge.config import OmniConfig
    from r1omni_edge.model.checkpoint import parse_dtype
    from r1omni_edge.model.omni import OmniModel
    from r1omni_edge.model.recognizer import TorchRecognizer
    from r1omni_edge.model.towers import TowerConfigs, load_bert_tokenizer
    from r1omni_edge.prompt import PromptTokenizer
    from r1omni_edge.synthetic.tokenizers import write_bert_tokenizer, write_qwen_tokenizer

    torch.manual_seed(0)
    with torch.device(device):
        model = OmniModel(OmniConfig.real(), TowerConfigs.preset("real")).to(parse_dtype(dtype)).eval()
    write_qwen_tokenizer(tmp / "qwen")
    write_bert_tokenizer(tmp / "bert")
    return TorchRecognizer(model, PromptTokenizer(tmp / "qwen"), load_bert_tokenizer(tmp / "bert"))
