"""``weakseg serve``: an HTTP job server that runs the ``weakseg`` command line for remote clients.

Slicer on a laptop submits a job (segment, train or predict, with its files), polls its
progress, cancels it and downloads the result; the work runs on the server's GPUs as the
same ``weakseg ...`` command line the Slicer module starts locally, one process per job
folder (forked from a server process that imported torch and WeakSeg once). Modules, each with one job:

* :mod:`~weakseg.serve.options`: the ``weakseg serve`` command's options and start-up;
* :mod:`~weakseg.serve.auth`: the bearer token (a 0600 file made at first start);
* :mod:`~weakseg.serve.store`: jobs and their state in SQLite, kept across restarts;
* :mod:`~weakseg.serve.submission`: what a client may ask for, turned into a command line;
* :mod:`~weakseg.serve.uploads`: uploaded files under server-chosen names, size and voxel limits;
* :mod:`~weakseg.serve.queue`: the queue and its slots (one job per GPU or group of GPUs, or N on the CPU);
* :mod:`~weakseg.serve.job_process`: the process a job runs in (the command line's ``main``, or torchrun);
* :mod:`~weakseg.serve.app`: the FastAPI application and its routes.

FastAPI, uvicorn and python-multipart come with the ``serve`` extra (``pip install weakseg[serve]``).
"""
