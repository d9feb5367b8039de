"""Test-session set-up shared by the unit tests and the notebooks (run through nbval).

The notebooks read the smoke switch through ``camvid_utils.runtime.smoke_mode``; setting it here,
before nbval starts any kernel, makes the plain ``pytest`` command run every notebook at a small
size. Kernels inherit this process's environment, CAMVID_RUNS included.
"""

import atexit
import os
import shutil
import tempfile

os.environ.setdefault("CAMVID_SMOKE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
# Notebook 3 trains into $CAMVID_RUNS (default: the repository's runs/, where a learner keeps the models
# they trained): under pytest, a temporary folder of this session's own, removed when it ends.
if "CAMVID_RUNS" not in os.environ:
    os.environ["CAMVID_RUNS"] = tempfile.mkdtemp(prefix="camvid-test-runs-")
    atexit.register(shutil.rmtree, os.environ["CAMVID_RUNS"], True)
