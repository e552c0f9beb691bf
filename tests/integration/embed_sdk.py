"""POST /v1/embeddings as the official openai Python SDK sends it, and the
answers checked as the SDK reads them.

    embed_sdk.py URL KEY MODEL [DIMS]

client.embeddings.create(model=M, input=[...]) sends {"input", "model",
"encoding_format": "base64"} (the SDK asks for base64 unless the caller
sets encoding_format) with a bearer key, then decodes each embedding with
numpy.frombuffer(base64.b64decode(e), dtype="float32"); with
encoding_format="float" it reads the list as is. The two must be the same
vectors, bit for bit. GET /v1/models/MODEL says how long the vectors are
(x_margin.embed_dims: DIMS when given) and whether `dimensions` may cut
them (x_margin.embed_truncatable). Run with a python3 that has numpy."""
import base64
import json
import sys
import urllib.error
import urllib.request

import numpy as np

URL, KEY, MODEL = sys.argv[1], sys.argv[2], sys.argv[3]


def post(body):
    req = urllib.request.Request(URL + "/v1/embeddings", data=json.dumps(body).encode(), method="POST", headers={
        "Authorization": f"Bearer {KEY}",
        "Content-Type": "application/json",
        "Accept": "application/json",
        "User-Agent": "OpenAI/Python 1.54.0",
        "X-Stainless-Lang": "python",
        "X-Stainless-Package-Version": "1.54.0",
        "X-Stainless-Retry-Count": "0",
    })
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def create(inputs, **kw):
    """client.embeddings.create(model=MODEL, input=inputs, **kw): the body
    the SDK sends (its key order), and the vectors it returns."""
    body = {"input": inputs, "model": MODEL}
    body.update(kw)
    if "encoding_format" not in kw:
        body["encoding_format"] = "base64"
    status, d = post(body)
    assert status == 200, (status, d)
    assert d["object"] == "list" and d["model"] == MODEL, d
    n = 1 if isinstance(inputs, str) or (inputs and isinstance(inputs[0], int)) else len(inputs)
    assert len(d["data"]) == n, (len(d["data"]), n)
    u = d["usage"]
    assert u["prompt_tokens"] > 0 and u["total_tokens"] == u["prompt_tokens"], u
    vecs = []
    for i, e in enumerate(d["data"]):
        assert e["object"] == "embedding" and e["index"] == i, e
        if body["encoding_format"] == "base64":
            assert isinstance(e["embedding"], str), e
            vecs.append(np.frombuffer(base64.b64decode(e["embedding"]), dtype="float32"))
        else:
            assert isinstance(e["embedding"], list), e
            vecs.append(np.array(e["embedding"], dtype="float32"))
    for v in vecs:
        assert v.ndim == 1 and v.size > 0 and np.all(np.isfinite(v)), v
        assert abs(float(np.linalg.norm(v.astype(np.float64))) - 1.0) < 1e-5, np.linalg.norm(v)
    return vecs, u


def refused(body, status, start, param=None):
    s, d = post(body)
    msg = d.get("error", {}).get("message", "")
    assert s == status and msg.startswith(start), (body, s, d)
    if param is not None:
        assert d["error"]["param"] == param, d
    assert d["error"]["type"] == ("not_found_error" if status == 404 else "invalid_request_error"), d


req = urllib.request.Request(URL + "/v1/models/" + MODEL, headers={"Authorization": f"Bearer {KEY}"})
with urllib.request.urlopen(req, timeout=30) as r:
    info = json.loads(r.read())["x_margin"]
assert info.get("embed_dims", 0) > 0, f"no connected worker embeds with {MODEL}: {info}"
if len(sys.argv) > 4:
    assert info["embed_dims"] == int(sys.argv[4]), info
CUT = info["embed_truncatable"]

texts = ["The quick brown fox", "jumps over the lazy dog", "a third, longer sentence about embeddings"]
b64, usage = create(texts)
flt, usage_f = create(texts, encoding_format="float")
assert usage == usage_f, (usage, usage_f)
dims = b64[0].size
assert dims == info["embed_dims"], (dims, info)
for a, b in zip(b64, flt):
    assert a.size == dims and a.tobytes() == b.tobytes(), "base64 and float answers differ"
assert b64[0].tobytes() != b64[1].tobytes(), "different inputs, same vector"
# One string: the same vector as inside the list.
one, _ = create(texts[1])
assert one[0].tobytes() == b64[1].tobytes(), "an input's vector depends on its neighbours"
# Token ids, one input and several.
toks, _ = create([1, 400, 401, 402])
toks2, _ = create([[1, 400, 401, 402], [1, 500]], encoding_format="float")
assert toks[0].tobytes() == toks2[0].tobytes()
if CUT:
    cut, _ = create(texts, dimensions=4)
    assert all(v.size == 4 for v in cut), [v.size for v in cut]
    refused({"input": "x", "model": MODEL, "dimensions": dims + 1}, 400,
            f"dimensions: {dims + 1} is more than the {dims} dimensions", "dimensions")
else:
    refused({"input": "x", "model": MODEL, "dimensions": 4}, 400, "dimensions: model", "dimensions")
# user is accepted and ignored.
create("x", user="user-1234")
refused({"input": [], "model": MODEL}, 400, "input: expected a non-empty string", "input")
refused({"input": ["a", "b", "c", 3], "model": MODEL}, 400, "input[3]: expected a string", "input")
refused({"input": [1, 2.5], "model": MODEL}, 400, "input[1]: expected a token id", "input")
refused({"input": ["x"] * 2049, "model": MODEL}, 400, "input: 2049 inputs; at most 2048", "input")
refused({"input": "x", "model": MODEL, "encoding_format": "hex"}, 400,
        'encoding_format: expected "float" or "base64"', "encoding_format")
refused({"input": "x"}, 400, "model: expected a non-empty string", "model")
refused({"input": "x", "model": "no-such-model"}, 404, 'model: "no-such-model" is not served')
print(f"ok: {len(texts)} inputs, {dims} dimensions, usage {usage}")
