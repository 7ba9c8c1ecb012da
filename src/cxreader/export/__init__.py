"""Export trained models for deployment: ONNX (optionally int8), run by :mod:`cxreader.inference`."""

from __future__ import annotations

from cxreader.export.onnx import QUANTIZATION_CHOICES, ExportSummary, export_onnx

__all__ = ["QUANTIZATION_CHOICES", "ExportSummary", "export_onnx"]
