"""Running a trained model: the device and AMP path (``runtime``), one backend for PyTorch and ONNX Runtime
(``backends``), data-loader batches (``batches``) and image files (``predict``)."""
