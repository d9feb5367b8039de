"""Test-session set-up shared by the unit tests and the notebooks (run through nbval).

The notebooks read the smoke switch through ``camvid_utils.runtime.smoke_mode``; setting it here,
before nbval starts any kernel, makes the plain ``pytest`` command run every notebook at a small
size. Kernels inherit this process's environment.
"""

import os

os.environ.setdefault("CAMVID_SMOKE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
