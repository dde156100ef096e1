"""pytest settings for the suite: how many processes ``-n auto`` starts.

``pyproject.toml`` runs the tests on pytest-xdist's ``-n auto``: each worker process imports
JAX and compiles on its own core, and compiling is most of the suite's time. xdist's ``auto``
would start one worker per core; the hook caps that at 4, since every worker holds its own
JAX runtime and compiled programs in memory. ``-n 0`` runs everything in this process.
"""

import os


def pytest_xdist_auto_num_workers(config):
    del config
    return max(1, min(4, os.cpu_count() or 1))
