"""The browser tests' fixtures: Debian's Chromium, a JupyterLab server on loopback, a Playwright browser."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import time

import pytest

from browser.harness import (
    ARTIFACTS,
    CHROMIUM_FLAGS,
    START_TIMEOUT,
    STEP_TIMEOUT,
    Lab,
    _cmdline,
    _descendants,
    _free_port,
    _kill,
    _require,
    _write_settings,
)


@pytest.fixture(scope="module")
def chromium() -> str:
    """Return the path of Debian's Chromium, or skip (fail under CAMVID_REQUIRE_BROWSER=1)."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _require("the playwright package is not installed")
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        _require("no `chromium` executable is on PATH")
    return path


@pytest.fixture(scope="module")
def lab(chromium, tmp_path_factory) -> Lab:
    """Start JupyterLab in its own process group; shut it and its kernels down afterwards."""
    base = tmp_path_factory.mktemp("jupyterlab")
    root = base / "root"
    root.mkdir()
    _write_settings(base / "settings")
    env = dict(os.environ)
    env.update(
        JUPYTER_CONFIG_DIR=str(base / "config"),
        JUPYTER_DATA_DIR=str(base / "data"),
        JUPYTER_RUNTIME_DIR=str(base / "runtime"),
        JUPYTERLAB_SETTINGS_DIR=str(base / "settings"),
        JUPYTERLAB_WORKSPACES_DIR=str(base / "workspaces"),
        IPYTHONDIR=str(base / "ipython"),
        CAMVID_SMOKE="1",
    )
    env.pop("MPLBACKEND", None)  # conftest sets Agg for nbval; a learner's kernel draws inline
    port, token = _free_port(), secrets.token_hex(16)
    command = [
        sys.executable, "-m", "jupyterlab", "--no-browser",
        "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
        "--ServerApp.terminals_enabled=False",
    ]  # fmt: skip
    if os.geteuid() == 0:
        command.append("--allow-root")
    log = (base / "jupyterlab.log").open("wb")
    kept_log = ARTIFACTS / "jupyterlab.log"  # copied there at the end
    process = subprocess.Popen(
        command, env=env, cwd=root, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    server = Lab(f"http://127.0.0.1:{port}", token, root)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if process.poll() is not None:
                pytest.fail(f"JupyterLab exited with code {process.returncode}; see {kept_log}")
            try:
                server.api("/api/status")
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(
                        f"JupyterLab did not answer on port {port} in {START_TIMEOUT} s; see {kept_log}"
                    )
                time.sleep(0.5)
        yield server
    finally:
        # Kernels run in sessions of their own, so a process-group kill would miss them: note
        # every descendant now, ask the server to shut down, then kill whatever is left.
        left = _descendants(process.pid)
        try:
            server.api("/api/shutdown", method="POST")
            process.wait(timeout=15)
        except (OSError, subprocess.TimeoutExpired):
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.wait(timeout=10)
        _kill(left)
        log.close()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(log.name, kept_log)


@pytest.fixture(scope="module")
def browser(chromium, tmp_path_factory):
    """Yield a Playwright browser context on Debian's Chromium; stop Chromium by its pid afterwards."""
    os.environ["PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD"] = "1"
    from playwright.sync_api import sync_playwright

    profile = tmp_path_factory.mktemp("chromium-profile")
    driver = sync_playwright().start()
    context, chromium_main = None, {}
    try:
        context = driver.chromium.launch_persistent_context(
            str(profile),
            executable_path=chromium,
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport={"width": 1400, "height": 1000},
        )
        # Chromium's main process is the one started with this fresh profile.
        chromium_main = {
            pid: start
            for pid, start in _descendants(os.getpid()).items()
            if f"--user-data-dir={profile}" in _cmdline(pid) and "--type=" not in _cmdline(pid)
        }
        assert chromium_main, "could not find the Chromium process that Playwright started"
        context.set_default_timeout(STEP_TIMEOUT * 1000)
        yield context
    finally:
        chromium_pids = dict(chromium_main)
        for pid in chromium_main:
            chromium_pids.update(_descendants(pid))
        try:
            if context is not None:
                context.close()
        finally:
            driver.stop()
            _kill(chromium_pids)
