"""A regular (non-editable) install serves the web pages: they ship inside the wheel.

The pages live at the top of the repository (``templates/``, ``static/``);
``setup.py`` copies them into the built package as ``audiocopy/web/pages/``
and ``web.app`` serves that copy when it exists. Building the wheel takes a
second or two (no build isolation: the venv's own setuptools).
"""
from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_the_wheel_carries_the_pages_and_the_app_serves_them_from_it(tmp_path):
    out = tmp_path / "wheel"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "-w", str(out), str(REPO)], check=True, capture_output=True, timeout=300)
    (wheel,) = out.glob("audiocopy-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for page in [*REPO.glob("templates/*.html"), *REPO.glob("static/**/*.js")]:
        assert f"audiocopy/web/pages/{page.relative_to(REPO).as_posix()}" in names
    # Unpacked where no repository is around it, the app finds the pages in the package.
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    probe = ("import audiocopy.web.app as a; print(a.TEMPLATES_DIR); print(a.STATIC_DIR); "
             "print((a.TEMPLATES_DIR / 'base.html').is_file())")
    lines = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env={"PYTHONPATH": str(site)},
                           check=True, capture_output=True, text=True, timeout=120).stdout.split()
    assert lines[0] == str(site / "audiocopy" / "web" / "pages" / "templates")
    assert lines[1] == str(site / "audiocopy" / "web" / "pages" / "static")
    assert lines[2] == "True"


def test_a_checkout_serves_the_repositorys_own_pages():
    import audiocopy.web.app as app

    assert app.TEMPLATES_DIR == REPO / "templates" and app.STATIC_DIR == REPO / "static"
