// Append the Node SDK verifications to the vector files written by gen.py.
// Run from the npm prefix's context: NODE_PATH is not used by ESM, so make.sh passes the
// prefix as argv[2] and we resolve packages from there with createRequire.
import { createRequire } from "node:module";
import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import querystring from "node:querystring";

const [, , prefix, outDir] = process.argv;
const require = createRequire(path.join(prefix, "package.json"));
const NOW = 1764000000;

// Pin the clock: Date.now() and new Date() (Paddle uses the latter).
const RealDate = Date;
class FixedDate extends RealDate {
  constructor(...a) { if (a.length === 0) super(NOW * 1000); else super(...a); }
  static now() { return NOW * 1000; }
}
globalThis.Date = FixedDate;
console.debug = () => {}; // @zoom/rivet logs every Lambda event

const version = (pkg) => JSON.parse(fs.readFileSync(path.join(prefix, "node_modules", pkg, "package.json"))).version;
const body = (v) => Buffer.from(v.body_b64, "base64");
const header = (v, name) => {
  const k = Object.keys(v.headers).find((h) => h.toLowerCase() === name.toLowerCase());
  return k === undefined ? undefined : v.headers[k];
};
const keys = (v) => [v.public_key ?? v.secret, ...v.other_keys];

// Run check(key) -> [bool, detail] for every key the receiver holds; valid if any matches.
async function eachKey(v, check) {
  const ks = keys(v);
  const details = [];
  for (let i = 0; i < ks.length; i++) {
    let ok, detail;
    try { [ok, detail] = await check(ks[i]); } catch (e) { ok = false; detail = `threw ${e.name}: ${e.message}`; }
    details.push(`${i === 0 ? "key" : `other_keys[${i - 1}]`}: ${detail}`);
    if (ok) return ["valid", details.join("; ")];
  }
  return ["invalid", details.join("; ")];
}

async function add(v, library, ver, fn, check) {
  const [result, detail] = await eachKey(v, check);
  v.verifications.push({ library, version: ver, function: fn, result, detail });
}

// ------------------------------------------------------------------ per scheme
async function twilio(doc) {
  const w = require("twilio/lib/webhooks/webhooks.js");
  const ver = version("twilio");
  doc.libraries["twilio (npm)"] = ver;
  for (const v of doc.vectors) {
    const algo = w.getSignatureAlgorithm(header(v, "X-Twilio-Webhooks-Signature-Settings"));
    const sig = header(v, "X-Twilio-Signature");
    const json = header(v, "Content-Type").startsWith("application/json");
    await add(v, "twilio (npm)", ver,
      json ? "validateRequestWithBody(token, sig, url, body, getSignatureAlgorithm(settings))"
        : "validateRequest(token, sig, url, querystring.parse(body), getSignatureAlgorithm(settings))",
      (k) => {
        const ok = json ? w.validateRequestWithBody(k, sig, v.url, body(v).toString("utf8"), algo)
          : w.validateRequest(k, sig, v.url, { ...querystring.parse(body(v).toString("utf8")) }, algo);
        return [ok, `returned ${ok}`];
      });
  }
}

async function zoom(doc) {
  const { AwsLambdaReceiver } = await import(require.resolve("@zoom/rivet/meetings"));
  const ver = version("@zoom/rivet");
  doc.libraries["@zoom/rivet"] = ver;
  for (const v of doc.vectors) {
    await add(v, "@zoom/rivet", ver, "AwsLambdaReceiver({webhooksSecretToken}).start()(event) (CommonHttpRequest.isEventVerified)",
      async (k) => {
        const r = new AwsLambdaReceiver({ webhooksSecretToken: k });
        r.init({ eventEmitter: { emit: async () => {} } });
        const res = await r.start()({ body: body(v).toString("utf8"), headers: v.headers, isBase64Encoded: false }, {});
        let ok = res.statusCode === 200;
        let detail = `statusCode ${res.statusCode} ${res.body}`;
        if (ok && v.expect_response) {
          const got = JSON.parse(res.body);
          const same = got.plainToken === v.expect_response.plainToken && got.encryptedToken === v.expect_response.encryptedToken;
          detail += same ? " (matches expect_response)" : " (DIFFERS from expect_response)";
          ok = same;
        }
        return [ok, detail];
      });
  }
}

async function paddle(doc) {
  const { Paddle } = require("@paddle/paddle-node-sdk");
  const paddle = new Paddle("unused_api_key"); // sets the Node runtime's crypto provider; makes no request
  const ver = version("@paddle/paddle-node-sdk");
  doc.libraries["@paddle/paddle-node-sdk"] = ver;
  for (const v of doc.vectors) {
    await add(v, "@paddle/paddle-node-sdk", ver, "new Paddle(apiKey).webhooks.isSignatureValid(body, key, Paddle-Signature) (new Date() pinned)",
      async (k) => {
        const ok = await paddle.webhooks.isSignatureValid(body(v).toString("utf8"), k, header(v, "Paddle-Signature") ?? "");
        return [ok, `returned ${ok}`];
      });
  }
}

async function linear(doc) {
  const { LinearWebhookClient } = await import(require.resolve("@linear/sdk/webhooks"));
  const ver = version("@linear/sdk");
  doc.libraries["@linear/sdk"] = ver;
  for (const v of doc.vectors) {
    await add(v, "@linear/sdk", ver, "new LinearWebhookClient(secret).verify(rawBody, Linear-Signature) (Date.now pinned)",
      (k) => {
        const ok = new LinearWebhookClient(k).verify(body(v), header(v, "Linear-Signature") ?? "");
        return [ok, `returned ${ok}`];
      });
  }
}

async function square(doc) {
  const { WebhooksHelper } = require("square");
  const ver = version("square");
  doc.libraries["square (npm)"] = ver;
  for (const v of doc.vectors) {
    await add(v, "square (npm)", ver, "WebhooksHelper.verifySignature({requestBody, signatureHeader, signatureKey, notificationUrl})",
      async (k) => {
        const ok = await WebhooksHelper.verifySignature({
          requestBody: body(v).toString("utf8"), signatureHeader: header(v, "x-square-hmacsha256-signature"),
          signatureKey: k, notificationUrl: v.url,
        });
        return [ok, `returned ${ok}`];
      });
  }
}

async function sendgrid(doc) {
  const { EventWebhook } = require("@sendgrid/eventwebhook");
  const ver = version("@sendgrid/eventwebhook");
  doc.libraries["@sendgrid/eventwebhook"] = ver;
  for (const v of doc.vectors) {
    await add(v, "@sendgrid/eventwebhook", ver,
      "EventWebhook.verifySignature(convertPublicKeyToECDSA(PEM of key), body, sig, ts)", (k) => {
        const ew = new EventWebhook();
        const pem = `-----BEGIN PUBLIC KEY-----\n${k}\n-----END PUBLIC KEY-----`;
        const ok = ew.verifySignature(ew.convertPublicKeyToECDSA(pem), body(v),
          header(v, "X-Twilio-Email-Event-Webhook-Signature"), header(v, "X-Twilio-Email-Event-Webhook-Timestamp"));
        return [ok, `returned ${ok}`];
      });
  }
}

// Standard Webhooks: no official SDK implements v1a, so this is a second, independent
// implementation of the spec on node:crypto (v1a with whpk_ keys, v1 with whsec_ keys).
const ED25519_SPKI_PREFIX = Buffer.from("302a300506032b6570032100", "hex");
function standardWebhooksCheck(v, k) {
  const id = header(v, "webhook-id"), ts = header(v, "webhook-timestamp"), sigs = header(v, "webhook-signature");
  if (id === undefined || ts === undefined || sigs === undefined) return [false, "missing header"];
  if (!/^[0-9]+$/.test(ts)) return [false, "timestamp not an integer"];
  if (Math.abs(NOW - Number(ts)) > 300) return [false, "timestamp outside 300 s"];
  const msg = Buffer.concat([Buffer.from(`${id}.${ts}.`), body(v)]);
  const want = k.startsWith("whpk_") ? "v1a" : "v1";
  for (const entry of sigs.split(" ")) {
    const [ver, b64] = entry.split(",", 2);
    if (ver !== want || b64 === undefined) continue;
    const sig = Buffer.from(b64, "base64");
    if (sig.toString("base64") !== b64) continue; // canonical padded base64 only
    if (want === "v1a") {
      const pub = crypto.createPublicKey({ key: Buffer.concat([ED25519_SPKI_PREFIX, Buffer.from(k.slice(5), "base64")]), format: "der", type: "spki" });
      if (sig.length === 64 && crypto.verify(null, msg, pub, sig)) return [true, "v1a entry verified (crypto.verify ed25519)"];
    } else {
      const mac = crypto.createHmac("sha256", Buffer.from(k.slice(6), "base64")).update(msg).digest();
      if (sig.length === mac.length && crypto.timingSafeEqual(sig, mac)) return [true, "v1 entry verified (HMAC-SHA256)"];
    }
  }
  return [false, `no ${want} entry matches`];
}

async function standardWebhooks(doc) {
  const ver = process.versions.node;
  doc.libraries["node:crypto"] = ver;
  for (const v of doc.vectors) {
    await add(v, "node:crypto", ver, "independent Standard Webhooks check in verify_node.mjs (ed25519 verify / HMAC, |now-ts|<=300, padded base64 only)",
      (k) => standardWebhooksCheck(v, k));
  }
}

async function slackForms(doc) {
  const { verifySlackRequest } = require("@slack/bolt");
  const ver = version("@slack/bolt");
  doc.libraries["@slack/bolt"] = ver;
  for (const v of doc.vectors) {
    const headers = Object.fromEntries(Object.entries(v.headers).map(([k, x]) => [k.toLowerCase(), x]));
    await add(v, "@slack/bolt", ver, "verifySlackRequest({signingSecret, body, headers, nowMilliseconds: now})", (k) => {
      verifySlackRequest({ signingSecret: k, body: body(v).toString("utf8"), headers, nowMilliseconds: NOW * 1000 });
      return [true, "returned without throwing"];
    });
  }
}

const BY_FILE = {
  "slack-forms": slackForms,
  twilio, zoom, paddle, linear, square, sendgrid, "standard-webhooks-v1a": standardWebhooks,
};

for (const [stem, fn] of Object.entries(BY_FILE)) {
  const file = path.join(outDir, `${stem}.json`);
  const doc = JSON.parse(fs.readFileSync(file, "utf8"));
  await fn(doc);
  fs.writeFileSync(file, JSON.stringify(doc, null, 1) + "\n");
  console.log("verified with node:", stem);
}
