"""The DICOM objects written for stored results, and which source instances are stored already
(keyword-only functions over :class:`~cxreader.storage.tables.DicomObject`)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from cxreader.storage.records import DicomObjectRecord
from cxreader.storage.tables import DicomObject, Image

#: The kinds of object, in the order a page lists them.
DICOM_OBJECT_KINDS = ("sr", "overlay", "kos")
#: How many UIDs go into one ``IN (...)`` list (well under every backend's parameter limit).
_CHUNK = 500


def record_dicom_objects(*, session: Session, objects: Sequence[DicomObjectRecord]) -> None:
    """Store the objects written for results (replacing an image's earlier object of the same kind); the caller
    commits, in the transaction that stores the results."""
    for item in objects:
        if item.kind not in DICOM_OBJECT_KINDS:
            raise ValueError(f"unknown DICOM object kind {item.kind!r}")
        session.execute(
            delete(DicomObject).where(DicomObject.image_id == item.image_id, DicomObject.kind == item.kind)
        )
        session.add(
            DicomObject(
                image_id=item.image_id,
                kind=item.kind,
                sop_class_uid=item.sop_class_uid,
                sop_instance_uid=item.sop_instance_uid,
                series_instance_uid=item.series_instance_uid,
                path=item.path,
            )
        )
    session.flush()


def dicom_objects_of(*, session: Session, image_ids: Iterable[int]) -> dict[int, list[DicomObjectRecord]]:
    """The objects written for each of these images (kinds in :data:`DICOM_OBJECT_KINDS` order)."""
    ids = sorted(set(image_ids))
    found: dict[int, list[DicomObjectRecord]] = {}
    for start in range(0, len(ids), _CHUNK):
        rows = session.execute(
            select(
                DicomObject.image_id,
                DicomObject.kind,
                DicomObject.sop_class_uid,
                DicomObject.sop_instance_uid,
                DicomObject.series_instance_uid,
                DicomObject.path,
            ).where(DicomObject.image_id.in_(ids[start : start + _CHUNK]))
        )
        for row in rows:
            found.setdefault(row.image_id, []).append(DicomObjectRecord(**row._asdict()))
    for objects in found.values():
        objects.sort(key=lambda item: DICOM_OBJECT_KINDS.index(item.kind))
    return found


def dicom_object(*, session: Session, image_id: int, kind: str) -> DicomObjectRecord | None:
    """One image's object of one kind, or ``None``."""
    objects = dicom_objects_of(session=session, image_ids=[image_id]).get(image_id, [])
    return next((item for item in objects if item.kind == kind), None)


def stored_instances(*, session: Session, checkpoint_id: int, sop_instance_uids: Iterable[str]) -> set[str]:
    """Which of these SOP instance UIDs have a result (read or refused) stored for the checkpoint."""
    uids = sorted(set(sop_instance_uids))
    stored: set[str] = set()
    for start in range(0, len(uids), _CHUNK):
        stored.update(
            session.scalars(
                select(Image.sop_instance_uid).where(
                    Image.checkpoint_id == checkpoint_id,
                    Image.status != "failed",
                    Image.sop_instance_uid.in_(uids[start : start + _CHUNK]),
                )
            )
        )
    return stored
