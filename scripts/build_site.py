"""Build the course website: the notebooks executed on the default path, rendered with the docs pages.

    pip install -r docs/requirements.txt
    python scripts/build_site.py                 # about 10 minutes on 2 CPU cores; writes build/site
    python -m http.server -d build/site -b 127.0.0.1 8000

Three steps, each bounded:

1. **Execute** every ``notebooks/NN_*.ipynb`` as a learner would first run it: the bundled sample, the
   shipped model, ``CAMVID_SMOKE=0``, a fresh kernel per notebook, at most ``--cell-timeout`` seconds a
   cell and ``--notebook-timeout`` a notebook (nbclient can stall after ipywidgets cells). A cell that
   raises fails the build. The viewers are pre-rendered (``CAMVID_STATIC_WIDGETS=1``), so that their
   sliders work in a page without a kernel, and the widget state is saved in each notebook. What the
   notebooks write (runs, GIFs) goes to a temporary folder, never into the repository.
2. **Assemble** the site's sources in ``build/site-src``: ``docs/*.md`` and the figures, the README as
   the home page, the executed notebooks, and the local assets (ipywidgets' HTML manager from the npm
   registry, an "Open in Colab" badge), with links rewritten from the repository's layout to the site's.
3. **Render** with MkDocs (``mkdocs build --strict``: a broken link fails the build), mkdocs-jupyter
   rendering the saved outputs without executing anything.

Nothing is fetched from a CDN when a page is viewed: the widget manager, MathJax (switched off: the
course has no equations), require.js (not loaded) and Material's web fonts (off) are all local or off.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REPO_URL = "https://github.com/camvid-segmentation/camvid-segmentation"
COLAB_BADGE = "https://colab.research.google.com/assets/colab-badge.svg"
# ipywidgets 8's manager for pages without a kernel; dist/embed.js, not embed-amd.js (which needs
# require.js and loads its fonts from the wrong folder). The hash pins the exact tarball.
HTML_MANAGER = "@jupyter-widgets/html-manager@1.0.15"
HTML_MANAGER_SHA256 = "2b9d65cb7913e1c7d671757a10008b32c9c2448d4429513371e55c07d6107638"

BADGE_SVG = (  # the site's own "Open in Colab" badge: no picture is fetched from Google
    '<svg xmlns="http://www.w3.org/2000/svg" width="117" height="20" role="img" aria-label="Open in Colab">'
    '<rect width="117" height="20" rx="3" fill="#555"/>'
    '<rect x="20" width="97" height="20" rx="3" fill="#f9ab00"/>'
    '<circle cx="10" cy="10" r="6" fill="none" stroke="#f9ab00" stroke-width="3"/>'
    '<text x="68" y="14" fill="#000" font-family="Verdana,sans-serif" font-size="11" text-anchor="middle">'
    "Open in Colab</text></svg>\n"
)


def notebooks() -> list[Path]:
    """Return the course's notebooks in order."""
    return sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def execute(out: Path, cell_timeout: int, notebook_timeout: int) -> None:
    """Execute every notebook on the default path into ``out``; raise naming the first that fails."""
    out.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in ("CAMVID_ROOT", "CAMVID_CHECKPOINT")}
    with tempfile.TemporaryDirectory(prefix="camvid-site-") as scratch:
        env.update(CAMVID_SMOKE="0", CAMVID_STATIC_WIDGETS="1", CAMVID_RUNS=str(Path(scratch) / "runs"))
        env.update(MPLBACKEND="module://matplotlib_inline.backend_inline", PYTHONPATH=str(ROOT))
        for path in notebooks():
            print(f"== executing {path.name}", flush=True)
            command = [
                sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute", str(path),
                "--output-dir", str(out), f"--ExecutePreprocessor.timeout={cell_timeout}",
                "--ExecutePreprocessor.store_widget_state=True",
            ]  # fmt: skip
            try:
                subprocess.run(command, check=True, env=env, cwd=path.parent, timeout=notebook_timeout)
            except subprocess.TimeoutExpired:
                sys.exit(f"{path.name} did not finish within {notebook_timeout} s: the site is not built.")
            except subprocess.CalledProcessError:
                sys.exit(f"{path.name} failed to execute (the traceback is above): the site is not built.")


def html_manager(cache: Path) -> Path:
    """Return the folder of the widget manager's ``dist/``, fetched once from the npm registry."""
    dist = cache / "html-manager" / "package" / "dist"
    if (dist / "embed.js").exists():
        return dist
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        subprocess.run(["npm", "pack", HTML_MANAGER, "--silent"], check=True, cwd=tmp, stdout=subprocess.PIPE)
        (tarball,) = Path(tmp).glob("*.tgz")
        digest = hashlib.sha256(tarball.read_bytes()).hexdigest()
        if digest != HTML_MANAGER_SHA256:
            sys.exit(f"{HTML_MANAGER} from npm has sha256 {digest}, not the pinned {HTML_MANAGER_SHA256}.")
        with tarfile.open(tarball) as archive:
            archive.extractall(Path(tmp) / "x", filter="data")
        shutil.move(Path(tmp) / "x", cache / "html-manager")
    return dist


LINK = re.compile(r"(!?\[[^\]]*\]\()([^)\s]+)(\))")


def rewrite_links(text: str, resolve) -> str:
    """Return Markdown ``text`` with every relative link target passed through ``resolve``."""

    def one(match: re.Match) -> str:
        target = match.group(2)
        if re.match(r"[a-z]+:|#", target):
            return match.group(0)
        path, _, anchor = target.partition("#")
        new = resolve(path)
        return f"{match.group(1)}{new}{'#' + anchor if anchor else ''}{match.group(3)}"

    return LINK.sub(one, text)


def site_path(repo_path: str) -> str | None:
    """Return where a file of the repository lives in the site's sources, or None if it is not there."""
    if repo_path == "README.md":
        return "index.md"
    if repo_path.startswith("docs/"):
        return repo_path.removeprefix("docs/")
    if re.fullmatch(r"notebooks/\d\d_[^/]+\.ipynb", repo_path):
        return repo_path
    return None


def resolver(page: str):
    """Return a function that maps a link written in repository file ``page`` to the site's layout."""
    page_dir = Path(page).parent

    def resolve(target: str) -> str:
        repo_path = os.path.normpath(page_dir / target).replace(os.sep, "/")
        here = site_path(page)
        there = site_path(repo_path)
        if there is None:
            return f"{REPO_URL}/blob/main/{repo_path}"
        return os.path.relpath(there, Path(here).parent).replace(os.sep, "/")

    return resolve


def notebook_resolver(name: str):
    """Like ``resolver`` for a rendered notebook, whose page is ``notebooks/NAME/`` (links are not
    checked by MkDocs there, so they are written as the site's URLs)."""
    base = resolver(f"notebooks/{name}")

    def resolve(target: str) -> str:
        new = base(target)
        if new.startswith("http"):
            return new
        url = os.path.normpath(Path("notebooks") / new).replace(os.sep, "/")
        url = re.sub(r"(^|/)index\.md$", r"\1", url)
        url = re.sub(r"\.(md|ipynb)$", "/", url)
        return "../../" + ("" if url in ("", ".") else url)

    return resolve


def local_badge(page: str) -> str:
    """Return the link from repository file ``page`` to the site's own copy of the Colab badge (the
    link as the repository would write it: ``rewrite_links`` then maps it to the site)."""
    return os.path.relpath("docs/assets/colab-badge.svg", Path(page).parent).replace(os.sep, "/")


def assemble(src: Path, executed: Path, cache: Path) -> None:
    """Write the site's sources into ``src`` (replacing it: it is a build folder)."""
    shutil.rmtree(src)
    claim(src, "the build folder")
    for page in sorted((ROOT / "docs").rglob("*")):
        rel = page.relative_to(ROOT / "docs")
        if page.is_dir() or rel.parts[0] in ("requirements.txt", "overrides"):  # not pages
            continue
        target = src / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if page.suffix == ".md":
            text = page.read_text().replace(COLAB_BADGE, local_badge(f"docs/{rel.as_posix()}"))
            target.write_text(rewrite_links(text, resolver(f"docs/{rel.as_posix()}")))
        else:
            shutil.copy2(page, target)
    readme = (ROOT / "README.md").read_text().replace(COLAB_BADGE, local_badge("README.md"))
    (src / "index.md").write_text(rewrite_links(readme, resolver("README.md")))
    (src / "notebooks").mkdir()
    for path in notebooks():
        done = executed / path.name
        if not done.exists():
            sys.exit(f"{done} is missing: run this script without --no-execute first.")
        nb = json.loads(done.read_text())
        for cell in nb["cells"]:
            if cell["cell_type"] == "markdown":
                text = "".join(cell["source"]).replace(COLAB_BADGE, local_badge(f"notebooks/{path.name}"))
                cell["source"] = rewrite_links(text, notebook_resolver(path.name))
        (src / "notebooks" / path.name).write_text(json.dumps(nb))
    assets = src / "assets"
    dist = html_manager(cache)
    shutil.copytree(dist, assets / "html-manager", ignore=shutil.ignore_patterns("*.map", "*amd*"))
    (assets / "colab-badge.svg").write_text(BADGE_SVG)
    (assets / "no-mathjax.js").write_text("// The course has no equations: MathJax is not loaded.\n")


def render(src: Path, site: Path, cache: Path) -> None:
    """Render ``src`` into ``site`` with MkDocs, every CDN default of nbconvert replaced by a local file."""
    config = cache / "jupyter-config"
    config.mkdir(parents=True, exist_ok=True)
    # Notebook pages live at notebooks/NAME/, two folders below the site's root.
    (config / "jupyter_nbconvert_config.json").write_text(
        json.dumps({"HTMLExporter": {"widget_renderer_url": "../../assets/html-manager/embed.js"}})
    )
    env = dict(os.environ, JUPYTER_CONFIG_PATH=str(config), CAMVID_SITE_SRC=str(src), NO_MKDOCS_2_WARNING="1")
    command = [
        sys.executable,
        "-m",
        "mkdocs",
        "build",
        "--strict",
        "-f",
        str(ROOT / "mkdocs.yml"),
        "-d",
        str(site),
    ]
    subprocess.run(command, check=True, env=env, cwd=cache)  # mkdocs-jupyter caches in ./.cache
    claim(site, "--out")  # MkDocs cleaned the folder, marker included


MARKER = ".camvid-site"  # written into every folder this script fills, so that it replaces only those


def claim(folder: Path, flag: str) -> None:
    """Make sure ``folder`` is empty, missing or written by this script; refuse anything else."""
    if folder.exists() and any(folder.iterdir()) and not (folder / MARKER).exists():
        sys.exit(
            f"{flag} {folder} holds files this script did not write: "
            f"give another {flag} (nothing was changed)."
        )
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MARKER).write_text("built by scripts/build_site.py; replaced by its next run\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--out", type=Path, default=ROOT / "build" / "site", help="the built site (default %(default)s)"
    )
    parser.add_argument(
        "--no-execute", action="store_true", help="reuse the notebooks executed by the last build"
    )
    parser.add_argument(
        "--cell-timeout", type=int, default=600, help="seconds a cell may take (default %(default)s)"
    )
    parser.add_argument(
        "--notebook-timeout", type=int, default=1500, help="seconds a notebook may take (default %(default)s)"
    )
    args = parser.parse_args(argv)
    build = ROOT / "build"
    executed, src, cache = build / "site-notebooks", build / "site-src", build / "site-cache"
    claim(args.out, "--out")
    for folder in (executed, src, cache):
        claim(folder, "the build folder")
    if not args.no_execute:
        execute(executed, args.cell_timeout, args.notebook_timeout)
    assemble(src, executed, cache)
    render(src, args.out, cache)
    print(f"== the site is in {args.out}: python -m http.server -d '{args.out}' -b 127.0.0.1 8000")


if __name__ == "__main__":
    main()
