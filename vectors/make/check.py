"""Independent checker for the issue-15 vector files.

A small reference verifier written from the vector spec's rules (plain hmac / hashlib /
cryptography, no sender SDK): for every vector it recomputes the answer (valid, or 400/401)
and, for valid vectors, the dedup_key and event_type, and compares them with the file.
It also checks the format (ids, now_unix, header values, Content-Type, dedup sequences) and
that hookguard_policy is present exactly where some SDK verification disagrees with expect.
Usage: check.py [vectors-dir]"""
import base64
import binascii
import hashlib
import hmac
import json
import os
import re
import sys
import urllib.parse

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

NOW = 1764000000
HEX = re.compile(r"^[0-9a-f]+$")
SCHEME = {"twilio": "twilio", "zoom": "zoom", "paddle": "paddle", "linear": "linear", "square": "square",
          "mailgun": "mailgun", "sendgrid": "sendgrid", "standard-webhooks-v1a": "standard-webhooks",
          "slack-forms": "slack"}


class Reject(Exception):
    def __init__(self, status, why):
        super().__init__(f"{status} {why}")
        self.status = status


def need(cond, status, why):
    if not cond:
        raise Reject(status, why)


def hdr(v, name):
    for k, val in v["headers"].items():
        if k.lower() == name.lower():
            return val
    return None


def required(v, name):
    val = hdr(v, name)
    need(val is not None, 400, f"missing {name}")
    return val


def b64strict(s):
    try:
        return base64.b64decode(s, validate=True)
    except (binascii.Error, ValueError):
        raise Reject(400, "signature not base64")


def integer(s, what="timestamp"):
    need(isinstance(s, str) and re.fullmatch(r"-?[0-9]+", s) is not None, 400, f"{what} not an integer")
    return int(s)


def fresh(ts, tol):
    need(abs(NOW - ts) <= tol, 401, "timestamp outside tolerance")


def mac(key, msg, algo=hashlib.sha256):
    return hmac.new(key.encode("utf-8"), msg, algo).digest()


def keys(v):
    first = v["public_key"] if v["public_key"] is not None else v["secret"]
    return [first] + v["other_keys"]


def any_key(v, ok):
    need(any(ok(k) for k in keys(v)), 401, "no key matches")


def pointer(doc, *path):
    for p in path:
        if not isinstance(doc, dict) or p not in doc:
            return None
        doc = doc[p]
    return doc


def json_body(body):
    try:
        return json.loads(body)
    except ValueError:
        raise Reject(400, "body not JSON")


# Each judge returns (dedup_key, event_type) for a valid request or raises Reject.
def twilio(v, body):
    sig = b64strict(required(v, "X-Twilio-Signature"))
    token = required(v, "I-Twilio-Idempotency-Token")
    settings = hdr(v, "X-Twilio-Webhooks-Signature-Settings") or ""
    algo = hashlib.sha256 if "algorithm=HMAC_SHA256" in settings.replace(" ", "") else hashlib.sha1
    url = v["url"]
    p = urllib.parse.urlsplit(url)
    default = {"https": 443, "http": 80}[p.scheme]
    host = p.hostname
    urls = {urllib.parse.urlunsplit((p.scheme, host, p.path, p.query, "")),
            urllib.parse.urlunsplit((p.scheme, f"{host}:{default}", p.path, p.query, ""))} if p.port in (None, default) else {url}
    if hdr(v, "Content-Type").startswith("application/json"):
        q = urllib.parse.parse_qs(p.query)
        need(q.get("bodySHA256", [None])[0] == hashlib.sha256(body).hexdigest(), 401, "bodySHA256 mismatch")
        tail = ""
    else:
        pairs = urllib.parse.parse_qsl(body.decode("utf-8"), keep_blank_values=True)
        names = sorted({n for n, _ in pairs})
        tail = "".join(n + val for n in names for val in sorted({x for m, x in pairs if m == n}))
    any_key(v, lambda k: any(hmac.compare_digest(mac(k, (u + tail).encode("utf-8"), algo), sig) for u in urls))
    return token, None


def zoom(v, body):
    sig = required(v, "x-zm-signature")
    ts = integer(required(v, "x-zm-request-timestamp"))
    need(sig.startswith("v0=") and HEX.match(sig[3:]) is not None, 400, "signature not v0=<hex>")
    any_key(v, lambda k: hmac.compare_digest(mac(k, f"v0:{ts}:".encode() + body).hex(), sig[3:]))
    fresh(ts, 300)
    j = json_body(body)
    if j.get("event") == "endpoint.url_validation":
        pt = j["payload"]["plainToken"]
        want = {"plainToken": pt, "encryptedToken": mac(v["secret"], pt.encode()).hex()}
        assert v.get("expect_response") == want, (v["id"], "expect_response")
        return None, j["event"]
    return "sha256:" + hashlib.sha256(body).hexdigest(), j.get("event")


def paddle(v, body):
    h = required(v, "Paddle-Signature")
    ts, h1 = None, []
    for part in h.split(";"):
        k, sep, val = part.partition("=")
        if k == "ts" and sep:
            ts = integer(val)
        elif k == "h1" and sep:
            h1.append(val)
    need(ts is not None and h1, 400, "ts or h1 missing")
    fresh(ts, 5)
    any_key(v, lambda k: any(hmac.compare_digest(mac(k, f"{ts}:".encode() + body).hex(), s) for s in h1))
    j = json_body(body)
    return j.get("event_id"), j.get("event_type")


def linear(v, body):
    sig = required(v, "Linear-Signature")
    need(HEX.match(sig) is not None, 400, "signature not hex")
    delivery = required(v, "Linear-Delivery")
    j = json_body(body)
    ts = j.get("webhookTimestamp") if isinstance(j, dict) else None
    need(isinstance(ts, (int, float)) and not isinstance(ts, bool), 400, "webhookTimestamp missing or not a number")
    any_key(v, lambda k: hmac.compare_digest(mac(k, body).hex(), sig))
    need(abs(NOW * 1000 - ts) <= 60 * 1000, 401, "webhookTimestamp outside tolerance")
    return delivery, j.get("type")


def square(v, body):
    sig = b64strict(required(v, "x-square-hmacsha256-signature"))
    any_key(v, lambda k: hmac.compare_digest(mac(k, v["url"].encode() + body), sig))
    j = json_body(body)
    need(isinstance(j, dict) and isinstance(j.get("event_id"), str), 400, "no /event_id")
    return j["event_id"], j.get("type")


def mailgun(v, body):
    if hdr(v, "Content-Type").startswith("application/json"):
        j = json_body(body)
        s = j.get("signature") if isinstance(j, dict) else None
        need(isinstance(s, dict), 400, "no signature object")
        event = pointer(j, "event-data", "event")
    else:
        s = dict(urllib.parse.parse_qsl(body.decode("utf-8")))
        event = None
    fields = [s.get(f) for f in ("timestamp", "token", "signature")]
    need(all(isinstance(f, str) for f in fields), 400, "signature field missing")
    ts, token, sig = integer(fields[0]), fields[1], fields[2]
    need(HEX.match(sig) is not None, 400, "signature not hex")
    any_key(v, lambda k: hmac.compare_digest(mac(k, f"{fields[0]}{token}".encode()).hex(), sig))
    fresh(ts, 300)
    return token, event


def sendgrid(v, body):
    sig = b64strict(required(v, "X-Twilio-Email-Event-Webhook-Signature"))
    ts_s = required(v, "X-Twilio-Email-Event-Webhook-Timestamp")
    ts = integer(ts_s)

    def ok(k):
        pub = serialization.load_der_public_key(base64.b64decode(k))
        try:
            pub.verify(sig, ts_s.encode() + body, ec.ECDSA(hashes.SHA256()))
            return True
        except InvalidSignature:
            return False
    any_key(v, ok)
    fresh(ts, 300)
    return "sha256:" + hashlib.sha256(body).hexdigest(), None


def standard_webhooks(v, body):
    mid = required(v, "webhook-id")
    ts_s = required(v, "webhook-timestamp")
    sigs = required(v, "webhook-signature")
    ts = integer(ts_s)
    fresh(ts, 300)
    msg = f"{mid}.{ts_s}.".encode() + body
    entries = [e.split(",", 1) for e in sigs.split(" ") if "," in e]

    def ok(k):
        for ver, s in entries:
            try:
                raw = base64.b64decode(s, validate=True)
            except (binascii.Error, ValueError):
                continue
            if base64.b64encode(raw).decode() != s:
                continue
            if k.startswith("whpk_") and ver == "v1a":
                try:
                    Ed25519PublicKey.from_public_bytes(base64.b64decode(k[5:])).verify(raw, msg)
                    return True
                except InvalidSignature:
                    pass
            if k.startswith("whsec_") and ver == "v1":
                if hmac.compare_digest(hmac.new(base64.b64decode(k[6:]), msg, hashlib.sha256).digest(), raw):
                    return True
        return False
    any_key(v, ok)
    return mid, json_body(body).get("type")


def slack(v, body):
    sig = required(v, "X-Slack-Signature")
    ts_s = required(v, "X-Slack-Request-Timestamp")
    ts = integer(ts_s)
    need(sig.startswith("v0=") and HEX.match(sig[3:]) is not None, 400, "signature not v0=<hex>")
    fresh(ts, 300)
    any_key(v, lambda k: hmac.compare_digest(mac(k, f"v0:{ts_s}:".encode() + body).hex(), sig[3:]))
    event = None
    if body:
        f = dict(urllib.parse.parse_qsl(body.decode("utf-8"), keep_blank_values=True))
        event = json.loads(f["payload"]).get("type") if "payload" in f else f.get("command")
    return f"{ts_s}:{hashlib.sha256(body).hexdigest()}", event


JUDGE = {"twilio": twilio, "zoom": zoom, "paddle": paddle, "linear": linear, "square": square, "mailgun": mailgun,
         "sendgrid": sendgrid, "standard-webhooks-v1a": standard_webhooks, "slack-forms": slack}


def check_file(d, stem):
    errors = []
    doc = json.load(open(os.path.join(d, stem + ".json"), encoding="utf-8"))
    assert doc["schema_version"] == 1 and doc["scheme"] == SCHEME[stem], stem
    assert all(val for val in doc["libraries"].values()), (stem, "library without version", doc["libraries"])
    ids = set()
    for v in doc["vectors"]:
        e = lambda msg: errors.append(f"{v['id']}: {msg}")
        if v["id"] in ids:
            e("duplicate id")
        ids.add(v["id"])
        if not re.fullmatch(rf"{re.escape(stem)}/(valid|invalid|quirk|probe)-[a-z0-9-]+", v["id"]):
            e("bad id")
        if v["scheme"] != doc["scheme"] or v["now_unix"] != NOW:
            e("scheme/now_unix")
        body = base64.b64decode(v["body_b64"])
        if len(body) != v["body_len"]:
            e("body_len")
        if hdr(v, "Content-Type") is None:
            e("no Content-Type")
        for k, val in v["headers"].items():
            if not re.fullmatch(r"[\x21-\x7e]+( [\x21-\x7e]+)*", val):
                e(f"header {k} not visible ASCII")
        if ("url" in v) != (stem in ("twilio", "square")):
            e("url field presence")
        if not v["verifications"]:
            e("no SDK verification")
        disagree = any(r["result"] != v["expect"] for r in v["verifications"])
        if disagree != ("hookguard_policy" in v):
            e(f"hookguard_policy present={'hookguard_policy' in v} but SDK disagreement={disagree}")
        try:
            key, event = JUDGE[stem](v, body)
            got = "valid"
        except Reject as r:
            got, status = "invalid", r.status
            why = str(r)
        if got != v["expect"]:
            e(f"checker says {got} ({why if got == 'invalid' else ''}), file says {v['expect']}")
            continue
        if got == "invalid":
            if v.get("expect_status") != status:
                e(f"expect_status {v.get('expect_status')} but checker says {why}")
            if "event_type" in v or "dedup_key" in v:
                e("invalid vector with event_type/dedup_key")
        else:
            if "expect_status" in v:
                e("valid vector with expect_status")
            if v.get("dedup_key") != key:
                e(f"dedup_key {v.get('dedup_key')!r} != {key!r}")
            if v.get("event_type") != event:
                e(f"event_type {v.get('event_type')!r} != {event!r}")
    byid = {v["id"]: v for v in doc["vectors"]}
    if not doc["dedup_sequences"]:
        errors.append(f"{stem}: no dedup_sequences")
    for seq in doc["dedup_sequences"]:
        seen = set()
        for step in seq["steps"]:
            v = byid.get(step["vector"])
            if v is None or v["expect"] != "valid":
                errors.append(f"{stem}: sequence step {step['vector']} not a valid vector")
                continue
            k = v["dedup_key"]
            want = "duplicate" if k is not None and k in seen else "forward"
            seen.add(k)
            if step["expect_action"] != want:
                errors.append(f"{stem}: sequence '{seq['description']}' step {step['vector']}: {step['expect_action']} != {want}")
    return len(doc["vectors"]), errors


def main():
    d = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    bad = 0
    for stem in JUDGE:
        n, errors = check_file(d, stem)
        print(f"{stem}.json: {n} vectors, {len(errors)} problems")
        for err in errors:
            print("  ", err)
        bad += len(errors)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
