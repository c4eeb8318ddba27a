"""``weakseg serve``: an HTTP job server that runs the ``weakseg`` command line for remote clients.

Slicer on a laptop submits a job (segment, train or predict, with its files), polls its
progress, cancels it and downloads the result; the work runs on the server's GPUs as the
same ``python -m weakseg ...`` processes the Slicer module starts locally, one per job
folder. Modules, each with one job:

* :mod:`~weakseg.serve.options`: the ``weakseg serve`` command's options and start-up;
* :mod:`~weakseg.serve.auth`: the bearer token (a 0600 file made at first start);
* :mod:`~weakseg.serve.store`: jobs and their state in SQLite, kept across restarts;
* :mod:`~weakseg.serve.submission`: what a client may ask for, turned into a command line;
* :mod:`~weakseg.serve.uploads`: uploaded files under server-chosen names, size and voxel limits;
* :mod:`~weakseg.serve.queue`: the queue and the job processes (one per GPU, or N on the CPU);
* :mod:`~weakseg.serve.app`: the FastAPI application and its routes.

FastAPI, uvicorn and python-multipart come with the ``serve`` extra (``pip install weakseg[serve]``).
"""
