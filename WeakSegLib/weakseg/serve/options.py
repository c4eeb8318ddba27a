"""The ``weakseg serve`` command: its options, and starting the server.

Building the parser imports neither FastAPI nor torch; :func:`serve_command` imports the
``serve`` extra and refuses with one line when it is missing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable

from weakseg.errors import WeakSegInputError

DEFAULT_PORT = 8760
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
DEFAULT_UPLOAD_MEGABYTES = 2048


def add_serve_parser(commands) -> None:
    """Add ``serve`` to the command line's sub-commands."""
    serve = commands.add_parser(
        "serve", help="run an HTTP job server: Slicer (or any client) submits segment/train/predict jobs to it",
        description="An HTTP job server for remote clients. Every request needs 'Authorization: Bearer <token>'; "
                    "the token is made at first start in WORKDIR/token (mode 0600) unless --token-file is given. "
                    "For TLS give --ssl-certfile and --ssl-keyfile (or put a reverse proxy in front).")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to listen on (default 127.0.0.1, this computer only; 0.0.0.0 for every network)")
    serve.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"TCP port (default {DEFAULT_PORT})")
    serve.add_argument("--workdir", default="weakseg-serve",
                       help="folder of the job table, the token and one folder per job (default ./weakseg-serve)")
    serve.add_argument("--gpus", help="GPUs to run jobs on, one job per GPU at a time, e.g. 0,1 (default: the CPU)")
    serve.add_argument("--workers", type=int, default=1, help="jobs run at once on the CPU (without --gpus; default 1)")
    serve.add_argument("--train-processes", type=int, default=1,
                       help="training jobs of cohort, pce and maag run data-parallel as this many processes (torchrun): "
                            "with --gpus, each job gets a group of this many GPUs (one job per group at a time); "
                            "on the CPU, this many gloo processes (default 1)")
    serve.add_argument("--token-file", help="file holding the bearer token (default WORKDIR/token, made if missing)")
    serve.add_argument("--max-upload-mb", type=int, default=DEFAULT_UPLOAD_MEGABYTES,
                       help=f"largest request body in MiB (default {DEFAULT_UPLOAD_MEGABYTES})")
    serve.add_argument("--max-voxels", type=int,
                       help="largest image in values, voxels x components (default: the command line's own limit, "
                            "268,435,456)")
    serve.add_argument("--ssl-certfile", help="TLS certificate (PEM), passed to uvicorn")
    serve.add_argument("--ssl-keyfile", help="TLS private key (PEM), passed to uvicorn")


def serve_command(arguments: argparse.Namespace, parser: argparse.ArgumentParser, entry: Callable) -> None:
    """Check the options, settle jobs a stopped server left running, and serve until interrupted.

    ``parser`` is the command line's (:func:`weakseg.cli.build_parser`): clients may give the
    options it lists for segment, train and predict, except those that name files. ``entry``
    is its ``main``, which every job runs.
    """
    from weakseg.io import MAX_IMAGE_VALUES
    from weakseg.serve.auth import TOKEN_FILE_NAME, load_or_create_token

    if arguments.max_voxels is None:
        arguments.max_voxels = MAX_IMAGE_VALUES

    for option, value, least in (("--port", arguments.port, 1), ("--workers", arguments.workers, 1),
                                 ("--train-processes", arguments.train_processes, 1),
                                 ("--max-upload-mb", arguments.max_upload_mb, 1), ("--max-voxels", arguments.max_voxels, 1)):
        if value < least or (option == "--port" and value > 65535):
            raise WeakSegInputError(f"{option} {value}: out of range")
    if bool(arguments.ssl_certfile) != bool(arguments.ssl_keyfile):
        raise WeakSegInputError("--ssl-certfile and --ssl-keyfile: give both or neither")
    for path in (arguments.ssl_certfile, arguments.ssl_keyfile):
        if path and not Path(path).is_file():
            raise WeakSegInputError(f"{path}: no such file")
    try:
        import uvicorn

        from weakseg.serve.app import ServerLimits, create_app
    except ImportError as error:
        raise WeakSegInputError(f"weakseg serve needs the 'serve' extra ({error.name} is missing): "
                                "pip install 'weakseg[serve]'") from None
    from weakseg.serve.queue import JobQueue, make_slots, recover
    from weakseg.serve.store import JobStore
    from weakseg.serve.submission import option_tables

    slots = make_slots(arguments.gpus, arguments.workers, arguments.train_processes)
    workdir = Path(arguments.workdir)
    if workdir.exists() and not workdir.is_dir():
        raise WeakSegInputError(f"--workdir {workdir}: not a folder")
    (workdir / "jobs").mkdir(mode=0o700, parents=True, exist_ok=True)
    token = load_or_create_token(Path(arguments.token_file) if arguments.token_file else workdir / TOKEN_FILE_NAME)
    store = JobStore(workdir / "jobs.sqlite3")
    recover(store, workdir / "jobs")
    queue = JobQueue(store, workdir / "jobs", slots, entry)
    app = create_app(store, queue, workdir / "jobs", token,
                     ServerLimits(arguments.max_upload_mb * 1024 * 1024, arguments.max_voxels), slots,
                     option_tables(parser))
    if arguments.host not in LOOPBACK_HOSTS and not arguments.ssl_certfile:
        print(f"weakseg serve: warning: listening on {arguments.host} without TLS; the token crosses the network in "
              "clear text (use --ssl-certfile/--ssl-keyfile, a reverse proxy with TLS, or an SSH tunnel)",
              file=sys.stderr)
    print(f"weakseg serve: http{'s' if arguments.ssl_certfile else ''}://{arguments.host}:{arguments.port} "
          f"({len(slots)} slot(s): {', '.join(slot.name for slot in slots)}); token in "
          f"{arguments.token_file or workdir / TOKEN_FILE_NAME}", file=sys.stderr)
    queue.start()
    try:
        uvicorn.run(app, host=arguments.host, port=arguments.port, log_level="warning",
                    ssl_certfile=arguments.ssl_certfile, ssl_keyfile=arguments.ssl_keyfile)
    finally:
        queue.stop()
