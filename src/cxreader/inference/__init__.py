"""Running a trained model: the device and AMP path (``runtime``), one backend for PyTorch and ONNX Runtime
(``backends``, the ONNX file's contract in ``onnx_runtime``), the calibration it applies (``calibration``), the
input gate (``gate``), data-loader batches and image files."""
