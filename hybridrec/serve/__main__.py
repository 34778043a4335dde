"""``python -m hybridrec.serve RUN``: a trained run behind HTTP (FastAPI on uvicorn).

Examples::

    python -m hybridrec.serve runs/hybrid-ml-100k-random            # http://127.0.0.1:8000/
    python -m hybridrec.serve RUN --host 0.0.0.0 --port 9000 --workers 2
    python -m hybridrec.serve RUN --compact    # fold the journal into the run folder, exit

Each worker process loads the run and replays its journal; they share the journal, so an
update made through one is seen by the others on their next request.
"""
from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path

from hybridrec.cli_args import run_cli


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m hybridrec.serve",
                                     description="Serve a trained run over HTTP.")
    parser.add_argument("run", type=Path, help="run folder (from python -m hybridrec.train)")
    parser.add_argument("--host", default="127.0.0.1", help="address (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    parser.add_argument("--workers", type=int, default=1,
                        help="server processes, each with the whole model (default: 1)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads per process (default: 1; requests run in "
                             "parallel threads already)")
    parser.add_argument("--max-body", type=int, default=None, metavar="BYTES",
                        help="largest request body (default: 1 MiB)")
    parser.add_argument("--access-log", action="store_true", help="log every request")
    parser.add_argument("--compact", action="store_true",
                        help="fold the journal's updates into the run folder and exit (stop "
                             "the server first)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not (args.run / "run.json").is_file():
        raise ValueError(f"{args.run}: not a run folder (no run.json); train one with "
                         f"python -m hybridrec.train --out {args.run}")
    if args.workers < 1 or args.threads < 1:
        raise ValueError("--workers and --threads must be at least 1")
    if args.compact:
        return _compact(args.run)
    try:
        import uvicorn
    except ImportError:
        raise ValueError('serving needs FastAPI and uvicorn: pip install -e ".[serve]"') \
            from None
    os.environ["HYBRIDREC_SERVE_RUN"] = str(args.run)
    os.environ["HYBRIDREC_SERVE_THREADS"] = str(args.threads)
    os.environ["HYBRIDREC_SERVE_WORKERS"] = str(args.workers)
    if args.max_body is not None:
        os.environ["HYBRIDREC_SERVE_MAX_BODY"] = str(args.max_body)
    if args.workers == 1:  # build it here, so that a bad run folder is one line on stderr
        from hybridrec.serve.app import app_from_environment

        app = app_from_environment()
    else:
        app = "hybridrec.serve.app:app_from_environment"
    uvicorn.run(app, host=args.host, port=args.port, workers=args.workers,
                factory=args.workers > 1, access_log=args.access_log, log_level="info")
    return 0


def _compact(run: Path) -> int:
    from hybridrec.serve.live import LiveRecommender

    live = LiveRecommender(run)
    updates = live.journal.entries
    live.rec.save(run)  # replaces the folder: the journal's updates move into updates.json
    print(f"folded {updates} journaled updates into {run}")
    return 0


if __name__ == "__main__":
    run_cli(main)
