"""Where and what: class activation heatmaps, boxes, the IoBB evaluation and grounded descriptions.

* :mod:`~cxreader.localization.cam`: CAM (Zhou et al. 2016) and Grad-CAM (Selvaraju et al. 2017) at input size.
* :mod:`~cxreader.localization.boxes`: boxes from heatmaps and the accuracy table of Wang et al. 2017.
* :mod:`~cxreader.localization.geometry`: a lung-field estimate from intensity profiles.
* :mod:`~cxreader.localization.foci`: the separate foci of a nodule's or a mass's map.
* :mod:`~cxreader.localization.describe`: side, zone, organ, extent, size and severity in words.
* :mod:`~cxreader.localization.overlay`: overlay PNGs and heatmap image files.
* :mod:`~cxreader.localization.evaluation`: ``localize eval`` over a box file.
* :mod:`~cxreader.localization.explain`: from predictions to their maps and descriptions (a batch, or one image).
"""
