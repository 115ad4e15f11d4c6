"""Generate the issue-15 vector files, signing with the sender's SDK where it has a signing
function, and verify each vector with the official Python SDKs (clock pinned to NOW).
Node SDK verifications are appended afterwards by verify_node.mjs."""
import datetime as _dt
import hashlib
import json
import sys
import time
import urllib.parse

from common import (NOW, b64, body_of, compact, dup_seq, hmac_b64, hmac_hex, pkg_version,
                    run_each_key, sha256_hex, vector, write_file)

time.time = lambda: float(NOW)  # pin every Python SDK clock that uses time.time()

STALE_REASON = "signed timestamp outside |now - ts| <= tolerance_s"
V = {}  # filled by main()


def sdk(lib, fn, version_key=None):
    return {"library": lib, "version": V[version_key or lib], "function": fn}


def plain(fn):
    return {"library": "Python hmac/hashlib (stdlib)", "version": sys.version.split()[0], "function": fn}


def add_verification(v, lib, function, check, version_key=None):
    result, detail = run_each_key(v, check)
    v["verifications"].append({"library": lib, "version": V[version_key or lib], "function": function,
                               "result": result, "detail": detail})


def form(pairs) -> bytes:
    return urllib.parse.urlencode(pairs).encode("ascii")


# ---------------------------------------------------------------- twilio
class MultiDict(dict):
    """A dict with Django-QueryDict-style getlist, which twilio's RequestValidator understands."""

    def __init__(self, pairs):
        super().__init__()
        self._pairs = pairs
        for k, v in pairs:
            self.setdefault(k, v)

    def getlist(self, k):
        return [v for kk, v in self._pairs if kk == k]


def twilio_file():
    from twilio.request_validator import RequestValidator, get_signature_algorithm
    lib = "twilio (PyPI)"
    token, old_token = "f3b0c9d2e1a4b5c6d7e8f90a1b2c3d4e", "7c1e0d2f9a8b3c4d5e6f708192a3b4c5"
    shared_key = "Tq8vX2mN5pR7sW1yZ4bC6dF9gH3jK0lA"
    base = "https://hooks.example.com/twilio/sms"
    vs = []
    sms = [("AccountSid", "AC0123456789abcdef0123456789abcdef"), ("ApiVersion", "2010-04-01"),
           ("Body", "Hello from Twilio"), ("From", "+14155550100"), ("MessageSid", "SM00000000000000000000000000000001"),
           ("NumMedia", "0"), ("SmsStatus", "received"), ("To", "+14155550199")]

    def sign(key, url, params, algorithm=None):
        return RequestValidator(key).compute_signature(url, MultiDict(params) if params else {}, algorithm)

    def mk(name, desc, body, url, sig, expect, reason, category, ctype="application/x-www-form-urlencoded",
           status=None, key=token, other=(), extra=None, idem="idem-", policy=None, fn="RequestValidator.compute_signature"):
        h = {"Content-Type": ctype, "X-Twilio-Signature": sig}
        if idem is not None:
            h["I-Twilio-Idempotency-Token"] = idem + name
        h.update(extra or {})
        if sig is None:
            del h["X-Twilio-Signature"]
        vs.append(vector(id=f"twilio/{name}", scheme="twilio", description=desc, secret=key, other_keys=other,
                         url=url, with_url=True, headers=h, body=body, expect=expect, reason=reason,
                         category=category, expect_status=status, produced_by=sdk(lib, fn),
                         dedup_key=h.get("I-Twilio-Idempotency-Token") if expect == "valid" else None,
                         dedup_key_source="header:I-Twilio-Idempotency-Token", hookguard_policy=policy))

    url = base + "?tenant=acme"
    mk("valid-sms-form", "inbound SMS, form body, HMAC-SHA1 over URL (with query) + sorted name+value",
       form(sms), url, sign(token, url, sms), "valid", "HMAC-SHA1(auth token, url + sorted params)", "valid")
    utf = [(k, "Grüße – 日本語 🎉" if k == "Body" else v) for k, v in sms]
    mk("valid-utf8", "form body with a percent-encoded UTF-8 Body", form(utf), base, sign(token, base, utf),
       "valid", "params are form-decoded to UTF-8 before signing", "valid")
    rep = [("To", "+14155550199"), ("MediaUrl", "https://media.example.com/b.png"), ("From", "+14155550100"),
           ("MediaUrl", "https://media.example.com/a.png")]
    mk("quirk-repeated-params", "repeated parameter name: each value appended as name+value, values sorted",
       form(rep), base, sign(token, base, rep), "valid",
       "MediaUrl appears twice; signed as MediaUrl+a.png then MediaUrl+b.png (values sorted)", "quirk")
    plus = [("Body", "Hello World + more"), ("From", "+14155550100"), ("To", "+14155550199")]
    pb = form(plus)
    assert b"Hello+World+%2B+more" in pb
    mk("quirk-plus-decoding", "'+' in the form body decodes to a space before signing ('%2B' to '+')",
       pb, base, sign(token, base, plus), "valid",
       "signed over the decoded value 'Hello World + more', not the raw 'Hello+World+%2B+more'", "quirk")
    jbody = compact({"event": "com.twilio.messaging.message.delivered", "sid": "SM00000000000000000000000000000002",
                     "status": "delivered"})
    jurl = f"https://hooks.example.com/twilio/events?bodySHA256={sha256_hex(jbody)}"
    mk("valid-json-bodysha256", "JSON body: URL carries bodySHA256=hex(sha256(body)), params empty",
       jbody, jurl, sign(token, jurl, []), "valid", "signature over the URL only; bodySHA256 matches the body",
       "valid", ctype="application/json")
    tj = jbody.replace(b"delivered\"}", b"failed\"}")
    mk("invalid-json-bodysha256-mismatch", "JSON body changed after signing: URL signature fine, bodySHA256 differs",
       tj, jurl, sign(token, jurl, []), "invalid", "bodySHA256 in the signed URL does not match the body", "body",
       ctype="application/json", status=401)
    settings = {"X-Twilio-Webhooks-Signature-Settings": "key=webhooks_sharedkey_0001,algorithm=HMAC_SHA256"}
    mk("valid-sha256-settings", "SharedKey webhook: settings header selects HMAC-SHA256",
       form(sms), base, sign(shared_key, base, sms, "HMAC_SHA256"), "valid",
       "X-Twilio-Webhooks-Signature-Settings algorithm=HMAC_SHA256", "valid", key=shared_key, extra=settings)
    mk("invalid-sha256-without-settings", "HMAC-SHA256 signature but no settings header (so SHA-1 is expected)",
       form(sms), base, sign(shared_key, base, sms, "HMAC_SHA256"), "invalid",
       "without the settings header the signature must be HMAC-SHA1", "signature", key=shared_key, status=401)
    p443 = "https://hooks.example.com:443/twilio/sms"
    mk("quirk-url-explicit-443-signed-without", "called with :443, Twilio signed the URL without the port",
       form(sms), p443, sign(token, base, sms), "valid", "receiver tries the URL with and without :443", "quirk")
    mk("quirk-url-without-port-signed-with-443", "called without a port, Twilio signed it with :443",
       form(sms), base, sign(token, p443, sms), "valid", "receiver tries the URL with and without :443", "quirk")
    mk("invalid-wrong-token", "signed with another auth token", form(sms), base, sign(old_token, base, sms),
       "invalid", "no key matches", "signature", status=401)
    tam = [(k, "Hello from Mallory" if k == "Body" else v) for k, v in sms]
    mk("invalid-tampered-body", "Body param changed after signing", form(tam), base, sign(token, base, sms),
       "invalid", "signature does not cover the new params", "body", status=401)
    mk("invalid-query-dropped", "signature over the URL with ?tenant=acme, request arrives without the query",
       form(sms), base, sign(token, url, sms), "invalid", "the query is part of the signed URL", "signature", status=401)
    mk("invalid-missing-signature", "no X-Twilio-Signature", form(sms), base, None, "invalid",
       "required signature header missing", "header", status=400)
    mk("invalid-malformed-signature", "X-Twilio-Signature is not base64", form(sms), base, "%%not-base64%%",
       "invalid", "signature header cannot be parsed as base64", "header", status=400)
    mk("invalid-missing-idempotency-token", "valid signature, no I-Twilio-Idempotency-Token", form(sms), base,
       sign(token, base, sms), "invalid", "the dedup key (delivery ID) is missing", "strictness", status=400,
       idem=None, policy="Hookguard rule (twilio): a request without I-Twilio-Idempotency-Token is 400; the SDKs check no such header")
    mk("valid-rotation-old-token", "receiver holds the new token (secret) and the old one (other_keys); signed with the old",
       form(sms), base, sign(old_token, base, sms), "valid", "any held key may match", "valid", other=[old_token])

    def py_check(v):
        body = body_of(v)
        sig = next((val for k, val in v["headers"].items() if k.lower() == "x-twilio-signature"), None)
        st = next((val for k, val in v["headers"].items() if k.lower() == "x-twilio-webhooks-signature-settings"), None)
        algo = get_signature_algorithm(st)
        ctype = v["headers"]["Content-Type"]

        def f(key):
            rv = RequestValidator(key)
            if ctype.startswith("application/json"):
                ok = rv.validate(v["url"], body.decode("utf-8"), sig, algo)
            else:
                ok = rv.validate(v["url"], MultiDict(urllib.parse.parse_qsl(body.decode("ascii"), keep_blank_values=True)), sig, algo)
            return ok, f"validate(algorithm={algo}) returned {ok}"
        add_verification(v, lib, "RequestValidator.validate(url, params|raw JSON body, sig, get_signature_algorithm(settings))", f)
    for v in vs:
        py_check(v)
    return {"schema_version": 1, "scheme": "twilio",
            "doc_url": "https://www.twilio.com/docs/usage/webhooks/webhooks-security",
            "meta": {"secret_format": "Auth Token (32 hex) or SharedKey secret, used verbatim as the UTF-8 HMAC key",
                     "signature": "X-Twilio-Signature: base64 HMAC-SHA1 (HMAC-SHA256 with the settings header)"},
            "libraries": {lib: V[lib], "twilio (npm)": None},
            "vectors": vs,
            "dedup_sequences": [dup_seq("twilio/valid-sms-form", "the same request (same I-Twilio-Idempotency-Token) twice")]}


# ---------------------------------------------------------------- zoom
def zoom_file():
    secret, old = "Xk4Tz9Qm2Lp7Rv1Ws8Yb3N", "Pq2Rs4Tu6Vw8Xy0Za1Bc3D"
    vs = []
    ev = {"event": "meeting.started", "event_ts": 1763999990123,
          "payload": {"account_id": "AcCt0001", "object": {"id": "85012345678", "uuid": "4444AAAiAAAAAiAiAiiAii==",
                                                            "topic": "Weekly sync", "host_id": "uLoRgfbbTayCX6r2Q_qQsQ"}}}

    def sig(key, ts, body):
        return "v0=" + hmac_hex(key, f"v0:{ts}:".encode() + body)

    def mk(name, desc, body, expect, reason, category, ts=NOW - 12, signature=None, key=secret, other=(),
           status=None, policy=None, drop=(), response=None, dedup="body", fn="hmac.new(secret, 'v0:{ts}:{body}', sha256)"):
        h = {"Content-Type": "application/json; charset=utf-8", "x-zm-request-timestamp": str(ts),
             "x-zm-signature": signature if signature is not None else sig(key, ts, body),
             "x-zm-trackingid": "v=2.0;clid=us05;rid=" + name[:20]}
        for d in drop:
            del h[d]
        et = None
        if expect == "valid":
            et = json.loads(body).get("event")
        vs.append(vector(id=f"zoom/{name}", scheme="zoom", description=desc, secret=secret, other_keys=other,
                         headers=h, body=body, tolerance_s=300, expect=expect, expect_status=status, reason=reason,
                         category=category, hookguard_policy=policy, event_type=et, expect_response=response,
                         produced_by=plain(fn),
                         dedup_key=("sha256:" + sha256_hex(body)) if dedup == "body" else None,
                         dedup_key_source="sha256 of body" if dedup == "body" else "none: url_validation is answered by the sidecar, not deduplicated"))

    nots = "Hookguard rule: a signed timestamp outside |now - ts| <= tolerance_s is refused; @zoom/rivet checks no timestamp"
    b = compact(ev)
    mk("valid-meeting-started", "compact JSON event as Zoom sends it", b, "valid", "v0= hex HMAC-SHA256 over 'v0:{ts}:{body}'", "valid")
    ev2 = json.loads(b)
    ev2["payload"]["object"]["topic"] = "Réunion – 会議 🎉"
    mk("valid-utf8", "non-ASCII UTF-8 topic", compact(ev2), "valid", "raw UTF-8 bytes are signed", "valid")
    pt = "qgg8vlvZRS6UYooatFL8Aw"
    uv = compact({"payload": {"plainToken": pt}, "event_ts": 1763999995000, "event": "endpoint.url_validation"})
    mk("valid-url-validation", "endpoint.url_validation challenge (signed like any event)", uv, "valid",
       "the sidecar answers it itself with plainToken and hex HMAC-SHA256(secret, plainToken)", "valid",
       response={"plainToken": pt, "encryptedToken": hmac_hex(secret, pt.encode())}, dedup=None)
    mk("invalid-wrong-secret", "signed with another secret token", b, "invalid", "no key matches", "signature",
       key=old, status=401)
    mk("invalid-tampered-body", "body changed after signing", b.replace(b"Weekly sync", b"Weekly sunk"), "invalid",
       "signature over the original body", "body", signature=sig(secret, NOW - 12, b), status=401)
    mk("invalid-stale-timestamp", "timestamp 301 s old", b, "invalid", STALE_REASON, "timestamp", ts=NOW - 301,
       status=401, policy=nots)
    mk("invalid-future-timestamp", "timestamp 301 s ahead", b, "invalid", STALE_REASON, "timestamp", ts=NOW + 301,
       status=401, policy=nots)
    mk("valid-boundary-past", "timestamp exactly 300 s old", b, "valid", "|now - ts| == tolerance is inside", "timestamp", ts=NOW - 300)
    mk("valid-boundary-future", "timestamp exactly 300 s ahead", b, "valid", "|now - ts| == tolerance is inside", "timestamp", ts=NOW + 300)
    mk("invalid-missing-signature", "no x-zm-signature", b, "invalid", "required header missing", "header",
       drop=["x-zm-signature"], status=400)
    mk("invalid-missing-timestamp", "no x-zm-request-timestamp", b, "invalid", "required header missing", "header",
       drop=["x-zm-request-timestamp"], status=400)
    mk("invalid-signature-without-v0", "x-zm-signature without the v0= prefix", b, "invalid",
       "signature field cannot be parsed (no v0=)", "header", signature=sig(secret, NOW - 12, b)[3:], status=400)
    pretty = json.dumps(ev, indent=2).encode()
    mk("quirk-pretty-json-raw-signed", "non-compact JSON signed over its raw bytes", pretty, "valid",
       "Hookguard verifies the raw bytes", "quirk",
       policy="Hookguard rule (zoom): raw bytes only; @zoom/rivet hashes JSON.stringify(JSON.parse(body)) and so rejects this")
    mk("quirk-reserialised-signature", "non-compact JSON body, signature over its compact re-serialisation",
       pretty, "invalid", "the signature does not cover the raw bytes received", "quirk",
       signature=sig(secret, NOW - 12, compact(ev)), status=401,
       policy="Hookguard rule (zoom): raw bytes only; @zoom/rivet hashes JSON.stringify(JSON.parse(body)) and so accepts this")
    mk("valid-rotation-old-secret", "receiver holds the new secret and the old one (other_keys); signed with the old",
       b.replace(b"Weekly sync", b"Daily sync"), "valid", "any held key may match", "valid", key=old, other=[old])
    return {"schema_version": 1, "scheme": "zoom",
            "doc_url": "https://developers.zoom.us/docs/api/webhooks/#verify-webhook-events",
            "meta": {"secret_format": "app Secret Token, verbatim UTF-8 HMAC key",
                     "signing": "no Zoom SDK has a signing function: signed with Python hmac per the docs; verified with @zoom/rivet"},
            "libraries": {"@zoom/rivet": None},
            "vectors": vs, "dedup_sequences": [dup_seq("zoom/valid-meeting-started")]}


# ---------------------------------------------------------------- paddle
def paddle_file():
    from paddle_billing.Notifications.PaddleSignature import PaddleSignature
    from paddle_billing.Notifications.Secret import Secret
    from paddle_billing.Notifications.Verifier import Verifier
    import paddle_billing.Notifications.Verifier as verifier_mod
    verifier_mod.time = lambda: float(NOW)
    lib = "paddle-python-sdk (PyPI, import paddle_billing)"
    secret = "pdl_ntfset_01jq7x3k9d2m4n6p8r0s2t4v6w_Zk9Qm2Lp7Rv1Ws8Yb3Nc5Df0Gh4JkLm6"
    old = "pdl_ntfset_01hz5w2j8c1l3m5n7q9r1s3t5u_Ab1Cd2Ef3Gh4Ij5Kl6Mn7Op8Qr9St0Uv"
    vs = []
    ev = {"event_id": "evt_01jq8a0000000000000000001", "event_type": "transaction.completed",
          "occurred_at": "2025-11-24T15:59:58.000000Z", "notification_id": "ntf_01jq8a0000000000000000001",
          "data": {"id": "txn_01jq8a0000000000000000001", "status": "completed", "currency_code": "EUR",
                   "customer_id": "ctm_01jq8a0000000000000000001"}}

    def h1(key, ts, body):
        return PaddleSignature.calculate_hmac(key, f"{ts}:".encode() + body).hexdigest()

    def mk(name, desc, body, expect, reason, category, header=None, ts=NOW - 2, key=secret, other=(), status=None,
           policy=None, drop=False):
        hdr = header if header is not None else f"ts={ts};h1={h1(key, ts, body)}"
        h = {"Content-Type": "application/json", "Paddle-Signature": hdr, "Paddle-Version": "1"}
        if drop:
            del h["Paddle-Signature"]
        j = json.loads(body) if expect == "valid" else {}
        vs.append(vector(id=f"paddle/{name}", scheme="paddle", description=desc, secret=secret, other_keys=other,
                         headers=h, body=body, tolerance_s=5, expect=expect, expect_status=status, reason=reason,
                         category=category, hookguard_policy=policy, event_type=j.get("event_type"),
                         produced_by=sdk(lib, "PaddleSignature.calculate_hmac(secret, '{ts}:{body}')"),
                         dedup_key=j.get("event_id"), dedup_key_source="/event_id"))

    b = compact(ev)
    ts = NOW - 2
    good = h1(secret, ts, b)
    other_sig = h1(old, ts, b)
    node_future = "Hookguard rule: a signed timestamp outside |now - ts| <= tolerance_s is refused on both sides; @paddle/paddle-node-sdk checks only the past side"
    mk("valid-transaction-completed", "transaction.completed, one h1", b, "valid", "hex HMAC-SHA256 over '{ts}:{body}'", "valid")
    e2 = json.loads(b)
    e2["event_id"] = "evt_01jq8a0000000000000000002"
    e2["data"]["customer_name"] = "Zoë Müller – 山田 🎉"
    mk("valid-utf8", "non-ASCII UTF-8 body", compact(e2), "valid", "raw UTF-8 bytes are signed", "valid")
    mk("invalid-wrong-secret", "signed with another notification-setting secret", b, "invalid", "no key matches",
       "signature", key=old, status=401)
    mk("invalid-tampered-body", "body changed after signing", b.replace(b"EUR", b"USD"), "invalid",
       "signature over the original body", "body", header=f"ts={ts};h1={good}", status=401)
    mk("invalid-stale-timestamp", "ts 6 s old (tolerance 5)", b, "invalid", STALE_REASON, "timestamp", ts=NOW - 6, status=401)
    mk("invalid-future-timestamp", "ts 6 s ahead", b, "invalid", STALE_REASON, "timestamp", ts=NOW + 6, status=401,
       policy=node_future)
    mk("valid-boundary-past", "ts exactly 5 s old", b, "valid", "|now - ts| == tolerance is inside", "timestamp", ts=NOW - 5)
    mk("valid-boundary-future", "ts exactly 5 s ahead", b, "valid", "|now - ts| == tolerance is inside", "timestamp", ts=NOW + 5)
    mk("valid-several-h1-match-last", "two h1 values (secret roll), the second matches", b, "valid",
       "any h1 may match", "valid", header=f"ts={ts};h1={other_sig};h1={good}")
    mk("valid-several-h1-match-first", "two h1 values, the first matches", b, "valid", "any h1 may match", "valid",
       header=f"ts={ts};h1={good};h1={other_sig}",
       policy="Hookguard rule (paddle): any h1 may match (Paddle docs); @paddle/paddle-node-sdk keeps only the last h1")
    mk("valid-unknown-key-ignored", "an unknown h2 entry next to a matching h1", b, "valid", "unknown keys are ignored",
       "quirk", header=f"ts={ts};h1={good};h2={'0' * 64}",
       policy="Hookguard rule (paddle): unknown keys ignored; paddle-python-sdk raises ValueError on any key other than ts/h1")
    mk("invalid-missing-header", "no Paddle-Signature", b, "invalid", "required header missing", "header", drop=True, status=400)
    mk("invalid-missing-ts", "Paddle-Signature without ts", b, "invalid", "timestamp field missing", "header",
       header=f"h1={good}", status=400)
    mk("invalid-missing-h1", "Paddle-Signature without h1", b, "invalid", "signature field missing", "header",
       header=f"ts={ts}", status=400)
    mk("invalid-non-numeric-ts", "ts is not an integer", b, "invalid", "timestamp field cannot be parsed", "header",
       header=f"ts=yesterday;h1={good}", status=400)
    mk("valid-rotation-old-secret", "receiver holds the new secret and the old one (other_keys); signed with the old",
       b, "valid", "any held key may match", "valid", key=old, other=[old])

    class Req:
        def __init__(self, v):
            self.headers = v["headers"]
            self.body = body_of(v)

    def check(v):
        def f(key):
            ok = Verifier().verify(Req(v), Secret(key))
            return ok, f"Verifier().verify returned {ok}"
        add_verification(v, lib, "Verifier().verify(request, Secret(key)) (maximum_variance 5, time pinned)", f)
    for v in vs:
        check(v)
    return {"schema_version": 1, "scheme": "paddle",
            "doc_url": "https://developer.paddle.com/webhooks/signature-verification",
            "meta": {"secret_format": "notification setting secret key pdl_ntfset_…, verbatim UTF-8 HMAC key"},
            "libraries": {lib: V[lib], "@paddle/paddle-node-sdk": None},
            "vectors": vs, "dedup_sequences": [dup_seq("paddle/valid-transaction-completed")]}


# ---------------------------------------------------------------- linear
def linear_file():
    secret, old = "lin_wh_8f2KqP4xRm7Tz1Vb9Nc3Ld6Hs0Yw5Ja2Ge4Uo", "lin_wh_1a2B3c4D5e6F7g8H9i0J1k2L3m4N5o6P7q8R"
    vs = []

    def ev(ts_ms, title="Fix login redirect", **extra):
        d = {"action": "create", "type": "Issue", "createdAt": "2025-11-24T15:59:58.000Z",
             "data": {"id": "9f2c1e4a-0000-4000-8000-000000000001", "identifier": "ENG-123", "title": title},
             "url": "https://linear.app/acme/issue/ENG-123", "organizationId": "org-0001",
             "webhookTimestamp": ts_ms, "webhookId": "wh-0001"}
        d.update(extra)
        return compact(d)

    def mk(name, desc, body, expect, reason, category, key=secret, other=(), status=None, policy=None,
           signature=None, drop=(), delivery="5f4b1f2a-1c3d-4e5f-8a9b-", extra_h=None):
        h = {"Content-Type": "application/json; charset=utf-8",
             "Linear-Signature": signature if signature is not None else hmac_hex(key, body),
             "Linear-Delivery": delivery + f"{len(vs) + 1:012d}", "Linear-Event": "Issue",
             "Linear-Timestamp": str(NOW * 1000 - 1500)}
        h.update(extra_h or {})
        for d in drop:
            del h[d]
        vs.append(vector(id=f"linear/{name}", scheme="linear", description=desc, secret=secret, other_keys=other,
                         headers=h, body=body, tolerance_s=60, expect=expect, expect_status=status, reason=reason,
                         category=category, hookguard_policy=policy,
                         event_type=json.loads(body).get("type") if expect == "valid" else None,
                         produced_by=plain("hmac.new(secret, body, sha256).hexdigest() (LinearWebhookClient has no signing function)"),
                         dedup_key=h.get("Linear-Delivery"), dedup_key_source="header:Linear-Delivery"))

    fresh = NOW * 1000 - 1500
    b = ev(fresh)
    mk("valid-issue-create", "Issue create, webhookTimestamp in ms", b, "valid", "hex HMAC-SHA256 of the body; fresh webhookTimestamp", "valid")
    mk("valid-utf8", "non-ASCII UTF-8 title", ev(fresh, "Überprüfen – 修正 🎉"), "valid", "raw UTF-8 bytes are signed", "valid")
    mk("invalid-wrong-secret", "signed with another secret", b, "invalid", "no key matches", "signature", key=old, status=401)
    mk("invalid-tampered-body", "body changed after signing", ev(fresh, "Fix logout redirect"), "invalid",
       "signature over the original body", "body", signature=hmac_hex(secret, b), status=401)
    mk("invalid-stale-timestamp", "webhookTimestamp 60.001 s old", ev(NOW * 1000 - 60001), "invalid", STALE_REASON, "timestamp", status=401)
    mk("invalid-future-timestamp", "webhookTimestamp 60.001 s ahead", ev(NOW * 1000 + 60001), "invalid", STALE_REASON, "timestamp", status=401)
    mk("valid-boundary-past", "webhookTimestamp exactly 60 000 ms old", ev(NOW * 1000 - 60000), "valid", "inclusive bound", "timestamp")
    mk("valid-boundary-future", "webhookTimestamp exactly 60 000 ms ahead", ev(NOW * 1000 + 60000), "valid", "inclusive bound", "timestamp")
    mk("invalid-timestamp-in-seconds", "webhookTimestamp given in seconds (a number, read as ms: 1970)",
       ev(NOW - 2), "invalid", "a number, so parsed; as milliseconds it is far outside the window", "timestamp", status=401)
    mk("invalid-timestamp-string", "webhookTimestamp as a JSON string of ms", ev(str(fresh)), "invalid",
       "webhookTimestamp is not a JSON number", "body", status=400)
    nots = json.loads(b)
    del nots["webhookTimestamp"]
    mk("invalid-no-webhook-timestamp", "signed body without webhookTimestamp", compact(nots), "invalid",
       "timestamp field missing", "body", status=400)
    mk("invalid-body-not-json", "correctly signed body that is not JSON", b"action=create&type=Issue", "invalid",
       "body cannot be parsed as JSON", "body", status=400)
    mk("quirk-stale-unsigned-timestamp-header", "Linear-Timestamp header 10 min old, signed webhookTimestamp fresh",
       b.replace(b"ENG-123\"", b"ENG-124\"", 1), "valid", "the Linear-Timestamp header is unsigned and ignored",
       "quirk", extra_h={"Linear-Timestamp": str((NOW - 600) * 1000)})
    mk("invalid-missing-signature", "no Linear-Signature", b, "invalid", "required header missing", "header",
       drop=["Linear-Signature"], status=400)
    mk("invalid-malformed-signature", "Linear-Signature is not hex", b, "invalid", "signature cannot be parsed as hex",
       "header", signature="z" * 64, status=400)
    mk("invalid-missing-delivery-id", "valid signature, no Linear-Delivery", b, "invalid", "delivery ID (dedup key) missing",
       "strictness", drop=["Linear-Delivery"], status=400,
       policy="Hookguard rule (linear): dedup_key is the Linear-Delivery header, missing: 400; @linear/sdk checks no such header")
    mk("valid-rotation-old-secret", "receiver holds the new secret and the old one (other_keys); signed with the old",
       ev(fresh, "Rotate keys"), "valid", "any held key may match", "valid", key=old, other=[old])
    return {"schema_version": 1, "scheme": "linear",
            "doc_url": "https://linear.app/developers/webhooks#securing-webhooks",
            "meta": {"secret_format": "webhook signing secret (lin_wh_…), verbatim UTF-8 HMAC key"},
            "libraries": {"@linear/sdk": None},
            "vectors": vs, "dedup_sequences": [dup_seq("linear/valid-issue-create", "the same delivery twice")]}


# ---------------------------------------------------------------- square
def square_file():
    from square.utils.webhooks_helper import verify_signature
    lib = "squareup (PyPI)"
    key, old = "Wm3Zq8Rk5Tn1Vb7Xc2Ld9H", "Ab4Cd6Ef8Gh0Ij2Kl4Mn6P"
    url = "https://hooks.example.com/square/webhook"
    vs = []

    def ev(eid, note="Thanks"):
        return compact({"merchant_id": "MLX0000000001", "type": "payment.created", "event_id": eid,
                        "created_at": "2025-11-24T15:59:58.000Z",
                        "data": {"type": "payment", "id": "KkAkhdMs0000000001",
                                 "object": {"payment": {"id": "KkAkhdMs0000000001", "amount_money": {"amount": 100, "currency": "USD"},
                                                        "note": note, "status": "APPROVED"}}}})

    def mk(name, desc, body, expect, reason, category, u=url, signed_url=None, k=key, other=(), status=None,
           policy=None, signature=None, legacy=False, only_legacy=False):
        h = {"Content-Type": "application/json", "square-initial-delivery-timestamp": "2025-11-24T15:59:58.000Z",
             "square-retry-number": "0"}
        su = signed_url or u
        if not only_legacy and signature != "":
            h["x-square-hmacsha256-signature"] = signature if signature is not None else hmac_b64(k, su.encode() + body)
        if legacy or only_legacy:
            h["x-square-signature"] = hmac_b64(k, su.encode() + body, hashlib.sha1)
        j = json.loads(body) if expect == "valid" else {}
        vs.append(vector(id=f"square/{name}", scheme="square", description=desc, secret=key, other_keys=other, url=u,
                         with_url=True, headers=h, body=body, expect=expect, expect_status=status, reason=reason,
                         category=category, hookguard_policy=policy, event_type=j.get("type"),
                         produced_by=plain("base64(hmac.new(key, url + body, sha256)) (the Square SDKs have no signing function)"),
                         dedup_key=j.get("event_id"), dedup_key_source="/event_id"))

    b = ev("6a8f5f28-0000-4000-8000-000000000001")
    mk("valid-payment-created", "payment.created", b, "valid", "base64 HMAC-SHA256 over url + body", "valid")
    mk("valid-utf8", "non-ASCII UTF-8 note", ev("6a8f5f28-0000-4000-8000-000000000002", "Merci – ありがとう 🎉"), "valid", "raw UTF-8 bytes", "valid")
    mk("invalid-wrong-key", "signed with another signature key", b, "invalid", "no key matches", "signature", k=old, status=401)
    mk("invalid-tampered-body", "body changed after signing", b.replace(b"100", b"900"), "invalid",
       "signature over the original body", "body", signature=hmac_b64(key, url.encode() + b), status=401)
    mk("quirk-trailing-slash-mismatch", "notification URL configured with a trailing slash, signed without",
       b, "invalid", "the URL is part of the signed bytes; a trailing / counts", "quirk", u=url + "/", signed_url=url, status=401)
    mk("valid-trailing-slash-url", "notification URL with a trailing slash, signed with it",
       ev("6a8f5f28-0000-4000-8000-000000000003"), "valid", "signed with the URL exactly as configured", "quirk", u=url + "/")
    mk("valid-with-legacy-header", "both x-square-hmacsha256-signature and legacy x-square-signature", ev("6a8f5f28-0000-4000-8000-000000000005"),
       "valid", "the SHA-256 header is checked; the legacy one is ignored", "valid", legacy=True)
    mk("invalid-legacy-header-only", "only the legacy SHA-1 x-square-signature", b, "invalid",
       "x-square-hmacsha256-signature missing; SHA-1 is not supported", "header", only_legacy=True, status=400)
    mk("invalid-missing-signature", "no x-square-hmacsha256-signature", b, "invalid", "required header missing",
       "header", signature="", status=400)
    mk("invalid-malformed-signature", "signature is not base64", b, "invalid", "signature cannot be parsed as base64",
       "header", signature="%%not-base64%%", status=400)
    mk("invalid-empty-body", "empty body correctly signed (url only)", b"", "invalid",
       "no /event_id to deduplicate on", "body", status=400,
       policy="Hookguard rule (square): dedup_key /event_id, an empty body is 400; npm square returns true for it (squareup returns False)")
    noid = compact({"merchant_id": "MLX0000000001", "type": "payment.created", "data": {}})
    mk("invalid-no-event-id", "signed JSON body without event_id", noid, "invalid", "dedup key /event_id missing", "body",
       status=400, policy="Hookguard rule (square): dedup_key /event_id, missing: 400; the SDKs check only the signature")
    mk("valid-rotation-old-key", "receiver holds the new key and the old one (other_keys); signed with the old",
       ev("6a8f5f28-0000-4000-8000-000000000004"), "valid", "any held key may match", "valid", k=old, other=[old])
    def check(v):
        body = body_of(v).decode("utf-8")
        sig = v["headers"].get("x-square-hmacsha256-signature", "")

        def f(k):
            ok = verify_signature(request_body=body, signature_header=sig, signature_key=k, notification_url=v["url"])
            return ok, f"verify_signature returned {ok}"
        add_verification(v, lib, "square.utils.webhooks_helper.verify_signature", f)
    for v in vs:
        check(v)
    return {"schema_version": 1, "scheme": "square",
            "doc_url": "https://developer.squareup.com/docs/webhooks/step3validate",
            "meta": {"secret_format": "subscription Signature Key, verbatim UTF-8 HMAC key",
                     "signed_bytes": "notification URL exactly as configured (the vector's url) + raw body"},
            "libraries": {lib: V[lib], "square (npm)": None},
            "vectors": vs, "dedup_sequences": [dup_seq("square/valid-payment-created")]}


# ---------------------------------------------------------------- mailgun
def mailgun_file():
    from mailgun.security import SecurityGuard
    lib = "mailgun (PyPI)"
    key, old = "3c8d4f7a1b2e5096cd7e8f9a0b1c2d3e", "9f8e7d6c5b4a39281706f5e4d3c2b1a0"
    vs = []

    def block(k, ts, token):
        return {"timestamp": str(ts), "token": token, "signature": hmac_hex(k, f"{ts}{token}".encode())}

    def data(eid, recipient="alice@example.com"):
        return {"id": eid, "event": "delivered", "timestamp": 1763999990.123, "recipient": recipient,
                "message": {"headers": {"message-id": "20251124155950.1.ABCDEF@mg.example.com", "subject": "Hello"}}}

    def tok(n):
        return hashlib.sha256(f"mailgun-token-{n}".encode()).hexdigest()[:50]

    def mk(name, desc, body, expect, reason, category, token=None, other=(), status=None, policy=None,
           ctype="application/json"):
        j = {}
        if expect == "valid":
            if ctype == "application/json":
                j = json.loads(body)
                et, dk = j["event-data"]["event"], j["signature"]["token"]
            else:
                et, dk = None, dict(urllib.parse.parse_qsl(body.decode()))["token"]
        else:
            et = dk = None
        vs.append(vector(id=f"mailgun/{name}", scheme="mailgun", description=desc, secret=key, other_keys=other,
                         headers={"Content-Type": ctype, "User-Agent": "mailgun/treq-16.12.0"}, body=body,
                         tolerance_s=300, expect=expect, expect_status=status, reason=reason, category=category,
                         hookguard_policy=policy, event_type=et,
                         produced_by=plain("hmac.new(key, timestamp + token, sha256).hexdigest() (the Mailgun SDK has no signing function)"),
                         dedup_key=dk, dedup_key_source="/signature/token" if ctype == "application/json" else "form field token"))

    sdk900 = "Hookguard rule (mailgun): tolerance_s 300; the mailgun Python SDK's verify_webhook defaults to max_age_seconds=900 and accepts this"
    s1 = block(key, NOW - 10, tok(1))
    b1 = compact({"signature": s1, "event-data": data("evt-0001")})
    mk("valid-delivered", "JSON webhook, delivered event", b1, "valid", "hex HMAC-SHA256 over timestamp+token", "valid")
    mk("valid-utf8", "non-ASCII UTF-8 event data", compact({"signature": block(key, NOW - 10, tok(2)),
                                                            "event-data": data("evt-0002", "zoë@exämple.com")}),
       "valid", "raw UTF-8 body (not signed anyway)", "valid")
    mk("quirk-tampered-event-data", "same signature block as valid-delivered, event-data changed",
       compact({"signature": s1, "event-data": data("evt-0001", "mallory@example.com")}), "valid",
       "Mailgun signs only timestamp+token; event-data is not covered, so a changed body with an intact signature block verifies (dedup catches the replay)",
       "quirk")
    mk("invalid-wrong-key", "signed with another signing key",
       compact({"signature": block(old, NOW - 10, tok(3)), "event-data": data("evt-0003")}), "invalid", "no key matches", "signature", status=401)
    bad = dict(s1, token=tok(4))
    mk("invalid-tampered-token", "token replaced, signature kept",
       compact({"signature": bad, "event-data": data("evt-0001")}), "invalid", "signature over the original token", "signature", status=401)
    mk("invalid-stale-timestamp", "signature.timestamp 301 s old",
       compact({"signature": block(key, NOW - 301, tok(5)), "event-data": data("evt-0005")}), "invalid", STALE_REASON,
       "timestamp", status=401, policy=sdk900)
    mk("invalid-future-timestamp", "signature.timestamp 301 s ahead",
       compact({"signature": block(key, NOW + 301, tok(6)), "event-data": data("evt-0006")}), "invalid", STALE_REASON,
       "timestamp", status=401, policy=sdk900)
    mk("valid-boundary-past", "signature.timestamp exactly 300 s old",
       compact({"signature": block(key, NOW - 300, tok(7)), "event-data": data("evt-0007")}), "valid", "inclusive bound", "timestamp")
    mk("valid-boundary-future", "signature.timestamp exactly 300 s ahead",
       compact({"signature": block(key, NOW + 300, tok(8)), "event-data": data("evt-0008")}), "valid", "inclusive bound", "timestamp")
    lf = block(key, NOW - 20, tok(9))
    fb = form([("timestamp", lf["timestamp"]), ("token", lf["token"]), ("signature", lf["signature"]),
               ("event", "delivered"), ("recipient", "alice@example.com"), ("domain", "mg.example.com")])
    mk("valid-legacy-form", "legacy form-encoded webhook with timestamp/token/signature fields", fb, "valid",
       "same signature, fields in the form body; event_type null for form bodies", "valid",
       ctype="application/x-www-form-urlencoded")
    mk("invalid-missing-signature-block", "JSON body without a signature object",
       compact({"event-data": data("evt-0010")}), "invalid", "signature fields missing", "body", status=400)
    nb = dict(block(key, NOW - 10, tok(11)))
    del nb["signature"]
    mk("invalid-missing-signature-field", "signature object without signature", compact({"signature": nb, "event-data": data("evt-0011")}),
       "invalid", "signature field missing", "body", status=400)
    mk("invalid-body-not-json", "application/json body that is not JSON", b"{\"signature\": {", "invalid",
       "body cannot be parsed", "body", status=400)
    nt = block(key, NOW - 10, tok(12))
    nt["timestamp"] = "yesterday"
    mk("invalid-non-numeric-timestamp", "signature.timestamp is not an integer",
       compact({"signature": nt, "event-data": data("evt-0012")}), "invalid", "timestamp field cannot be parsed", "body", status=400)
    mk("valid-rotation-old-key", "receiver holds the new key and the old one (other_keys); signed with the old",
       compact({"signature": block(old, NOW - 10, tok(13)), "event-data": data("evt-0013")}), "valid",
       "any held key may match", "valid", other=[old])

    def check(v):
        body = body_of(v)
        try:
            if v["headers"]["Content-Type"] == "application/json":
                s = json.loads(body)["signature"]
            else:
                s = dict(urllib.parse.parse_qsl(body.decode()))
            fields = (s.get("token"), s.get("timestamp"), s.get("signature"))
        except Exception as e:
            fields = e

        def f(k):
            if isinstance(fields, Exception):
                return False, f"body unparsable before calling the SDK ({type(fields).__name__})"
            ok = SecurityGuard.verify_webhook(k, fields[0], fields[1], fields[2])
            return ok, f"verify_webhook (max_age_seconds=900 default) returned {ok}"
        add_verification(v, lib, "mailgun.security.SecurityGuard.verify_webhook(key, token, timestamp, signature)", f)
    for v in vs:
        check(v)
    return {"schema_version": 1, "scheme": "mailgun",
            "doc_url": "https://documentation.mailgun.com/docs/mailgun/user-manual/webhooks/securing-webhooks",
            "meta": {"secret_format": "HTTP webhook signing key, verbatim UTF-8 HMAC key",
                     "signed_bytes": "signature.timestamp + signature.token (no separator); the body is not signed"},
            "libraries": {lib: V[lib]},
            "vectors": vs,
            "dedup_sequences": [dup_seq("mailgun/valid-delivered"),
                                {"description": "the same signature block (same token) with another body: duplicate",
                                 "steps": [{"vector": "mailgun/valid-delivered", "expect_action": "forward"},
                                           {"vector": "mailgun/quirk-tampered-event-data", "expect_action": "duplicate"}]}]}


# ---------------------------------------------------------------- sendgrid
def sendgrid_file():
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature
    from sendgrid.helpers.eventwebhook import EventWebhook
    lib = "sendgrid (PyPI)"
    N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551

    def keypair(seed):
        priv = ec.derive_private_key(int.from_bytes(hashlib.sha256(seed).digest(), "big") % (N - 1) + 1, ec.SECP256R1())
        pub = b64(priv.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo))
        return priv, pub

    priv, pub = keypair(b"hookguard sendgrid key 1")
    opriv, opub = keypair(b"hookguard sendgrid key 0 (old)")
    vs = []

    def sign(p, ts, body, high_s=False):
        der = p.sign(f"{ts}".encode() + body, ec.ECDSA(hashes.SHA256(), deterministic_signing=True))
        r, s = decode_dss_signature(der)
        if high_s != (s > N // 2):
            s = N - s
        return b64(encode_dss_signature(r, s))

    def events(n, email="alice@example.com"):
        return compact([{"email": email, "timestamp": 1763999990, "event": "delivered", "sg_event_id": f"sg-evt-{n:04d}",
                         "sg_message_id": f"msg-{n:04d}.filter0001", "smtp-id": f"<msg-{n:04d}@example.com>"},
                        {"email": email, "timestamp": 1763999991, "event": "open", "sg_event_id": f"sg-evt-{n:04d}b",
                         "sg_message_id": f"msg-{n:04d}.filter0001"}]) + b"\r\n"

    def mk(name, desc, body, expect, reason, category, ts=NOW - 5, p=priv, other=(), status=None, policy=None,
           signature=None, drop=(), ts_header=None, high_s=False):
        h = {"Content-Type": "application/json",
             "X-Twilio-Email-Event-Webhook-Signature": signature if signature is not None else sign(p, ts, body, high_s),
             "X-Twilio-Email-Event-Webhook-Timestamp": ts_header or str(ts), "User-Agent": "SendGrid Event API"}
        for d in drop:
            del h[d]
        vs.append(vector(id=f"sendgrid/{name}", scheme="sendgrid", description=desc, public_key=pub, other_keys=other,
                         headers=h, body=body, tolerance_s=300, expect=expect, expect_status=status, reason=reason,
                         category=category, hookguard_policy=policy, event_type=None,
                         produced_by={"library": "cryptography (PyPI)", "version": V["cryptography (PyPI)"],
                                      "function": "EllipticCurvePrivateKey.sign(ts+body, ECDSA(SHA256, deterministic_signing=True)) with a fixed-seed P-256 key (RFC 6979); no SendGrid SDK signs"},
                         dedup_key="sha256:" + sha256_hex(body), dedup_key_source="sha256 of body"))

    nots = "Hookguard rule: a signed timestamp outside |now - ts| <= tolerance_s is refused; the SendGrid SDKs check no timestamp"
    b = events(1)
    mk("valid-batch", "JSON array of two events ending in CRLF", b, "valid", "ECDSA P-256/SHA-256 over ts + body (incl. CRLF)", "valid")
    mk("valid-utf8", "non-ASCII UTF-8 email", events(2, "zoë@exämple.com"), "valid", "raw UTF-8 bytes", "valid")
    mk("valid-high-s", "same request signed with a high-S signature (s > n/2)", events(3), "valid",
       "ECDSA accepts high-S; SendGrid does not normalise S", "quirk", high_s=True)
    mk("invalid-wrong-key", "signed by another key", b, "invalid", "no key matches", "signature", p=opriv, status=401)
    mk("invalid-tampered-body", "body changed after signing", b.replace(b"open", b"drop"), "invalid",
       "signature over the original body", "body", signature=sign(priv, NOW - 5, b), status=401)
    mk("quirk-crlf-not-signed", "body ends in CRLF, the signature covers the body without it", b, "invalid",
       "the trailing CRLF is part of the signed bytes", "quirk", signature=sign(priv, NOW - 5, b[:-2]), status=401)
    mk("invalid-stale-timestamp", "timestamp 301 s old", events(4), "invalid", STALE_REASON, "timestamp", ts=NOW - 301, status=401, policy=nots)
    mk("invalid-future-timestamp", "timestamp 301 s ahead", events(5), "invalid", STALE_REASON, "timestamp", ts=NOW + 301, status=401, policy=nots)
    mk("valid-boundary-past", "timestamp exactly 300 s old", events(6), "valid", "inclusive bound", "timestamp", ts=NOW - 300)
    mk("valid-boundary-future", "timestamp exactly 300 s ahead", events(7), "valid", "inclusive bound", "timestamp", ts=NOW + 300)
    mk("invalid-missing-signature", "no signature header", b, "invalid", "required header missing", "header",
       drop=["X-Twilio-Email-Event-Webhook-Signature"], status=400)
    mk("invalid-missing-timestamp", "no timestamp header", b, "invalid", "required header missing", "header",
       drop=["X-Twilio-Email-Event-Webhook-Timestamp"], status=400)
    mk("invalid-malformed-signature", "signature is not base64", b, "invalid", "signature cannot be parsed", "header",
       signature="%%not-base64%%", status=400)
    mk("invalid-non-numeric-timestamp", "timestamp header not an integer", b, "invalid", "timestamp cannot be parsed",
       "header", ts_header="yesterday", status=400)
    mk("valid-rotation-old-key", "receiver holds the new key and the old one (other_keys); signed by the old",
       events(8), "valid", "any held key may match", "valid", p=opriv, other=[opub])

    def check(v):
        body = body_of(v).decode("utf-8")
        sig = v["headers"].get("X-Twilio-Email-Event-Webhook-Signature")
        ts = v["headers"].get("X-Twilio-Email-Event-Webhook-Timestamp")

        def f(k):
            ew = EventWebhook()
            ok = ew.verify_signature(body, sig, ts, ew.convert_public_key_to_ecdsa(k))
            return ok, f"verify_signature returned {ok}"
        add_verification(v, lib, "EventWebhook.verify_signature(body, sig, ts, convert_public_key_to_ecdsa(key))", f)
    for v in vs:
        check(v)
    return {"schema_version": 1, "scheme": "sendgrid",
            "doc_url": "https://www.twilio.com/docs/sendgrid/for-developers/tracking-events/getting-started-event-webhook-security-features",
            "meta": {"key_format": "public_key: Verification Key = base64 DER SubjectPublicKeyInfo (P-256)",
                     "signing": "fixed-seed P-256 keys, deterministic ECDSA (RFC 6979) via cryptography"},
            "libraries": {lib: V[lib], "@sendgrid/eventwebhook": None, "cryptography (PyPI)": V["cryptography (PyPI)"]},
            "vectors": vs, "dedup_sequences": [dup_seq("sendgrid/valid-batch")]}


# ---------------------------------------------------------------- standard webhooks v1a
def swv1a_file():
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    import standardwebhooks.webhooks as swmod
    from standardwebhooks import Webhook
    lib = "standardwebhooks (PyPI)"

    class FixedDT(_dt.datetime):
        @classmethod
        def now(cls, tz=None):
            return _dt.datetime.fromtimestamp(NOW, tz=tz)
    swmod.datetime = FixedDT

    def kp(seed):
        sk = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(seed).digest())
        raw = sk.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return sk, "whpk_" + b64(raw)

    sk, pk = kp(b"hookguard v1a key 1")
    osk, opk = kp(b"hookguard v1a key 0 (old)")
    whsec = "whsec_" + b64(hashlib.sha256(b"hookguard v1 hmac key").digest()[:24])
    vs = []

    def v1a(k, mid, ts, body):
        return "v1a," + b64(k.sign(f"{mid}.{ts}.".encode() + body))

    def v1(mid, ts, body):
        return Webhook(whsec).sign(mid, _dt.datetime.fromtimestamp(ts, tz=_dt.timezone.utc), body.decode("utf-8"))

    def ev(n, name="Ada"):
        return compact({"type": "user.created", "timestamp": "2025-11-24T15:59:58Z", "data": {"id": f"user_{n:04d}", "name": name}})

    ed_fn = {"library": "cryptography (PyPI)", "version": None,
             "function": "Ed25519PrivateKey.sign('{id}.{ts}.{body}') with a fixed seed (no official SDK implements v1a)"}

    def mk(name, desc, body, expect, reason, category, sig=None, ts=NOW - 10, k=sk, hold="pk", other=(), status=None,
           drop=(), ts_header=None, fn=None):
        mid = f"msg_2Kx{len(vs) + 1:04d}v1a"
        h = {"Content-Type": "application/json", "webhook-id": mid, "webhook-timestamp": ts_header or str(ts),
             "webhook-signature": sig(mid, ts, body) if callable(sig) else (sig or v1a(k, mid, ts, body))}
        for d in drop:
            del h[d]
        pf = dict(fn or ed_fn)
        pf["version"] = V[pf["library"]]
        vs.append(vector(id=f"standard-webhooks-v1a/{name}", scheme="standard-webhooks", description=desc,
                         secret=whsec if hold == "sec" else None, public_key=pk if hold == "pk" else None,
                         other_keys=other, headers=h, body=body, tolerance_s=300, expect=expect, expect_status=status,
                         reason=reason, category=category, event_type=json.loads(body).get("type") if expect == "valid" else None,
                         produced_by=pf, dedup_key=mid if expect == "valid" else None, dedup_key_source="header:webhook-id"))

    both_fn = {"library": lib, "function": "Webhook(whsec).sign for the v1 entry + cryptography Ed25519 for the v1a entry"}
    mk("valid-ed25519", "one v1a entry, receiver holds the whpk_ key", ev(1), "valid", "ed25519 over '{id}.{ts}.{body}'", "valid")
    mk("valid-utf8", "non-ASCII UTF-8 body", ev(2, "Zoë – 山田 🎉"), "valid", "raw UTF-8 bytes", "valid")
    mk("invalid-wrong-key", "signed by another ed25519 key", ev(3), "invalid", "no key matches", "signature", k=osk, status=401)
    mk("invalid-tampered-body", "body changed after signing", ev(4, "Eve"), "invalid", "signature over the original body",
       "body", sig=lambda mid, ts, b: v1a(sk, mid, ts, ev(4)), status=401)
    mk("invalid-stale-timestamp", "timestamp 301 s old", ev(5), "invalid", STALE_REASON, "timestamp", ts=NOW - 301, status=401)
    mk("invalid-future-timestamp", "timestamp 301 s ahead", ev(6), "invalid", STALE_REASON, "timestamp", ts=NOW + 301, status=401)
    mk("valid-boundary-past", "timestamp exactly 300 s old", ev(7), "valid", "inclusive bound", "timestamp", ts=NOW - 300)
    mk("valid-boundary-future", "timestamp exactly 300 s ahead", ev(8), "valid", "inclusive bound", "timestamp", ts=NOW + 300)
    mk("invalid-unpadded-signature", "v1a signature base64 without its == padding", ev(9), "invalid",
       "only canonical padded base64 matches; unpadded is not matched", "strictness",
       sig=lambda mid, ts, b: v1a(sk, mid, ts, b).rstrip("="), status=401)
    mk("valid-mixed-v1-v1a-holding-whpk", "header 'v1,… v1a,…', receiver holds the whpk_ key", ev(10), "valid",
       "a whpk_ key checks only the v1a entry", "valid", sig=lambda mid, ts, b: v1(mid, ts, b) + " " + v1a(sk, mid, ts, b), fn=both_fn)
    mk("valid-mixed-v1-v1a-holding-whsec", "header 'v1,… v1a,…', receiver holds the whsec_ key", ev(11), "valid",
       "a whsec_ key checks only the v1 entry", "valid", hold="sec",
       sig=lambda mid, ts, b: v1(mid, ts, b) + " " + v1a(sk, mid, ts, b), fn=both_fn)
    mk("invalid-v1-only-holding-whpk", "only a (valid) v1 entry, receiver holds only the whpk_ key", ev(12), "invalid",
       "a whpk_ key checks only v1a entries: nothing matches", "signature", sig=lambda mid, ts, b: v1(mid, ts, b),
       status=401, fn={"library": lib, "function": "Webhook(whsec).sign"})
    mk("invalid-v1a-only-holding-whsec", "only a v1a entry, receiver holds only the whsec_ key", ev(13), "invalid",
       "a whsec_ key checks only v1 entries: nothing matches", "signature", hold="sec", status=401)
    mk("valid-several-v1a", "two v1a entries, the first by an unknown key, the second matches", ev(14), "valid",
       "any entry may match", "valid", sig=lambda mid, ts, b: v1a(osk, mid, ts, b) + " " + v1a(sk, mid, ts, b))
    mk("valid-rotation-old-key", "receiver holds the new whpk_ (public_key) and the old one (other_keys); signed by the old",
       ev(15), "valid", "any held key may match", "valid", k=osk, other=[opk])
    mk("valid-rotation-mixed-key-types", "receiver holds a whpk_ key and a whsec_ key (other_keys); header has only v1",
       ev(16), "valid", "the whsec_ key in other_keys matches the v1 entry", "valid", other=[whsec],
       sig=lambda mid, ts, b: v1(mid, ts, b), fn={"library": lib, "function": "Webhook(whsec).sign"})
    mk("invalid-missing-signature", "no webhook-signature", ev(17), "invalid", "required header missing", "header",
       drop=["webhook-signature"], status=400)
    mk("invalid-missing-id", "no webhook-id", ev(18), "invalid", "required header missing", "header", drop=["webhook-id"], status=400)
    mk("invalid-non-numeric-timestamp", "webhook-timestamp not an integer", ev(19), "invalid", "timestamp cannot be parsed",
       "header", ts_header="yesterday", sig=lambda mid, ts, b: v1a(sk, mid, "yesterday", b), status=400)

    def check(v):
        if not any(k.startswith("whsec_") for k in [v["secret"] or ""] + v["other_keys"]):
            return

        def f(k):
            if not k.startswith("whsec_"):
                return False, "whpk_ key: not usable by this SDK (v1 only), skipped"
            Webhook(k).verify(body_of(v).decode("utf-8"), v["headers"])
            return True, "Webhook.verify returned the payload"
        add_verification(v, lib, "Webhook(whsec).verify(body, headers) (v1 entries only, clock pinned)", f)
    for v in vs:
        check(v)
    return {"schema_version": 1, "scheme": "standard-webhooks",
            "doc_url": "https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md",
            "meta": {"key_format": "public_key: whpk_ + base64(32-byte ed25519 public key); secret (v1): whsec_ + base64(key bytes)",
                     "signing": "no official SDK implements v1a: signed with cryptography Ed25519 (fixed seeds), verified with node:crypto; v1 entries via standardwebhooks (PyPI)"},
            "libraries": {"cryptography (PyPI)": V["cryptography (PyPI)"], lib: V[lib], "node:crypto": None},
            "vectors": vs, "dedup_sequences": [dup_seq("standard-webhooks-v1a/valid-ed25519")]}


# ---------------------------------------------------------------- slack forms
def slack_forms_file():
    from slack_sdk.signature import Clock, SignatureVerifier
    lib = "slack_sdk (PyPI slack-sdk)"

    class Fixed(Clock):
        def now(self):
            return float(NOW)

    secret, old = "9e2c4b7d1a3f5e6081b2c3d4e5f6a7b8", "1f0e2d3c4b5a69788796a5b4c3d2e1f0"
    vs = []

    def slash(command="/weather", text="Berlin tomorrow", trigger="1234567890.0001"):
        return form([("token", "gIkuvaNzQIHg97ATvDxqgjtO"), ("team_id", "T0001"), ("team_domain", "acme"),
                     ("channel_id", "C2147483705"), ("channel_name", "general"), ("user_id", "U2147483697"),
                     ("user_name", "ada"), ("command", command), ("text", text), ("api_app_id", "A0001"),
                     ("is_enterprise_install", "false"),
                     ("response_url", "https://hooks.slack.com/commands/T0001/1234/abcd"), ("trigger_id", trigger)])

    def interactive(kind="block_actions", action="approve"):
        p = {"type": kind, "user": {"id": "U2147483697", "username": "ada", "team_id": "T0001"},
             "api_app_id": "A0001", "token": "gIkuvaNzQIHg97ATvDxqgjtO", "trigger_id": "1234567890.0002",
             "team": {"id": "T0001", "domain": "acme"}, "actions": [{"action_id": action, "block_id": "b1", "type": "button", "value": "yes"}]}
        return form([("payload", json.dumps(p, separators=(",", ":")))])

    def gen(key, ts, body):
        return SignatureVerifier(key).generate_signature(timestamp=str(ts), body=body)

    def etype(body):
        if not body:
            return None
        f = dict(urllib.parse.parse_qsl(body.decode("utf-8"), keep_blank_values=True))
        if "payload" in f:
            return json.loads(f["payload"])["type"]
        return f.get("command")

    def mk(name, desc, body, expect, reason, category, ts=NOW - 12, key=secret, other=(), status=None, sig=None,
           drop=(), policy=None, ts_header=None):
        t = ts_header or str(ts)
        h = {"Content-Type": "application/x-www-form-urlencoded", "X-Slack-Request-Timestamp": t,
             "X-Slack-Signature": sig if sig is not None else gen(key, ts, body)}
        for d in drop:
            del h[d]
        vs.append(vector(id=f"slack-forms/{name}", scheme="slack", description=desc, secret=secret, other_keys=other,
                         headers=h, body=body, tolerance_s=300, expect=expect, expect_status=status, reason=reason,
                         category=category, hookguard_policy=policy, event_type=etype(body) if expect == "valid" else None,
                         produced_by=sdk(lib, "SignatureVerifier.generate_signature"),
                         dedup_key=f"{t}:{sha256_hex(body)}", dedup_key_source="X-Slack-Request-Timestamp + ':' + sha256 hex of body"))

    b = slash()
    mk("valid-slash-command", "slash command /weather as Slack sends it (form body)", b, "valid",
       "v0= hex HMAC over 'v0:{ts}:{raw form body}'", "valid")
    mk("valid-slash-command-resigned", "same body as valid-slash-command, signed at another timestamp", b, "valid",
       "a new timestamp gives a new dedup key", "dedup", ts=NOW - 40)
    mk("valid-utf8", "slash command with UTF-8 text (percent-encoded)", slash("/translate", "Grüße – こんにちは 🎉"), "valid",
       "raw form bytes are signed", "valid")
    mk("valid-interactivity-block-actions", "interactivity payload=<url-encoded JSON>, type block_actions", interactive(),
       "valid", "raw form bytes are signed; event_type from the payload JSON", "valid")
    mk("valid-interactivity-view-submission", "interactivity payload, type view_submission", interactive("view_submission", "submit"),
       "valid", "event_type from the payload JSON", "valid")
    mk("valid-empty-body", "empty signed body", b"", "valid", "signature over 'v0:{ts}:'; event_type null", "body")
    mk("invalid-wrong-secret", "signed with another signing secret", b, "invalid", "no key matches", "signature", key=old, status=401)
    mk("invalid-tampered-body", "text changed after signing", slash(text="Paris tomorrow"), "invalid",
       "signature over the original body", "body", sig=gen(secret, NOW - 12, b), status=401)
    mk("invalid-replay-beyond-tolerance", "a captured slash command replayed 301 s later", b, "invalid", STALE_REASON,
       "timestamp", ts=NOW - 301, status=401)
    mk("invalid-future-timestamp", "timestamp 301 s ahead", b, "invalid", STALE_REASON, "timestamp", ts=NOW + 301, status=401,
       policy="Hookguard rule: |now - ts| <= tolerance_s on both sides (slack_sdk agrees); @slack/bolt rejects only stale timestamps")
    mk("valid-boundary-past", "timestamp exactly 300 s old", slash(trigger="1234567890.0003"), "valid", "inclusive bound", "timestamp", ts=NOW - 300)
    mk("valid-boundary-future", "timestamp exactly 300 s ahead", slash(trigger="1234567890.0004"), "valid", "inclusive bound", "timestamp", ts=NOW + 300)
    mk("invalid-missing-signature", "no X-Slack-Signature", b, "invalid", "required header missing", "header",
       drop=["X-Slack-Signature"], status=400)
    mk("invalid-missing-timestamp", "no X-Slack-Request-Timestamp", b, "invalid", "required header missing", "header",
       drop=["X-Slack-Request-Timestamp"], status=400)
    mk("invalid-signature-without-v0", "X-Slack-Signature without the v0= prefix", b, "invalid",
       "signature field cannot be parsed", "header", sig=gen(secret, NOW - 12, b)[3:], status=400)
    mk("invalid-non-numeric-timestamp", "X-Slack-Request-Timestamp not an integer", b, "invalid",
       "timestamp cannot be parsed", "header", ts_header="yesterday", sig=gen(secret, "yesterday", b), status=400,
       policy="Hookguard rule: a timestamp that cannot be parsed is 400; @slack/bolt accepts 'yesterday' when the signature covers it (Number.isNaN on a string is false, and 'yesterday' < n is false, so no staleness failure)")
    mk("valid-rotation-old-secret", "receiver holds the new secret and the old one (other_keys); signed with the old",
       slash(trigger="1234567890.0005"), "valid", "any held key may match", "valid", key=old, other=[old])

    def check(v):
        def f(k):
            ok = SignatureVerifier(k, clock=Fixed()).is_valid_request(body_of(v), v["headers"])
            return ok, f"is_valid_request returned {ok}"
        add_verification(v, lib, "SignatureVerifier(secret, clock=fixed).is_valid_request", f)
    for v in vs:
        check(v)
    return {"schema_version": 1, "scheme": "slack",
            "doc_url": "https://api.slack.com/authentication/verifying-requests-from-slack",
            "meta": {"secret_format": "Signing Secret (32 hex chars) used verbatim as UTF-8 key",
                     "bodies": "slash commands and interactivity payloads, application/x-www-form-urlencoded"},
            "libraries": {lib: V[lib], "@slack/bolt": None},
            "vectors": vs,
            "dedup_sequences": [dup_seq("slack-forms/valid-slash-command"),
                                dup_seq("slack-forms/valid-interactivity-block-actions",
                                        "the same interactive payload twice"),
                                {"description": "the same body re-signed at another timestamp is a new request",
                                 "steps": [{"vector": "slack-forms/valid-slash-command", "expect_action": "forward"},
                                           {"vector": "slack-forms/valid-slash-command-resigned", "expect_action": "forward"}]}]}


FILES = {"twilio": twilio_file, "zoom": zoom_file, "paddle": paddle_file, "linear": linear_file,
         "square": square_file, "mailgun": mailgun_file, "sendgrid": sendgrid_file,
         "standard-webhooks-v1a": swv1a_file, "slack-forms": slack_forms_file}


def main():
    V.update({"twilio (PyPI)": pkg_version("twilio"),
              "paddle-python-sdk (PyPI, import paddle_billing)": pkg_version("paddle-python-sdk"),
              "squareup (PyPI)": pkg_version("squareup"), "mailgun (PyPI)": pkg_version("mailgun"),
              "sendgrid (PyPI)": pkg_version("sendgrid"), "slack_sdk (PyPI slack-sdk)": pkg_version("slack_sdk"),
              "standardwebhooks (PyPI)": pkg_version("standardwebhooks"),
              "cryptography (PyPI)": pkg_version("cryptography")})
    for stem in (sys.argv[1:] or FILES):
        write_file(stem, FILES[stem]())
        print("wrote", stem)


if __name__ == "__main__":
    main()
