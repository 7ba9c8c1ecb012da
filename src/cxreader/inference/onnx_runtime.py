"""The file format of an exported cxreader model, written by the exporter and read by the ONNX backend.

The graph written by :func:`cxreader.export.onnx.export_onnx` takes exactly what the PyTorch model takes, a
normalised float32 batch ``(B, 3, S, S)`` (``S`` = the contract's input size, batch size free), and returns
one logit per label of the contract, in its order (the 14 findings of a CheXNet model);
:class:`~cxreader.inference.backends.OnnxBackend` runs it with ONNX Runtime and applies the
sigmoid. The checkpoint's contract (labels, input size, mean and std, thresholds, synthetic flag, ...) travels
in the model's ``metadata_props`` (ONNX IR, ``ModelProto.metadata_props``), so an exported file is used
correctly without its checkpoint, and loading refuses a model whose labels are not cxreader findings.
"""

from __future__ import annotations

import json
from pathlib import Path

from cxreader.errors import CheckpointError
from cxreader.models.checkpoint import CheckpointContract, check_labels

INPUT_NAME = "image"
OUTPUT_NAME = "logits"
FORMAT = "cxreader-onnx"
FORMAT_VERSION = 1
#: ``metadata_props`` keys written by :func:`~cxreader.export.onnx.export_onnx`.
META_FORMAT = "cxreader.format"
META_VERSION = "cxreader.format_version"
META_CONTRACT = "cxreader.contract"
META_QUANTIZATION = "cxreader.quantization"
META_SOURCE = "cxreader.source_sha256"


def read_onnx_contract(path: str | Path) -> tuple[CheckpointContract, dict[str, str]]:
    """The :class:`~cxreader.models.checkpoint.CheckpointContract` stored in an exported model.

    Returns:
        ``(contract, metadata)`` where ``metadata`` holds all ``metadata_props`` as strings.

    Raises:
        CheckpointError: missing or unreadable file, not a cxreader export, or labels that are not cxreader findings.
    """
    import onnx

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: ONNX model not found")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # truncated or not protobuf: one line naming the file
        raise CheckpointError(f"{path}: cannot read ONNX model ({type(exc).__name__}: {exc})") from None
    metadata = {prop.key: prop.value for prop in model.metadata_props}
    if metadata.get(META_FORMAT) != FORMAT or META_CONTRACT not in metadata:
        raise CheckpointError(
            f"{path}: not a cxreader export (no contract in its metadata); use cxreader export"
        )
    if int(metadata.get(META_VERSION, "0")) > FORMAT_VERSION:
        raise CheckpointError(f"{path}: written by a newer cxreader (format {metadata[META_VERSION]})")
    try:
        contract = CheckpointContract.from_dict(json.loads(metadata[META_CONTRACT]))
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{path}: unreadable contract in the metadata ({exc})") from None
    check_labels(path, contract.labels)
    return contract, metadata
