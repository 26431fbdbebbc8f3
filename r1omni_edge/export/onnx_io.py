"""Writing ONNX parts: the legacy tracing exporter (fast and exact for these static-control-flow parts), then one
re-save that puts all weights of a part over the protobuf limit into a single ``NAME.onnx.data`` file."""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import torch

OPSET = 17
EXTERNAL_DATA_THRESHOLD = 1_800_000_000  # bytes of weights above which a part's weights go to NAME.onnx.data


def save_model(model, path: Path) -> list[str]:
    """Save an onnx ModelProto; returns the bundle files written (the .onnx and, for big parts, its .data)."""
    import onnx

    path = Path(path)
    weight_bytes = sum(len(t.raw_data) for t in model.graph.initializer)
    data_file = path.name + ".data"
    (path.parent / data_file).unlink(missing_ok=True)
    if weight_bytes > EXTERNAL_DATA_THRESHOLD:
        onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=data_file, size_threshold=1024)
        return [path.name, data_file]
    onnx.save_model(model, str(path))
    return [path.name]


def export_module(module: torch.nn.Module, args: tuple, path: Path, input_names: list[str],
                  output_names: list[str], dynamic_axes: dict[str, dict[int, str]],
                  custom_opsets: dict[str, int] | None = None) -> list[str]:
    """Trace ``module`` to ONNX at ``path`` (float32, opset 17) and return the files written."""
    import onnx

    path = Path(path)
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes about shape arithmetic and the deprecation notice
        traced = Path(tmp) / path.name
        with torch.no_grad():
            torch.onnx.export(module, args, str(traced), dynamo=False, opset_version=OPSET,
                              input_names=input_names, output_names=output_names, dynamic_axes=dynamic_axes,
                              do_constant_folding=True, custom_opsets=custom_opsets)
        model = onnx.load(str(traced))  # pulls in any per-tensor external files the tracer wrote
        return save_model(model, path)
