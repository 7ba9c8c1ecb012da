"""The words of a chest radiograph report, and the MeSH annotation grammar they are written in.

One home for the words every part of cxreader uses to say where a finding is and what it is like: the
synthetic generator records them, the grounded descriptions and the learned captioner write them, the
dataset readers check them. The report words follow chest radiograph reporting (Hansell et al., "Fleischner
Society: Glossary of Terms for Thoracic Imaging", Radiology 2008):

* sides (:data:`SIDES`) in the PATIENT's frame: the patient's right is the image's left in PA and AP views;
* zones (:data:`ZONES`): the thirds of the lung height, apex to diaphragm, plus :data:`SPECIAL_ZONES`;
* severities (:data:`SEVERITIES`), organs (:data:`ORGANS`) and size words (:func:`size_word`).

The MeSH grammar. The Indiana University / OpenI chest X-ray reports (Demner-Fushman et al., "Preparing a
collection of radiology examinations for distribution and retrieval", JAMIA 2016) are indexed with MeSH-based
strings such as ``Opacity/lung/upper lobe/right/streaky``: a heading followed by ``/``-separated modifiers
naming the organ, the location, the side, the severity, the size, the number and other descriptors. Shin et
al. ("Learning to Read Chest X-Rays: Recurrent Neural Cascade Model for Automated Image Annotation", CVPR
2016) trained a CNN and an RNN that writes such annotation sequences; the real OpenI terms and the
annotations built from the report words above (:func:`finding_annotation`) share this grammar, so one
decoder and one token vocabulary serve both.

Every MeSH vocabulary below comes from a census of all ``/``-separated parts of the 8,298 ``<major>`` terms
of the 3,955 reports in ``NLMCXR_reports.tgz`` (119 headings after merging case and spacing variants, 90
modifier words). Each modifier word belongs to exactly one slot, so a token's slot is known from the word
itself.

Slot order of a token sequence (one canonical order, used for every annotation)::

    finding-or-heading, organ, side, location..., severity, size, number, other modifiers...

Heading to finding (the 14 ChestX-ray14 findings of :data:`cxreader.labels.FINDINGS`), conservative: a heading
maps only where it names the same radiographic finding.

* Direct: Pulmonary Atelectasis → Atelectasis; Cardiomegaly; Pleural Effusion → Effusion; Infiltrate →
  Infiltration; Mass; Nodule; Pneumonia; Pneumothorax (and Hydropneumothorax, Hemopneumothorax: the radiograph
  shows a pneumothorax); Consolidation; Pulmonary Edema → Edema; Emphysema, Pulmonary Emphysema and Bullous
  Emphysema → Emphysema; Pulmonary Fibrosis and Fibrosis → Fibrosis; Hernia, Hiatal and Hernia,
  Diaphragmatic → Hernia.
* Airspace Disease → Consolidation: airspace disease is alveolar filling, the Fleischner Society glossary's
  definition of consolidation (Hansell et al., Radiology 2008).
* Opacity and Density → Infiltration, only when the organ is the lung (or the alveoli): the same glossary
  replaces the vague "infiltrate" with "opacity" (and deprecates "density"), and ChestX-ray14's Infiltration
  label is exactly that vague parenchymal opacity. ``Opacity/ribs/anterior`` stays unmapped.
* Cicatrix → Fibrosis when the organ is the lung (a parenchymal scar); Thickening → Pleural_Thickening when
  the organ is the pleura (``Thickening/bronchovascular`` stays unmapped).
* Not mapped, on purpose: Calcified Granuloma and Granuloma (benign calcified nodules, indexed apart from
  "Nodule" by the OpenI annotators), Pulmonary Congestion and Heart Failure (not oedema itself), Pulmonary
  Disease, Chronic Obstructive and Lung/hyperdistention (clinical or volume findings, not emphysema), Lung
  Diseases, Interstitial, Costophrenic Angle/blunted, Subcutaneous and Mediastinal Emphysema (air outside the
  lung). These keep their heading as the first token and ``finding`` is None.

MeSH severity words are borderline < mild < moderate < severe; ``small``/``large`` are sizes (a size in cm
is written ``small`` below 3 cm and ``large`` from 3 cm, the Fleischner glossary's boundary between a nodule
and a mass); ``multiple`` is the number.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cxreader.labels import FINDINGS

#: Sides, in the patient's frame. ``midline`` never occurs in the OpenI terms; the heart and a hiatus hernia
#: lie there.
SIDES: tuple[str, ...] = ("right", "left", "bilateral", "midline")
#: Zones: the thirds of the lung height (apex to diaphragm) holding a finding's centre, top to bottom.
ZONES: tuple[str, ...] = ("upper", "middle", "lower")
#: Zone values used besides the thirds of a lung, and what they mean.
SPECIAL_ZONES: dict[str, str] = {
    "diffuse": "all three zones of the affected lung(s) involved (extensive Emphysema or Fibrosis)",
    "perihilar": "around both hila, sparing the periphery (the bat-wing haze of Edema)",
    "cardiac": "the cardiac silhouette itself (Cardiomegaly)",
    "retrocardiac": "behind the heart at the midline, just above the diaphragm (hiatus Hernia)",
}
#: Severity grades, mildest first.
SEVERITIES: tuple[str, ...] = ("mild", "moderate", "severe")
#: The organ or space a finding affects (the values of :data:`cxreader.labels.ORGAN_OF`): ``bone`` for a
#: fracture and ``device`` for support devices come with the harmonised label space.
ORGANS: tuple[str, ...] = ("lung", "pleura", "heart", "mediastinum", "diaphragm", "bone", "device")
#: Size words.
SIZES: tuple[str, ...] = ("small", "large")
#: Sizes from this diameter up are "large" (Fleischner glossary: a mass is an opacity over 3 cm, a nodule
#: one under 3 cm).
SIZE_LARGE_CM = 3.0

# -- The MeSH annotation grammar ---------------------------------------------------------------------------

#: Headings of the OpenI ``<major>`` terms (canonical spelling), from the census of NLMCXR_reports.tgz.
KNOWN_HEADINGS: tuple[str, ...] = (
    "Abdomen", "Adipose Tissue", "Airspace Disease", "Aorta", "Aorta, Thoracic", "Aortic Aneurysm",
    "Arthritis", "Atherosclerosis", "Blister", "Blood Vessels", "Bone Diseases, Metabolic", "Bone and Bones",
    "Breast Implants", "Bronchiectasis", "Bronchiolitis", "Bronchitis", "Bullous Emphysema",
    "Calcified Granuloma", "Calcinosis", "Cardiac Shadow", "Cardiomegaly", "Catheters, Indwelling",
    "Cavitation", "Cervical Vertebrae", "Cholelithiasis", "Cicatrix", "Colonic Interposition",
    "Consolidation", "Contrast Media", "Costophrenic Angle", "Cystic Fibrosis", "Cysts", "Deformity",
    "Density", "Diaphragm",
    "Diaphragmatic Eventration", "Dislocations", "Emphysema", "Epicardial Fat", "Expansile Bone Lesions",
    "Fibrosis", "Foreign Bodies", "Fractures, Bone", "Funnel Chest", "Granuloma", "Granulomatous Disease",
    "Heart", "Heart Atria", "Heart Failure", "Heart Ventricles", "Hemopneumothorax", "Hemothorax",
    "Hernia, Diaphragmatic", "Hernia, Hiatal", "Humerus", "Hydropneumothorax",
    "Hyperostosis, Diffuse Idiopathic Skeletal", "Hypertension, Pulmonary", "Hypovolemia",
    "Implanted Medical Device", "Infiltrate", "Kyphosis", "Lucency", "Lumbar Vertebrae", "Lung",
    "Lung Diseases, Interstitial", "Lung, Hyperlucent", "Lymph Nodes", "Markings", "Mass", "Mastectomy",
    "Mediastinal Emphysema", "Mediastinum", "Medical Device", "Nipple Shadow", "No Indexing", "Nodule",
    "Opacity", "Osteophyte", "Osteoporosis", "Pectus Carinatum", "Pericardial Effusion", "Pleura",
    "Pleural Effusion", "Pneumonectomy", "Pneumonia", "Pneumoperitoneum", "Pneumothorax", "Pulmonary Artery",
    "Pulmonary Atelectasis", "Pulmonary Congestion", "Pulmonary Disease, Chronic Obstructive",
    "Pulmonary Edema", "Pulmonary Emphysema", "Pulmonary Fibrosis", "Ribs", "Sarcoidosis", "Sclerosis",
    "Scoliosis", "Shift", "Shoulder", "Spinal Fusion", "Spine", "Spondylosis", "Stents",
    "Subcutaneous Emphysema", "Sulcus", "Surgical Instruments", "Sutures",
    "Technical Quality of Image Unsatisfactory", "Thickening", "Thoracic Vertebrae", "Thorax", "Trachea",
    "Trachea, Carina", "Tube, Inserted", "Tuberculosis", "Volume Loss", "normal",
)  # fmt: skip

#: Severity words of the MeSH terms, mildest first.
MESH_SEVERITIES: tuple[str, ...] = ("borderline", *SEVERITIES)
#: Number words.
NUMBERS: tuple[str, ...] = ("multiple",)
#: Anatomy named by the terms. The first one in a term is its organ; a later one is part of its location.
MESH_ORGANS: tuple[str, ...] = (
    *ORGANS, "thorax", "aorta", "aorta, thoracic", "blood vessels", "pulmonary artery", "coronary vessels",
    "aortic valve", "mitral valve", "heart atria", "heart ventricles", "lymph nodes", "trachea",
    "trachea, carina", "bronchi", "pulmonary alveoli", "esophagus", "abdomen", "ribs", "sternum", "clavicle",
    "spine", "cervical vertebrae", "thoracic vertebrae", "lumbar vertebrae", "shoulder", "humerus", "neck",
    "breast", "breast implants", "adipose tissue",
)  # fmt: skip
#: Location words: lobes, zones and named regions.
LOCATIONS: tuple[str, ...] = (
    "upper lobe", "middle lobe", "lingula", "lower lobe", "apex", "base", "hilum", "azygos lobe",
    "retrocardiac", "supracardiac", "paratracheal", "costophrenic angle", "cardiophrenic angle",
    "pleural sinus", "sulcus", "anterior", "posterior", "diffuse",
)  # fmt: skip
#: Other descriptors seen in the OpenI terms (shape, pattern, chronicity, appearance).
DESCRIPTORS: tuple[str, ...] = (
    "abnormal", "acute", "blunted", "bronchovascular", "chronic", "degenerative", "elevated", "enlarged",
    "flattened", "focal", "healed", "hyperdistention", "hypoinflation", "interstitial", "irregular",
    "multilobar", "obscured", "patchy", "prominent", "reticular", "round", "scattered", "streaky", "tortuous",
)  # fmt: skip

#: The MeSH heading written for each of the 14 findings (by :func:`finding_annotation`, for finding tokens).
FINDING_HEADINGS: dict[str, str] = {
    "Atelectasis": "Pulmonary Atelectasis",
    "Cardiomegaly": "Cardiomegaly",
    "Effusion": "Pleural Effusion",
    "Infiltration": "Infiltrate",
    "Mass": "Mass",
    "Nodule": "Nodule",
    "Pneumonia": "Pneumonia",
    "Pneumothorax": "Pneumothorax",
    "Consolidation": "Consolidation",
    "Edema": "Pulmonary Edema",
    "Emphysema": "Pulmonary Emphysema",
    "Fibrosis": "Pulmonary Fibrosis",
    "Pleural_Thickening": "Thickening",
    "Hernia": "Hernia, Hiatal",
}

# Heading (lower case) -> (finding, organs it requires; None = any organ). See the module docstring for why.
# Each finding's own heading maps back to it; the other headings follow, and "thickening" only on the pleura.
_LUNG = frozenset({"lung", "pulmonary alveoli"})
_HEADING_FINDINGS: dict[str, tuple[str, frozenset[str] | None]] = {
    **{heading.lower(): (finding, None) for finding, heading in FINDING_HEADINGS.items()},
    "opacity": ("Infiltration", _LUNG),
    "density": ("Infiltration", _LUNG),
    "hydropneumothorax": ("Pneumothorax", None),
    "hemopneumothorax": ("Pneumothorax", None),
    "airspace disease": ("Consolidation", None),
    "emphysema": ("Emphysema", None),
    "bullous emphysema": ("Emphysema", None),
    "fibrosis": ("Fibrosis", None),
    "cicatrix": ("Fibrosis", _LUNG),
    "thickening": ("Pleural_Thickening", frozenset({"pleura"})),
    "hernia, diaphragmatic": ("Hernia", None),
}

#: Zones (and the ``apical``/``basal`` qualifiers of a description), and the location word each is written as.
ZONE_LOCATIONS: dict[str, str] = {
    "upper": "upper lobe",
    "middle": "middle lobe",
    "lower": "lower lobe",
    "apical": "apex",
    "basal": "base",
    "perihilar": "hilum",
}
# Location word -> zone, for scoring the zone slot. The lingula is the left lung's counterpart of the middle
# lobe, and the costophrenic angle lies at the base.
_LOCATION_ZONES: dict[str, str] = {
    **{location: zone for zone, location in ZONE_LOCATIONS.items()},
    "lingula": "middle",
    "costophrenic angle": "basal",
}


@dataclass(frozen=True)
class MeshAnnotation:
    """One MeSH term as structured slots.

    Attributes:
        heading: The MeSH heading in canonical spelling ("Pleural Effusion", "normal", ...).
        organ: The first anatomical modifier ("lung", "pleura", ...), or None.
        location: Location words in term order ("upper lobe", "base", a second anatomical word, ...).
        side: "right", "left", "bilateral", "midline" or None.
        severity: "borderline", "mild", "moderate", "severe" or None.
        size: "small", "large" or None.
        number: "multiple" or None.
        other_modifiers: Every other modifier in term order ("streaky", "round", unknown words, ...).
        finding: The ChestX-ray14 finding the heading maps to (see the module docstring), or None.
    """

    heading: str
    organ: str | None = None
    location: tuple[str, ...] = ()
    side: str | None = None
    severity: str | None = None
    size: str | None = None
    number: str | None = None
    other_modifiers: tuple[str, ...] = ()
    finding: str | None = None


def _clean(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def to_token(word: str) -> str:
    """The token spelling of a heading or modifier: lower case, runs of non-alphanumerics as ``_``.

    ``"Aorta, Thoracic"`` → ``"aorta_thoracic"``, ``"upper lobe"`` → ``"upper_lobe"``.
    """
    return re.sub(r"[^a-z0-9]+", "_", word.lower()).strip("_")


_HEADING_BY_LOWER = {heading.lower(): heading for heading in KNOWN_HEADINGS}
_HEADING_BY_TOKEN = {to_token(heading): heading for heading in KNOWN_HEADINGS}
_FINDING_BY_TOKEN = {to_token(finding): finding for finding in FINDINGS}
# Each modifier word belongs to one slot; the table also reads a word back from its token spelling.
_SLOT_WORDS: dict[str, tuple[str, ...]] = {
    "side": SIDES,
    "severity": MESH_SEVERITIES,
    "size": SIZES,
    "number": NUMBERS,
    "organ": MESH_ORGANS,
    "location": LOCATIONS,
    "other": DESCRIPTORS,
}
_SLOT_OF_WORD = {word: slot for slot, words in _SLOT_WORDS.items() for word in words}
_WORD_OF_TOKEN = {to_token(word): word for word in _SLOT_OF_WORD}


def is_known_heading(heading: str) -> bool:
    """Whether a heading (any case or spacing) is one of :data:`KNOWN_HEADINGS`."""
    return _clean(heading).lower() in _HEADING_BY_LOWER


def is_known_modifier(word: str) -> bool:
    """Whether a modifier word (any case or spacing) belongs to one of the slot vocabularies."""
    return _clean(word).lower() in _SLOT_OF_WORD


def heading_finding(heading: str, organ: str | None = None) -> str | None:
    """The ChestX-ray14 finding a heading maps to, given the term's organ; None when none fits."""
    finding, organs = _HEADING_FINDINGS.get(_clean(heading).lower(), (None, None))
    if organs is not None and organ not in organs:
        return None
    return finding


def _assemble(heading: str, words: Iterable[str], finding: str | None = None) -> MeshAnnotation:
    """Distribute modifier words over the slots; a repeated single-valued slot keeps the first word (a later
    one goes to ``other_modifiers``). Without a ``finding``, the heading's (:func:`heading_finding`)."""
    organ = None
    single: dict[str, str | None] = dict.fromkeys(("side", "severity", "size", "number"))
    location: list[str] = []
    other: list[str] = []
    for word in words:
        slot = _SLOT_OF_WORD.get(word, "other")
        if slot == "organ" and organ is None:
            organ = word
        elif slot in ("organ", "location"):
            location.append(word)  # "lung/hilum/lymph nodes": the second anatomy says where
        elif slot in single and single[slot] is None:
            single[slot] = word
        else:
            other.append(word)
    if finding is None:
        finding = heading_finding(heading, organ)
    return MeshAnnotation(
        heading=heading,
        organ=organ,
        location=tuple(location),
        other_modifiers=tuple(other),
        finding=finding,
        **single,
    )


def parse_mesh(text: str) -> MeshAnnotation:
    """Parse one OpenI MeSH string into a :class:`MeshAnnotation`.

    Case and spacing variants of the file are normalised (``"Subcutaneous  Emphysema"``, ``"right "``,
    ``"Thoracic vertebrae"``); an unknown heading is kept as written and an unknown modifier goes to
    ``other_modifiers`` (check with :func:`is_known_heading` / :func:`is_known_modifier`).

    Args:
        text: A ``<major>`` term, e.g. ``"Opacity/lung/upper lobe/right/streaky"``.

    Raises:
        ValueError: when the string has no heading.
    """
    parts = [_clean(part) for part in str(text).split("/")]
    parts = [part for part in parts if part]
    if not parts:
        raise ValueError(f"empty MeSH term {text!r}")
    heading = _HEADING_BY_LOWER.get(parts[0].lower(), parts[0])
    return _assemble(heading, (part.lower() for part in parts[1:]))


def _modifier_words(annotation: MeshAnnotation) -> list[str]:
    """The annotation's modifier words in slot order: organ, side, location, severity, size, number, other."""
    words = [
        annotation.organ,
        annotation.side,
        *annotation.location,
        annotation.severity,
        annotation.size,
        annotation.number,
        *annotation.other_modifiers,
    ]
    return [word for word in words if word]


def annotation_tokens(annotation: MeshAnnotation) -> list[str]:
    """The canonical token sequence of an annotation, for the decoder.

    Slot order: finding (or heading when no finding fits), organ, side, location words, severity, size,
    number, other modifiers. Example: ``["effusion", "pleura", "right", "lower_lobe", "moderate"]``.
    """
    first = annotation.finding if annotation.finding is not None else annotation.heading
    return [to_token(first)] + [to_token(word) for word in _modifier_words(annotation)]


def tokens_to_annotation(tokens: Sequence[str]) -> MeshAnnotation:
    """Inverse of :func:`annotation_tokens`, as far as the tokens allow.

    The first token is the finding or the heading; every later token's slot follows from its word (order is
    not required, so a decoder's out-of-order output still parses). A finding token gives the finding's
    heading from :data:`FINDING_HEADINGS` (``Opacity/lung`` comes back as ``Infiltrate/lung``); unknown words
    come back with ``_`` read as a space.

    Raises:
        ValueError: when ``tokens`` is empty.
    """
    tokens = [token for token in tokens if token]
    if not tokens:
        raise ValueError("an annotation needs at least one token (its finding or heading)")
    first, rest = tokens[0], tokens[1:]
    words = [_WORD_OF_TOKEN.get(token, token.replace("_", " ")) for token in rest]
    if first in _FINDING_BY_TOKEN:
        finding = _FINDING_BY_TOKEN[first]
        return _assemble(FINDING_HEADINGS[finding], words, finding)
    heading = _HEADING_BY_TOKEN.get(first, first.replace("_", " "))
    return _assemble(heading, words)


def to_mesh_string(annotation: MeshAnnotation) -> str:
    """The annotation as a MeSH-style string in slot order, e.g. ``Pleural Effusion/right/small``."""
    return "/".join([annotation.heading, *_modifier_words(annotation)])


def zone_of(annotation: MeshAnnotation) -> str | None:
    """The zone (a key of :data:`ZONE_LOCATIONS`) of the first location word that has one, else None."""
    for word in annotation.location:
        if word in _LOCATION_ZONES:
            return _LOCATION_ZONES[word]
    return None


def size_word(size_cm: float | None) -> str | None:
    """``small`` below :data:`SIZE_LARGE_CM`, ``large`` from it; None without a size."""
    if size_cm is None:
        return None
    return "large" if size_cm >= SIZE_LARGE_CM else "small"


def finding_annotation(
    finding: str,
    side: str | None,
    zone: str | None,
    organ: str | None,
    severity: str | None,
    size_cm: float | None = None,
) -> MeshAnnotation:
    """One finding described in the report words (side, zone, organ, severity, size), as a MeSH annotation.

    The heading is the finding's MeSH heading (:data:`FINDING_HEADINGS`), the zone becomes its location word
    (:data:`ZONE_LOCATIONS`; a MeSH location word such as ``"lingula"`` is kept as it is) and ``size_cm``
    becomes a size word (:func:`size_word`). None means the slot is absent. The words are checked where they
    are read (:func:`cxreader.data.sidecars.read_synthetic_findings`), not here.

    Args:
        finding: One of the 14 findings, canonical spelling.
        side: One of :data:`SIDES`.
        zone: upper, middle, lower, apical, basal, perihilar (or a MeSH location word).
        organ: One of :data:`ORGANS`.
        severity: One of :data:`SEVERITIES`.
        size_cm: Diameter in centimetres.
    """
    return MeshAnnotation(
        heading=FINDING_HEADINGS[finding],
        organ=organ,
        location=(ZONE_LOCATIONS.get(zone, zone),) if zone else (),
        side=side,
        severity=severity,
        size=size_word(size_cm),
        finding=finding,
    )
