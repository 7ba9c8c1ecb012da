"""Deterministic UIDs for the DICOM objects cxreader writes.

A PACS files an object under its Series and SOP Instance UIDs: sending an object whose SOP Instance UID it
already holds replaces the stored copy, while a new UID adds a second copy. Deriving the UIDs from what the
result is about (the source image or study, the model's checkpoint, the kind of object) rather than drawing
them at random makes re-sending the same result idempotent: a retried transfer or a re-run of screening with the
same checkpoint replaces its earlier objects, and a new checkpoint writes a series of its own beside them.

The UIDs are made by :func:`pydicom.uid.generate_uid` under pydicom's UID root from a SHA-512 hash of their
sources (PS3.5 Section 9), so they are valid, unique per input, and carry no readable identifier.
"""

from __future__ import annotations

from pydicom.uid import generate_uid

#: The kinds of object cxreader writes: the TID 1500 report, the overlay Secondary Capture, the Key Object
#: Selection.
KINDS = ("sr", "overlay", "kos")


def result_series_uid(study_instance_uid: str, checkpoint_sha256: str, kind: str) -> str:
    """The Series Instance UID of the ``kind`` objects one checkpoint writes into one study.

    Args:
        study_instance_uid: The study the objects belong to.
        checkpoint_sha256: SHA-256 of the model checkpoint that produced the results.
        kind: One of :data:`KINDS`.
    """
    return _uid("series", study_instance_uid, checkpoint_sha256, kind)


def result_instance_uid(source_sop_instance_uid: str, checkpoint_sha256: str, kind: str) -> str:
    """The SOP Instance UID of the ``kind`` object one checkpoint writes about one source.

    Args:
        source_sop_instance_uid: The SOP Instance UID of the screened image (for ``"kos"``, which selects
            images of a whole study: the Study Instance UID).
        checkpoint_sha256: SHA-256 of the model checkpoint that produced the result.
        kind: One of :data:`KINDS`.
    """
    return _uid("instance", source_sop_instance_uid, checkpoint_sha256, kind)


def device_observer_uid(checkpoint_sha256: str) -> str:
    """The UID that identifies the model as a device observer (PS3.16 TID 1004) in every object it writes."""
    return generate_uid(entropy_srcs=["cxreader", "device", checkpoint_sha256])


def tracking_uid(report_sop_instance_uid: str, finding: str) -> str:
    """The Tracking Unique Identifier (PS3.16 TID 4108) of one finding's measurement group in one report."""
    return generate_uid(entropy_srcs=["cxreader", "tracking", report_sop_instance_uid, finding])


def _uid(level: str, key: str, checkpoint_sha256: str, kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; expected one of: {', '.join(KINDS)}")
    if not key:
        raise ValueError("a result UID needs the UID it is derived from")
    return generate_uid(entropy_srcs=["cxreader", level, kind, key, checkpoint_sha256])
