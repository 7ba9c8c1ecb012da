"""Screening at scale: folders of chest radiographs read, classified, stored and triaged by urgency.

``engine`` runs the pipeline (walk, read and hash in a thread pool, batched inference through a
:class:`~cxreader.inference.backends.ModelBackend`, heatmaps and grounded descriptions from
:mod:`cxreader.localization`, atomic storage, resume by content hash), ``captions`` adds learned captions,
and ``triage`` orders the results by urgency. The same functions serve ``cxreader screen`` and the web
service.
"""
