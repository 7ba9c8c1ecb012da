"""Running a trained model: one runner for PyTorch and ONNX Runtime, and prediction of files.

* :mod:`~cxreader.inference.runtime`: the device, the AMP dtype, channels-last, the split forward pass.
* :mod:`~cxreader.inference.backends`: :class:`ModelBackend` (PyTorch or ONNX Runtime) and
  :func:`load_backend`, used by prediction, screening, the service and the explanations.
* :mod:`~cxreader.inference.onnx_runtime`: the format of an exported model, its contract in the metadata.
* :mod:`~cxreader.inference.batches`: :func:`predict_batches` over data loaders (validation, ``evaluate``).
* :mod:`~cxreader.inference.predict`: :class:`Predictor` for image files and their printed table.
"""
