"""The hospital side: a DICOM node (pynetdicom), DICOMweb pull and STOW (dicomweb-client), and results as DICOM
objects a PACS shows (highdicom: TID 1500 Comprehensive 3D SR, Secondary Capture overlay, Key Object Selection)."""
