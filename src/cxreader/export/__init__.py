"""Export trained models for deployment: ONNX (optionally int8) run by ONNX Runtime on CPU."""

from __future__ import annotations

from cxreader.export.onnx import (
    QUANTIZATION_CHOICES,
    ExportSummary,
    OnnxModel,
    export_onnx,
    is_onnx_file,
    read_onnx_contract,
)

__all__ = [
    "QUANTIZATION_CHOICES",
    "ExportSummary",
    "OnnxModel",
    "export_onnx",
    "is_onnx_file",
    "read_onnx_contract",
]
