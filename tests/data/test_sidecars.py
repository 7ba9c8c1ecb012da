"""The reader of a synthetic dataset's ground-truth sidecar, ``synthetic_findings.csv``."""

from __future__ import annotations

import pytest

from cxreader.data.sidecars import SIDECAR_COLUMNS, read_synthetic_findings
from cxreader.errors import DataError


def test_read_synthetic_findings_rejects_bad_rows(tmp_path):
    path = tmp_path / "synthetic_findings.csv"
    path.write_text(",".join(SIDECAR_COLUMNS) + "\nx.png,Nodule,up,upper,lung,1,2,3,4,0.1,1.5,mild\n")
    with pytest.raises(DataError, match="line 2: side 'up'"):
        read_synthetic_findings(path)
    path.write_text("image,finding\n")
    with pytest.raises(DataError, match="header"):
        read_synthetic_findings(path)
