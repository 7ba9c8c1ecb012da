"""``cxreader data openi-stats``: counts of an OpenI / Indiana University report collection."""

from __future__ import annotations

import argparse
import json
from typing import Any

from cxreader.cli import arguments


def register_data(data_subparsers: argparse._SubParsersAction) -> None:
    parser = data_subparsers.add_parser(
        "openi-stats",
        help="OpenI/IU reports: report and image counts, text sections, MeSH terms and their findings",
        description="Read NLMCXR_reports.tgz (or its unpacked ecgen-radiology/ folder) and print report and "
        "image counts, how many reports have each text section, distinct MeSH strings and headings, how many "
        "map to the 14 ChestX-ray14 findings, the most common annotations and the reader's warnings.",
    )
    parser.add_argument("--reports", required=True, metavar="FILE", help="NLMCXR_reports.tgz or its folder")
    parser.add_argument(
        "--images", metavar="DIR", help="folder of CXR*.png images to link (searched recursively)"
    )
    parser.add_argument(
        "--top", type=arguments.positive_int, default=20, metavar="N", help="most common items listed (20)"
    )
    parser.add_argument("--json", action="store_true", help="print the statistics as JSON")
    parser.set_defaults(func=run_openi_stats)


def run_openi_stats(args: argparse.Namespace) -> int:
    from cxreader.data.openi import load_openi, openi_stats

    dataset = load_openi(args.reports, images_dir=args.images)
    stats = openi_stats(dataset, top=args.top)
    if args.json:
        print(json.dumps(stats, indent=2))
    else:
        print(format_openi_stats(stats))
    return 0


def format_openi_stats(stats: dict[str, Any]) -> str:
    """The statistics of :func:`cxreader.data.openi.openi_stats` as plain text."""
    images, mesh = stats["images"], stats["mesh"]
    rows: list[tuple[str, object]] = [
        ("reports", stats["reports"]),
        ("image ids", f"{images['ids']} ({images['distinct_ids']} distinct)"),
        ("reports without images", images["reports_without_images"]),
    ]
    if "linked_files" in images:
        rows.append(("image files linked", f"{images['linked_files']} (from {images['images_dir']})"))
    rows += [(f"reports with {section}", count) for section, count in stats["reports_with"].items()]
    rows.append(("reports with findings or impression", stats["reports_with_findings_or_impression"]))
    lines = [f"OpenI reports: {stats['source']}"] + [f"  {label:<38}{value}" for label, value in rows]
    mesh_rows: list[tuple[str, object]] = [
        ("terms", mesh["major_terms"]),
        ("distinct strings", mesh["distinct_major_strings"]),
        ("distinct annotations (slots normalised)", mesh["distinct_annotations"]),
        ("distinct headings", mesh["distinct_headings"]),
        ("headings mapped to the 14 findings", mesh["headings_mapped_to_findings"]),
        ("terms mapped to the 14 findings", mesh["terms_mapped_to_findings"]),
        ("reports with a mapped finding", mesh["reports_with_a_mapped_finding"]),
        ("reports indexed 'normal'", mesh["normal_reports"]),
        ("automatic terms", f"{mesh['automatic_terms']} ({mesh['distinct_automatic_terms']} distinct)"),
    ]
    lines.append("MeSH major terms")
    lines += [f"  {label:<44}{value}" for label, value in mesh_rows]
    lines.append("Terms per finding")
    lines += [f"  {finding:<20}{count:>6}" for finding, count in mesh["per_finding"].items()]
    lines.append("Most common annotations (decoder tokens)")
    lines += [f"  {count:>6}  {tokens}" for tokens, count in mesh["top_annotations"]]
    lines.append("Most common headings (-> finding)")
    lines += [
        f"  {count:>6}  {heading}" + (f" -> {finding}" if finding else "")
        for heading, count, finding in mesh["top_headings"]
    ]
    lines.append("Study views named in the figure captions")
    lines += [f"  {count:>6}  {views}" for views, count in stats["study_views"].items()]
    lines.append("Warnings")
    if not stats["warnings"]:
        lines.append("  none")
    for kind, count in stats["warnings"].items():
        examples = "; ".join(stats["warning_examples"].get(kind, [])[:2])
        lines.append(f"  {kind:<24}{count:>6}  e.g. {examples}")
    return "\n".join(lines)
