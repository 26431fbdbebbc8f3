"""Precision conversions of exported parts, with onnxruntime's own tools: fp16 (norms and softmax kept in fp32),
dynamic int8 (MatMul weights), and 4-bit MatMulNBits (block-wise, symmetric)."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

from ..bundle import INT8_WEIGHTS_DEFAULT
from .onnx_io import save_model

log = logging.getLogger(__name__)

# Ops kept in fp32 in fp16 parts: RMSNorm statistics (Pow, ReduceMean, Sqrt) and softmax lose too much in half
# precision. LayerNormalization (opset 17) already accumulates in fp32 (stash_type 1), so it runs in fp16.
FP16_KEEP_FP32 = ["ReduceMean", "Pow", "Sqrt", "Reciprocal",
                  "Softmax", "Exp", "Erf"]
# Blocks of 128 weights per scale: the real-size decoder decoded at 20.1 ms/token against 24.1 ms with blocks of 32
# (fewer scales to read, 263 MB against 310 MB; Intel Xeon, 2 threads, 1,000-position prompt). 128 is the common
# choice of 4-bit GPU formats (GPTQ, AWQ); the cost is a coarser scale, which `verify` measures.
INT4_BLOCK_SIZE = 128
# accuracy_level 4: MatMulNBits computes with int8 activations (onnxruntime-genai's CPU setting). The default (0)
# dequantizes to fp32 and was measured 2.8x slower on the Whisper encoder here (7.9 s against 2.8 s for int8).
INT4_ACCURACY_LEVEL = 4


def to_fp16(path: Path) -> list[str]:
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = onnx.load(str(path))
    converted = convert_float_to_float16(model, keep_io_types=True, op_block_list=FP16_KEEP_FP32,
                                         disable_shape_infer=True)
    return save_model(converted, path)


def to_int8(path: Path, weights: str = INT8_WEIGHTS_DEFAULT) -> list[str]:
    """Dynamic int8: MatMul weights quantized per channel in ``weights`` (bundle.INT8_WEIGHTS: s7, the default, is
    right on every CPU), activations quantized on the fly."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    path = Path(path)
    weight_type, reduce_range = {"s7": (QuantType.QInt8, True), "s8": (QuantType.QInt8, False),
                                 "u8": (QuantType.QUInt8, False)}[weights]
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantizer's advice to pre-process (symbolic shape inference) goes to root
    try:
        with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
            out = Path(tmp) / path.name
            quantize_dynamic(str(path), str(out), weight_type=weight_type, op_types_to_quantize=["MatMul"],
                             per_channel=True, reduce_range=reduce_range, use_external_data_format=True,
                             extra_options={"MatMulConstBOnly": True})
            return save_model(onnx.load(str(out)), path)
    finally:
        root.setLevel(level)


def to_int4(path: Path, block_size: int = INT4_BLOCK_SIZE) -> list[str]:
    """4-bit weights in MatMulNBits nodes (onnxruntime's contrib op, CPU and CUDA kernels)."""
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer").setLevel(logging.WARNING)  # one line a node
    model = onnx.load(str(path))
    quantizer = MatMulNBitsQuantizer(model, bits=4, block_size=block_size, is_symmetric=True,
                                     accuracy_level=INT4_ACCURACY_LEVEL)
    quantizer.process()
    return save_model(quantizer.model.model, path)


# By the quantizer names of bundle.py's precision table ("none" parts stay as traced).
CONVERTERS = {"fp16": to_fp16, "dynamic-int8": to_int8, "matmulnbits-4": to_int4}
