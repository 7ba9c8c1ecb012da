"""The learned captioner on the 5 real OpenI images of ``../shared/data/openi/``, beside their reports' MeSH terms.

No accuracy is claimed from 5 images (and the captioner was trained on SYNTHETIC images): the point is that the
real OpenI files go through the same reader and decoder, and what comes out, shown next to what the
radiologist's report says.

For each image the table lists the report's MeSH major terms, the findings the captioner's encoder calls
positive with their learned captions, and the captions asked for the report's own findings (its MeSH headings
that map to one of the 14, e.g. ``Opacity`` → Infiltration, ``Pulmonary Atelectasis`` → Atelectasis).

Run: ``python benchmarks/captioner_openi_real.py --checkpoint CAP/caption.pt [--openi ../shared/data/openi]``.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

from cxreader import DISCLAIMER
from cxreader.captioning.predict import CaptionPredictor
from cxreader.data.io import read_image_uint8
from cxreader.data.transforms import load_size_for
from cxreader.vocabulary import parse_mesh, to_token

DEFAULT_OPENI = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "openi"


def report_findings(mesh_major: str) -> list[str]:
    """The 14-finding names of a report's MeSH major terms (``;``-separated), in order, without repeats."""
    names: list[str] = []
    for term in (part.strip() for part in mesh_major.split(";")):
        if not term:
            continue
        finding = parse_mesh(term).finding
        if finding and finding not in names:
            names.append(finding)
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checkpoint", required=True, help="RUN/caption.pt")
    parser.add_argument(
        "--openi", type=Path, default=DEFAULT_OPENI, help="folder with pairs.csv and images_256/"
    )
    parser.add_argument("--beam", type=int, default=3)
    args = parser.parse_args(argv)
    pairs_csv = args.openi / "pairs.csv"
    if not pairs_csv.exists():
        print(f"skipped: {pairs_csv} not found (../shared/data is not on this machine)")
        return 0
    predictor = CaptionPredictor(args.checkpoint, device="cpu", beam_size=args.beam)
    with pairs_csv.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    print(f"# learned captions on {len(rows)} real OpenI images (captioner trained on SYNTHETIC images)\n")
    print(
        "| image | report MeSH major terms | encoder positives: learned caption | report findings: learned caption |"
    )
    print("|---|---|---|---|")
    for row in rows:
        image = read_image_uint8(
            args.openi / row["file_256"], size=load_size_for(predictor.contract.encoder.input_size)
        )
        features = predictor.features([image])
        probabilities = predictor.probabilities(features)[0]
        positives = [name for name in predictor.positives(probabilities) if to_token(name) in predictor.vocab]
        asked = [name for name in report_findings(row["mesh_major"]) if to_token(name) in predictor.vocab]
        said = "; ".join(predictor.caption(features, to_token(name)).text for name in positives) or "(none)"
        wanted = (
            "; ".join(predictor.caption(features, to_token(name)).text for name in asked) or "(none mapped)"
        )
        print(f"| {row['image_id']} | {row['mesh_major']} | {said} | {wanted} |")
    print(f"\n{DISCLAIMER}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
