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
