"""``cxreader serve``: the REST API and the web page (FastAPI served by uvicorn)."""

from __future__ import annotations

import argparse

from cxreader import DISCLAIMER
from cxreader.cli import arguments
from cxreader.service.settings import API_KEYS_ENV, DATA_DIR_ENV, DEFAULT_MAX_UPLOAD_MB, MAX_UPLOAD_MB_ENV


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="run the REST API and the web page",
        description="Serve the REST API (POST /api/studies, GET /api/studies, ...), its documentation at /docs "
        f"and the web page at /. API keys come from ${API_KEYS_ENV} (comma-separated); clients send "
        "'Authorization: Bearer KEY'. " + DISCLAIMER,
    )
    arguments.add_checkpoint(
        parser, arguments.CHECKPOINT_OR_ONNX_HELP + " (default: $CXREADER_CHECKPOINT)", required=False
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    arguments.add_db(parser)
    parser.add_argument(
        "--data-dir",
        help=f"folder for uploads and heatmaps (default: ${DATA_DIR_ENV}, else the user data dir)",
    )
    parser.add_argument(
        "--max-upload-mb",
        type=float,
        help=f"largest upload in MB (default: ${MAX_UPLOAD_MB_ENV}, else {DEFAULT_MAX_UPLOAD_MB:g})",
    )
    parser.add_argument(
        "--max-concurrent-decodes",
        type=int,
        metavar="N",
        help="uploads decoded and read by the model at once; others wait "
        "(default: $CXREADER_MAX_CONCURRENT_DECODES, else the CPU cores)",
    )
    parser.add_argument(
        "--max-upload-megapixels",
        type=float,
        metavar="MP",
        help="largest image an upload may declare in its header, refused with 413 before decoding "
        "(default: $CXREADER_MAX_UPLOAD_MEGAPIXELS, else 36)",
    )
    parser.add_argument("--device", help="auto, cpu or cuda (default: $CXREADER_DEVICE, else auto)")
    parser.add_argument(
        "--caption",
        metavar="CKPT",
        help="a learned captioner (RUN/caption.pt) for positive findings (default: $CXREADER_CAPTION_CHECKPOINT)",
    )
    parser.add_argument(
        "--log-level", default="info", choices=("critical", "error", "warning", "info", "debug")
    )
    parser.set_defaults(func=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    """Handler of ``cxreader serve``: runs until interrupted."""
    import uvicorn

    from cxreader.service.app import create_app
    from cxreader.service.settings import Settings, megabytes, megapixels

    settings = Settings.from_env(
        checkpoint=args.checkpoint,
        database_url=args.db,
        data_dir=args.data_dir,
        max_upload_bytes=megabytes(args.max_upload_mb, "--max-upload-mb") if args.max_upload_mb else None,
        device=args.device,
        caption_checkpoint=args.caption,
        max_concurrent_decodes=args.max_concurrent_decodes,
        max_upload_pixels=megapixels(args.max_upload_megapixels, "--max-upload-megapixels")
        if args.max_upload_megapixels
        else None,
    )
    app = create_app(settings)
    print(
        f"cxreader: serving on http://{args.host}:{args.port}/ (API docs at /docs). {DISCLAIMER}", flush=True
    )
    # One process: the model lives in memory once; inference runs in uvicorn's thread pool.
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, proxy_headers=False)
    return 0
