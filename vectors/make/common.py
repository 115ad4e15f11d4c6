"""Shared helpers for the vector generators (gen.py). Python side of vectors/make/make.sh."""
import base64
import hashlib
import hmac
import importlib.metadata
import json
import os

NOW = 1764000000  # one clock for every vector
OUT_DIR = os.environ.get("HOOKGUARD_VECTOR_OUT", os.path.join(os.path.dirname(__file__), ".."))


def pkg_version(dist):
    return importlib.metadata.version(dist)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def hmac_hex(key: str, msg: bytes, algo=hashlib.sha256) -> str:
    return hmac.new(key.encode("utf-8"), msg, algo).hexdigest()


def hmac_b64(key: str, msg: bytes, algo=hashlib.sha256) -> str:
    return b64(hmac.new(key.encode("utf-8"), msg, algo).digest())


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def compact(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def vector(*, id, scheme, description, headers, body, expect, reason, category, produced_by,
           secret=None, public_key=None, other_keys=(), url=None, tolerance_s=None,
           expect_status=None, event_type=None, dedup_key=None, dedup_key_source=None,
           hookguard_policy=None, expect_response=None, with_url=False):
    """One vector in the shared format plus the issue-15 fields, in a fixed key order."""
    assert expect in ("valid", "invalid")
    assert "content-type" in {k.lower() for k in headers}, id
    for k, v in headers.items():
        assert all(0x21 <= ord(c) <= 0x7E or c == " " for c in v) and v == v.strip(), (id, k, v)
    v = {"id": id, "scheme": scheme, "description": description, "secret": secret,
         "public_key": public_key, "other_keys": list(other_keys)}
    if with_url:
        v["url"] = url
    v.update({"headers": headers, "body_b64": b64(body), "body_len": len(body), "now_unix": NOW,
              "tolerance_s": tolerance_s, "expect": expect})
    if expect == "invalid":
        assert expect_status in (400, 401), id
        v["expect_status"] = expect_status
    v.update({"reason": reason, "category": category})
    if hookguard_policy:
        v["hookguard_policy"] = hookguard_policy
    if expect == "valid":
        v["event_type"] = event_type
    if expect_response is not None:
        v["expect_response"] = expect_response
    v.update({"produced_by": produced_by, "verifications": []})
    if expect == "valid":
        v["dedup_key"] = dedup_key
        v["dedup_key_source"] = dedup_key_source
    return v


def body_of(v) -> bytes:
    return base64.b64decode(v["body_b64"])


def keys_of(v):
    first = v["public_key"] if v["public_key"] is not None else v["secret"]
    return [first] + list(v["other_keys"])


def run_each_key(v, fn):
    """Run an SDK check fn(key) -> (bool, detail) for every key the receiver holds; valid if any."""
    keys = keys_of(v)
    details = []
    for i, k in enumerate(keys):
        try:
            ok, detail = fn(k)
        except Exception as e:  # an SDK that raises rejects the request
            ok, detail = False, f"raised {type(e).__name__}: {e}"
        label = "key" if len(keys) == 1 else ("key" if i == 0 else f"other_keys[{i - 1}]")
        details.append(f"{label}: {detail}")
        if ok:
            return "valid", "; ".join(details)
    return "invalid", "; ".join(details)


def write_file(stem, doc):
    path = os.path.join(OUT_DIR, stem + ".json")
    ids = [v["id"] for v in doc["vectors"]]
    assert len(ids) == len(set(ids)), stem
    for v in ids:
        assert v.startswith(stem + "/"), v
    for seq in doc["dedup_sequences"]:
        for step in seq["steps"]:
            assert step["vector"] in ids, step
    with open(path, "w", encoding="utf-8") as f:
        f.write(json.dumps(doc, indent=1, ensure_ascii=False) + "\n")


def dup_seq(vid, what="the same request twice"):
    return {"description": what + ": the second is a duplicate",
            "steps": [{"vector": vid, "expect_action": "forward"},
                      {"vector": vid, "expect_action": "duplicate"}]}
