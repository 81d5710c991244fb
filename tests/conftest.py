"""Shared fixtures: the real bundled model (converted once, cached on disk)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def model_folder():
    from radixlm.runtime.model.loader import resolve_model

    return resolve_model(None)


@pytest.fixture(scope="session")
def tokenizer(model_folder):
    from radixlm.runtime.model.tokenizer import load_tokenizer

    return load_tokenizer(model_folder)


@pytest.fixture(scope="session")
def router_flags() -> set[str]:
    """Every flag of the installed sglang-router's launcher, from its own --help."""
    import re
    import subprocess
    import sys

    pytest.importorskip("sglang_router", reason='needs the router extra: pip install "radixlm[router]"')
    out = subprocess.run([sys.executable, "-m", "sglang_router.launch_router", "--help"],
                         capture_output=True, text=True, check=True, timeout=120).stdout
    return set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", out))
