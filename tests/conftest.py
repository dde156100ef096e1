"""pytest settings for the suite: how many processes ``-n auto`` starts.

``pyproject.toml`` runs the tests on pytest-xdist's ``-n auto``: each worker process imports
JAX and runs its share of the tests on its own core. xdist's ``auto`` would start one worker per
core; the hook caps that at 4, since every worker holds its own JAX runtime and compiled programs
in memory (one process running the default layer alone held 2.8 GB). ``-n 0`` runs everything
in this process.
"""

import os


def pytest_xdist_auto_num_workers(config):
    del config
    return max(1, min(4, os.cpu_count() or 1))
