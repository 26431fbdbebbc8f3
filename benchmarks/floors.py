"""The physical floors of this machine, measured through onnxruntime with the runtime's own thread count: the read
bandwidth over a buffer far larger than the last-level cache, and the fp32 and int8 matrix-multiply rates (int8 with
the CPU's VNNI / AMX kernels through MatMulInteger, so int8 stages get an int8 yardstick); and what onnxruntime's
int8 matrix-vector kernel itself reads per second, the ceiling of int8 decode with these kernels.

    .venv/bin/python benchmarks/floors.py [--threads 2]

A floor read from a buffer that fits in the cache is a cache bandwidth, not a memory one: some server CPUs have
hundreds of MB of last-level cache (this project's Intel Xeon machines: 480 MB), so the buffer is sized from it.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

GIB = 1 << 30


def last_level_cache_bytes() -> int:
    """The largest cache the kernel reports for CPU 0 (64 MB where it reports none)."""
    sizes = []
    for index in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*"):
        text = (index / "size").read_text().strip() if (index / "size").exists() else ""
        if text[:-1].isdigit():
            sizes.append(int(text[:-1]) * {"K": 1 << 10, "M": 1 << 20, "G": GIB}.get(text[-1], 1))
    return max(sizes, default=64 << 20)


def _session(model, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def _best_seconds(run, repeats: int) -> float:
    run()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def read_bandwidth_gbs(threads: int, size_bytes: int | None = None, repeats: int = 5) -> tuple[float, int]:
    """Sum each row of a float32 matrix of at least 4x the last-level cache (1 GiB at least): (GB/s, bytes read)."""
    from onnx import TensorProto, helper

    size = size_bytes or max(GIB, 4 * last_level_cache_bytes())
    rows = 4096
    cols = size // 4 // rows
    graph = helper.make_graph(
        [helper.make_node("ReduceSum", ["x", "axes"], ["y"], keepdims=0)], "read",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [rows, cols])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [rows])],
        [helper.make_tensor("axes", TensorProto.INT64, [1], [1])])
    session = _session(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), threads)
    data = np.ones((rows, cols), np.float32)
    seconds = _best_seconds(lambda: session.run(None, {"x": data}), repeats)
    return data.nbytes / seconds / 1e9, data.nbytes


def matmul_rate(threads: int, kind: str = "fp32", n: int = 2048, repeats: int = 5) -> float:
    """Peak n x n matrix-multiply rate, G(FL)OP/s: ``fp32`` MatMul or ``int8`` MatMulInteger (uint8 x int8)."""
    from onnx import TensorProto, helper

    if kind == "fp32":
        node, types = helper.make_node("MatMul", ["a", "b"], ["c"]), (TensorProto.FLOAT, TensorProto.FLOAT)
        out, arrays = TensorProto.FLOAT, (np.random.rand(n, n).astype(np.float32),
                                          np.random.rand(n, n).astype(np.float32))
    elif kind == "int8":
        node, types = helper.make_node("MatMulInteger", ["a", "b"], ["c"]), (TensorProto.UINT8, TensorProto.INT8)
        rng = np.random.default_rng(0)
        out, arrays = TensorProto.INT32, (rng.integers(0, 255, (n, n), dtype=np.uint8),
                                          rng.integers(-127, 127, (n, n), dtype=np.int8))
    else:
        raise ValueError(f"kind {kind!r}")
    graph = helper.make_graph([node], "matmul", [helper.make_tensor_value_info("a", types[0], [n, n]),
                                                 helper.make_tensor_value_info("b", types[1], [n, n])],
                              [helper.make_tensor_value_info("c", out, [n, n])])
    session = _session(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), threads)
    seconds = _best_seconds(lambda: session.run(None, {"a": arrays[0], "b": arrays[1]}), repeats)
    return 2 * n**3 / seconds / 1e9


def int8_gemv_gbs(threads: int, size_bytes: int | None = None, repeats: int = 3) -> float:
    """What onnxruntime's int8 matrix-vector kernel (the one int8 decode runs: MatMulInteger with constant, prepacked
    int8 weights and one row of uint8 activations) reads per second over weights of at least 4x the last-level
    cache, in (896, 4864) blocks as the decoder's MLP has them. Decode cannot beat this rate with these kernels, so
    the gap between it and ``memory_gbs`` is the kernel's, not the runtime's."""
    import tempfile

    import onnx
    from onnx import TensorProto, helper, numpy_helper

    size = size_bytes or max(GIB, 4 * last_level_cache_bytes())
    rows, cols = 896, 4864
    count = -(-size // (rows * cols))
    rng = np.random.default_rng(0)
    nodes, weights, outputs = [], [], []
    for i in range(count):
        weights.append(numpy_helper.from_array(rng.integers(-127, 127, (rows, cols), dtype=np.int8), f"w{i}"))
        nodes.append(helper.make_node("MatMulInteger", ["x", f"w{i}"], [f"y{i}"]))
        outputs.append(helper.make_tensor_value_info(f"y{i}", TensorProto.INT32, [1, cols]))
    graph = helper.make_graph(nodes, "gemv", [helper.make_tensor_value_info("x", TensorProto.UINT8, [1, rows])],
                              outputs, weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with tempfile.TemporaryDirectory() as tmp:  # over the 2 GB protobuf limit: the weights in an external file
        path = Path(tmp) / "gemv.onnx"
        onnx.save_model(model, str(path), save_as_external_data=True, location="gemv.data")
        del model, graph, weights
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    x = rng.integers(0, 255, (1, rows), dtype=np.uint8)
    seconds = _best_seconds(lambda: session.run(None, {"x": x}), repeats)
    return count * rows * cols / seconds / 1e9


def measure(threads: int) -> dict:
    bandwidth, read = read_bandwidth_gbs(threads)
    return {"threads": threads, "last_level_cache_mb": round(last_level_cache_bytes() / (1 << 20)),
            "read_buffer_mb": round(read / (1 << 20)), "memory_gbs": round(bandwidth, 2),
            "matmul_gflops": round(matmul_rate(threads, "fp32"), 1),
            "int8_matmul_gops": round(matmul_rate(threads, "int8"), 1),
            "int8_gemv_gbs": round(int8_gemv_gbs(threads), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="onnxruntime threads")
    args = parser.parse_args()
    print(json.dumps(measure(args.threads), indent=2))


if __name__ == "__main__":
    main()
