"""PyTorch -> edge bundle: ONNX parts, precision conversion, TensorRT engines, parity verification."""
