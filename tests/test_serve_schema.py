"""The server keeps the promises of its own /openapi.json: schemathesis generates requests
for every operation from the schema a real `gpt2onnx serve` publishes (valid ones and, in
its negative mode, invalid ones), sends them, and checks every answer with its default
checks: no 5xx, only documented statuses and content types, bodies (JSON, and each
server-sent event of a stream) that match the documented schemas, invalid requests
refused.

Each generated request is made cheap before it is sent (cheap()) so that every example stays
fast on a two-core machine, and the schema is given examples (examples()) so that every run
also checks the answers drawn requests rarely reach: streams, logprobs, echo, beams, the
served model's object.
Hypothesis is derandomized, so CI runs the same cases every time.
"""

from __future__ import annotations

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from serve_helpers import server_fixture

# What a request may ask for at most here, in place of the server's real bounds (up to 65,536 new tokens,
# 16 rows): at those one example decodes for a minute on two cores; at these, for a few engine steps.
CAPS = {"max_tokens": 4, "max_completion_tokens": 4, "min_new_tokens": 4, "n": 2, "num_beams": 2}
GENERATION = ("CompletionRequest", "ChatRequest")
EXAMPLES = {
    "/v1/completions": {
        "stream": {"prompt": "Once upon a time", "max_tokens": 4, "n": 2, "echo": True, "logprobs": 2, "stream": True,
                   "stream_options": {"include_usage": True}},
        "greedy_ids": {"prompt": [[464, 3290], [40]], "max_tokens": 3, "temperature": 0, "echo": True, "logprobs": 1},
        "beams": {"prompt": "The sky is", "max_tokens": 3, "num_beams": 2, "n": 2},
        "greedy_ids_stream": {"prompt": [[464, 3290], [40]], "max_tokens": 3, "temperature": 0, "echo": True, "logprobs": 1, "stream": True},
        "beams_stream": {"prompt": "The sky is", "max_tokens": 3, "num_beams": 2, "n": 2, "logprobs": 1, "stream": True},
    },
    "/v1/chat/completions": {
        "stream": {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}], "max_tokens": 4,
                   "stream": True, "logprobs": True, "top_logprobs": 2, "stream_options": {"include_usage": True}},
        "parts": {"messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}], "max_completion_tokens": 4, "n": 2,
                  "logprobs": True, "top_logprobs": 3},
        "greedy_stream": {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3, "temperature": 0, "n": 2, "stream": True},
        "beams_stream": {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3, "num_beams": 2, "n": 2, "logprobs": True,
                         "stream": True},
    },
    "/tokenize": {"text": {"prompt": "Hello world"}},
    "/detokenize": {"ids": {"tokens": [15496, 995, 50256]}},
}


server = server_fixture("--slots", "4", "--threads", "1")


@pytest.fixture(scope="module")
def limits(api) -> dict[str, int]:
    """The served schema's maximum of each CAPS field (the same in both generation requests)."""
    schemas = api.raw_schema["components"]["schemas"]
    found = {}
    for name in GENERATION:
        for field, spec in schemas[name]["properties"].items():
            for form in spec.get("anyOf", [spec]):
                if field in CAPS and form.get("type") == "integer":
                    found[field] = form["maximum"]
    assert found.keys() == CAPS.keys(), "a capped field left the schema: update CAPS"
    return found


def cheap(body, limits: dict[str, int]) -> None:
    """Bound what a generated request costs, in the request rather than in the schema. A value the
    schema allows that is over its cap becomes the cap, and context_overflow "slide" becomes "stop" (a
    sliding row re-reads 3/4 of the context each time it fills: the one cost max_tokens does not cap).
    A valid request stays valid and an invalid one invalid (values over the schema's maximum, of
    another type, or in another field are left as they are), so every check keeps its meaning.
    Lowering the schema's maxima instead would not: its negative mode then sends, as invalid,
    max_tokens between the cap and 65,536, which the server rightly accepts (a false "schema-violating
    request accepted")."""
    if not isinstance(body, dict):
        return
    for field, cap in CAPS.items():
        value = body.get(field)
        if type(value) is int and cap < value <= limits[field]:
            body[field] = cap
    if body.get("context_overflow") == "slide":
        body["context_overflow"] = "stop"


def examples(raw: dict, model_id: str) -> dict:
    """EXAMPLES as the request bodies' examples, and the served model's id as the path's: schemathesis
    sends each once (its examples phase) besides what it draws."""
    for path, named in EXAMPLES.items():
        body = raw["paths"][path]["post"]["requestBody"]["content"]["application/json"]
        body["examples"] = {name: {"value": value} for name, value in named.items()}
    (parameter,) = raw["paths"]["/v1/models/{model_id}"]["get"]["parameters"]
    parameter["examples"] = {"served": {"value": model_id}}
    return raw


@pytest.fixture(scope="module")
def api(server):
    raw = httpx.get(f"{server.url}/openapi.json", timeout=30).raise_for_status().json()
    model_id = httpx.get(f"{server.url}/health", timeout=30).json()["model"]
    schema = schemathesis.openapi.from_dict(examples(raw, model_id))
    schema.config.update(base_url=server.url)
    schema.config.seed = 0  # with derandomize: the same cases every run
    return schema


def test_schema_documents_every_status_and_no_422(server):
    raw = httpx.get(f"{server.url}/openapi.json", timeout=30).json()
    operations = {(method, path): op for path, item in raw["paths"].items() for method, op in item.items()}
    assert set(operations) == {
        ("get", "/health"), ("get", "/metrics"), ("get", "/v1/models"), ("get", "/v1/models/{model_id}"),
        ("post", "/tokenize"), ("post", "/detokenize"), ("post", "/v1/completions"), ("post", "/v1/chat/completions"),
    }
    for op in operations.values():
        assert "422" not in op["responses"] and {"408", "500", "503"} <= set(op["responses"])
    assert "HTTPValidationError" not in raw["components"]["schemas"]
    for path in ("/v1/completions", "/v1/chat/completions"):
        statuses = operations[("post", path)]["responses"]
        assert {"200", "400", "401", "404", "413", "429", "499", "500", "503"} <= set(statuses)
        assert set(statuses["200"]["content"]) == {"application/json", "text/event-stream"}
    assert set(operations[("get", "/metrics")]["responses"]["200"]["content"]) == {"text/plain"}
    n = raw["components"]["schemas"]["CompletionRequest"]["properties"]["n"]
    assert (n["minimum"], n["maximum"]) == (1, 16) and isinstance(n["minimum"], int)  # not 1.0: a client would send that


@pytest.fixture
def node_id(request):
    """schemathesis 4.32.5's from_fixture reads (and renames per operation) request.node._nodeid,
    which pytest 9.2 no longer has (its nodes keep a NodeId in _id): give it the string it expects."""
    if not hasattr(request.node, "_nodeid"):
        request.node._nodeid = request.node.nodeid


schema = schemathesis.pytest.from_fixture("api")


@pytest.mark.slow  # schemathesis over every operation (~23 s)
@pytest.mark.usefixtures("node_id")
@schema.parametrize()
@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
def test_every_operation_keeps_its_schema(case, limits):
    # positive_data_acceptance (a schema-valid request must not get 400) is left out: the server refuses
    # on purpose what no JSON schema of one field says, e.g. top_logprobs without logprobs,
    # stream_options without stream, best_of != n, more rows (prompts x n x beams) than --slots,
    # token ids outside the vocabulary.
    cheap(case.body, limits)
    case.call_and_validate(timeout=60, excluded_checks=[schemathesis.checks.positive_data_acceptance])
