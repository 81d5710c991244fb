"""Schemathesis against the server's own description of itself (`GET /openapi.json`).

For every operation, a bounded and derandomized mix of valid and invalid requests (as the
description defines them) must get: no 5xx, a JSON `{"error": {"message"}}` body on every
4xx, a documented status and content type, a body matching the response schema, and a 4xx
for every request the description calls invalid. The last check keeps the description
faithful to the validators: a field it describes too strictly or too loosely fails here.

The server is our own with --context-length 32: a prompt plus max_new_tokens over 32 tokens
is a cheap 400 from the scheduler, so fuzzed huge lengths cost nothing and an accepted
generation is at most 32 tokens on CPU. No API key: auth is test_errors.py's and
test_bad_input.py's business, and a generated "missing header" case must not meet a header
we add.
"""

from __future__ import annotations

import re
import time

import openapi_spec_validator
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from radixlm.runtime.http.openapi_spec import build_openapi
from radixlm.runtime.server_args import ServerArgs

from .conftest import start_server

MAX_EXAMPLES = 25  # per operation; the whole module stays near a minute on 2 busy cores
REQUEST_TIMEOUT_S = 60
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance, negative_data_rejection]
FUZZ_SETTINGS = settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,  # the same cases on every run
    database=None,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],  # no shrinking: report the first failing case
    suppress_health_check=list(HealthCheck),
)
SPEC = build_openapi("0", api_key=False, max_body_size=ServerArgs().max_body_size)
OPERATIONS = [(method, path) for path, item in SPEC["paths"].items() for method in item]


class Fuzzed:
    def __init__(self, url: str) -> None:
        self.url = url
        self.spec = requests.get(url + "/openapi.json", timeout=30).json()
        self.schema = schemathesis.openapi.from_dict(self.spec, config=schemathesis.Config())


@pytest.fixture(scope="module")
def fuzzed():
    with start_server("--context-length", "32", "--max-total-tokens", "4096",
                      "--grammar-compile-timeout", "5") as server:
        yield Fuzzed(server.url)
        # The server outlived every case: it still generates.
        resp = requests.post(server.url + "/generate", json={"text": "hi", "sampling_params": {"max_new_tokens": 2}},
                             timeout=REQUEST_TIMEOUT_S)
        assert resp.status_code == 200, resp.text


def test_openapi_json_is_a_valid_openapi_3_document(fuzzed):
    openapi_spec_validator.validate(fuzzed.spec)
    assert fuzzed.spec["openapi"].startswith("3.")
    assert fuzzed.spec["paths"] == SPEC["paths"]  # what the tests below fuzz is what is served


def test_every_route_is_described():
    from radixlm.runtime.http.native_api import NativeApi
    from radixlm.runtime.http.openai_api import openai_routes
    from radixlm.runtime.http.web_view import web_view_routes

    args = ServerArgs()
    routes = NativeApi(None, args).routes() + openai_routes(None, args) + web_view_routes(None, args)  # no handler runs
    served = {(m.lower(), re.sub(r":\w+}", "}", r.path)) for r in routes for m in r.methods if m != "HEAD"}
    assert served == set(OPERATIONS)


def assert_json_error(response: schemathesis.Response) -> None:
    if response.status_code < 400:
        return
    ctype = response.headers.get("content-type", [""])[0]  # lowercase keys, list values
    assert ctype.startswith("application/json"), response.text[:200]
    message = response.json()["error"]["message"]
    assert isinstance(message, str) and message


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m.upper()} {p}" for m, p in OPERATIONS])
def test_fuzz_operation(fuzzed, method, path):
    op = fuzzed.schema[path][method.upper()]
    cases = st.one_of(op.as_strategy(generation_mode=GenerationMode.POSITIVE),
                      op.as_strategy(generation_mode=GenerationMode.NEGATIVE))

    @FUZZ_SETTINGS
    @given(case=cases)
    def check(case):
        response = case.call(base_url=fuzzed.url, timeout=REQUEST_TIMEOUT_S)
        case.validate_response(response, checks=CHECKS)
        assert_json_error(response)

    start = time.monotonic()
    check()
    print(f"{method.upper()} {path}: up to {MAX_EXAMPLES} examples in {time.monotonic() - start:.1f} s")
