"""Packaging hook: the web pages ship inside the package.

The server's pages live at the top of the repository (``templates/`` and
``static/``), where a newcomer looks for them and where an editable install
serves them from. A regular (non-editable) install has no repository, so the
build copies both folders into the package as ``audiocopy/web/pages/``;
``web.app`` serves that copy when it exists and the repository's otherwise.
Everything else about the package is declared in ``setup.cfg``.
"""
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

PAGES = ("templates", "static")


class BuildWithPages(build_py):
    """``build_py`` that also copies the web pages into the built package."""

    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install serves the repository's own folders
        here = Path(__file__).resolve().parent
        for name in PAGES:
            shutil.copytree(here / name, Path(self.build_lib) / "audiocopy" / "web" / "pages" / name,
                            dirs_exist_ok=True)


setup(cmdclass={"build_py": BuildWithPages})
