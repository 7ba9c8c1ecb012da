"""Export trained models for deployment: ONNX (optionally int8), run by :mod:`cxreader.inference`."""
