"""Every folder with an __init__.py under lang/, runtime/, kernels/ is listed in pyproject."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_folder_is_listed():
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(cfg["packages"])
    mapping = cfg["package-dir"]
    for pkg, folder in mapping.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder)
            name = ".".join([pkg, *rel.parts]) if rel.parts else pkg
            assert name in listed, f"{name} ({init.parent}) is missing from [tool.setuptools] packages"


def test_lang_imports_without_torch_at_load():
    import subprocess
    import sys

    code = "import sys, radixlm.lang; assert 'torch' not in sys.modules, 'lang imported torch'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_web_views_files_are_package_data():
    """A wheel carries every file the page serves (runtime/http/static, web_view.py)."""
    from fnmatch import fnmatch

    from radixlm.runtime.http.web_view import MEDIA_TYPES

    globs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    patterns = globs["radixlm.runtime.http"]
    served = [p for p in (ROOT / "runtime" / "http" / "static").iterdir() if p.suffix in MEDIA_TYPES]
    assert served
    for path in served:
        assert any(fnmatch(f"static/{path.name}", pat) for pat in patterns), f"{path.name} is not package data"
