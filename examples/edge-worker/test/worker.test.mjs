// The edge worker in workerd (through miniflare) against a real `otpgate serve`:
// the proxy adds the trusted-backend key, /protected accepts a real receipt and refuses a
// tampered, an expired, a foreign-key and a wrong-audience one, and the sms-gate webhook is
// verified at the edge (bad signature refused, good one forwarded byte for byte).

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { createHmac, generateKeyPairSync, sign } from "node:crypto";
import path from "node:path";
import { Miniflare } from "miniflare";
import { startIssuer, TEST_CODE, TEST_NUMBER, WEBHOOK_KEY } from "../support/issuer.mjs";

const WORKER_DIR = path.resolve(path.dirname(new URL(import.meta.url).pathname), "..");

let issuer;
let mf;
let receipt;

function b64url(obj) {
  return Buffer.from(JSON.stringify(obj)).toString("base64url");
}

/** A compact EdDSA JWT signed with `key` (what the issuer does, for forged/expired tokens). */
function mint(key, kid, claims) {
  const input = `${b64url({ alg: "EdDSA", typ: "JWT", kid })}.${b64url(claims)}`;
  return `${input}.${sign(null, Buffer.from(input), key).toString("base64url")}`;
}

function claimsOf(jwt) {
  return JSON.parse(Buffer.from(jwt.split(".")[1], "base64url").toString("utf8"));
}

function kidOf(jwt) {
  return JSON.parse(Buffer.from(jwt.split(".")[0], "base64url").toString("utf8")).kid;
}

async function worker(pathname, init = {}) {
  const r = await mf.dispatchFetch(`http://worker.test${pathname}`, init);
  const text = await r.text();
  let body = null;
  try {
    body = JSON.parse(text);
  } catch {
    body = text;
  }
  return { status: r.status, headers: r.headers, body };
}

function bearer(token) {
  return { headers: { authorization: `Bearer ${token}` } };
}

/** The worker as Miniflare runs it: its module, the package and its wasm. */
const WORKER = {
  modulesRoot: WORKER_DIR,
  modules: [
    { type: "ESModule", path: path.join(WORKER_DIR, "worker.mjs") },
    { type: "ESModule", path: path.join(WORKER_DIR, "pkg/otpgate.js") },
    { type: "CompiledWasm", path: path.join(WORKER_DIR, "pkg/otpgate_bg.wasm") },
  ],
  compatibilityDate: "2025-09-01",
};

before(async () => {
  issuer = await startIssuer();
  const t0 = performance.now();
  mf = new Miniflare({
    ...WORKER,
    bindings: {
      OTPGATE_ISSUER: issuer.url,
      OTPGATE_API_KEY: issuer.apiKey,
      OTPGATE_AUDIENCE: "demo",
      SMSGATE_WEBHOOK_KEY: WEBHOOK_KEY,
      JWKS_TTL_SECS: "300",
    },
  });
  await mf.ready;
  const ready = performance.now() - t0;
  const t1 = performance.now();
  const first = await mf.dispatchFetch("http://worker.test/protected");
  await first.text();
  console.log(`# miniflare: ready in ${ready.toFixed(0)} ms, first request ${(performance.now() - t1).toFixed(1)} ms`);
});

after(async () => {
  await mf?.dispose();
  await issuer?.stop();
});

test("proxy: start and check go through with the trusted-backend key; the receipt comes back", async () => {
  const started = await worker("/api/start", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ phone: TEST_NUMBER }),
  });
  assert.equal(started.status, 201, JSON.stringify(started.body));
  assert.match(started.body.id, /^v_/);
  assert.ok(started.headers.get("x-request-id"), "the issuer's request id is passed on");

  const checked = await worker("/api/check", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ id: started.body.id, code: TEST_CODE }),
  });
  assert.equal(checked.status, 200, JSON.stringify(checked.body));
  assert.equal(checked.body.status, "approved");
  receipt = checked.body.receipt;
  assert.equal(claimsOf(receipt).phone_number, TEST_NUMBER);
});

test("proxy: without the worker the issuer refuses a wrong API key (the key matters)", async () => {
  const r = await fetch(`${issuer.url}/v1/verifications`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: "Bearer not-the-key-0000000000" },
    body: JSON.stringify({ phone: TEST_NUMBER }),
  });
  assert.equal(r.status, 401);
});

test("proxy: malformed requests are refused at the edge", async () => {
  const notJson = await worker("/api/start", { method: "POST", headers: { "content-type": "text/plain" }, body: "x" });
  assert.equal(notJson.status, 415);
  const badJson = await worker("/api/start", { method: "POST", headers: { "content-type": "application/json" }, body: "{" });
  assert.equal(badJson.status, 400);
  assert.equal(badJson.body.error.code, "invalid_json");
  const traversal = await worker("/api/check", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ id: "../../admin", code: "1" }),
  });
  assert.equal(traversal.status, 400);
  const big = await worker("/api/start", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ phone: "+1", pad: "x".repeat(5000) }),
  });
  assert.equal(big.status, 413);
  const get = await worker("/api/start");
  assert.equal(get.status, 405);
});

test("receipt: a real receipt opens /protected", async () => {
  assert.ok(receipt, "the proxy test obtained a receipt");
  const r = await worker("/protected", bearer(receipt));
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.equal(r.body.phone_number, TEST_NUMBER);
  assert.equal(r.body.app, "demo");
});

test("receipt: missing, tampered, foreign-key, expired and wrong-audience receipts are refused", async () => {
  const none = await worker("/protected");
  assert.equal(none.status, 401);
  assert.equal(none.body.error.code, "receipt_required");
  assert.match(none.headers.get("www-authenticate"), /^Bearer/);

  // Tampered: another number in the claims, the issuer's signature kept.
  const [h, , s] = receipt.split(".");
  const forged = `${h}.${b64url({ ...claimsOf(receipt), phone_number: "+14155550110" })}.${s}`;
  const tampered = await worker("/protected", bearer(forged));
  assert.equal(tampered.status, 401);
  assert.equal(tampered.body.error.code, "receipt_bad_signature");

  // Signed by another key under the issuer's kid.
  const { privateKey: other } = generateKeyPairSync("ed25519");
  const now = Math.floor(Date.now() / 1000);
  const kid = kidOf(receipt);
  const foreign = await worker("/protected", bearer(mint(other, kid, { ...claimsOf(receipt), iat: now, exp: now + 600 })));
  assert.equal(foreign.status, 401);
  assert.equal(foreign.body.error.code, "receipt_bad_signature");

  // Expired, though signed by the issuer's own key.
  const expired = mint(issuer.receiptKey, kid, { ...claimsOf(receipt), iat: now - 1200, exp: now - 600 });
  const exp = await worker("/protected", bearer(expired));
  assert.equal(exp.status, 401);
  assert.equal(exp.body.error.code, "receipt_expired");
  assert.match(exp.headers.get("www-authenticate"), /invalid_token/);

  // Valid signature, another app.
  const otherApp = mint(issuer.receiptKey, kid, { ...claimsOf(receipt), aud: "another-app", iat: now, exp: now + 600 });
  const aud = await worker("/protected", bearer(otherApp));
  assert.equal(aud.status, 401);
  assert.equal(aud.body.error.code, "receipt_wrong_audience");

  // alg=none never passes.
  const none2 = `${b64url({ alg: "none", typ: "JWT", kid })}.${b64url(claimsOf(receipt))}.`;
  const algNone = await worker("/protected", bearer(none2));
  assert.equal(algNone.status, 401);
});

function signWebhook(key, body, ts) {
  return createHmac("sha256", key).update(Buffer.concat([Buffer.from(body), Buffer.from(ts)])).digest("hex");
}

const EVENT = JSON.stringify({
  deviceId: "e2e-device",
  event: "sms:delivered",
  id: "evt-e2e-1",
  payload: { messageId: "v_AAAAAAAAAAAAAAAAAAAAAA.1.1", phoneNumber: "+14155550199", deliveredAt: new Date().toISOString() },
  webhookId: "e2e-webhook",
});

test("webhook: a bad, stale or missing signature is refused at the edge (never forwarded)", async () => {
  const ts = String(Math.floor(Date.now() / 1000));
  const bad = await worker("/webhooks/sms-gate", {
    method: "POST",
    headers: { "content-type": "application/json", "x-timestamp": ts, "x-signature": signWebhook("wrong-key", EVENT, ts) },
    body: EVENT,
  });
  assert.equal(bad.status, 401);
  assert.equal(bad.body.error.code, "bad_signature");
  assert.equal(bad.headers.get("x-request-id"), null, "the issuer was not called");

  const old = String(Math.floor(Date.now() / 1000) - 3600);
  const stale = await worker("/webhooks/sms-gate", {
    method: "POST",
    headers: { "content-type": "application/json", "x-timestamp": old, "x-signature": signWebhook(WEBHOOK_KEY, EVENT, old) },
    body: EVENT,
  });
  assert.equal(stale.status, 401);
  assert.equal(stale.body.error.code, "stale_timestamp");

  const missing = await worker("/webhooks/sms-gate", { method: "POST", headers: { "content-type": "application/json" }, body: EVENT });
  assert.equal(missing.status, 401);
  assert.equal(missing.body.error.code, "missing_signature");

  // One byte changed after signing.
  const sig = signWebhook(WEBHOOK_KEY, EVENT, ts);
  const altered = await worker("/webhooks/sms-gate", {
    method: "POST",
    headers: { "content-type": "application/json", "x-timestamp": ts, "x-signature": sig },
    body: EVENT.replace("delivered", "failed"),
  });
  assert.equal(altered.status, 401);
});

test("webhook: a good signature is forwarded to the issuer with the same bytes and headers", async () => {
  const ts = String(Math.floor(Date.now() / 1000));
  const r = await worker("/webhooks/sms-gate", {
    method: "POST",
    headers: { "content-type": "application/json", "x-timestamp": ts, "x-signature": signWebhook(WEBHOOK_KEY, EVENT, ts) },
    body: EVENT,
  });
  // The issuer checked the same signature again over the forwarded bytes and accepted the
  // event (204; an unknown message id is ignored).
  assert.equal(r.status, 204, `the issuer accepted the forwarded webhook: ${r.status} ${JSON.stringify(r.body)}`);
  assert.ok(r.headers.get("x-request-id"), "the answer is the issuer's");

  // The same event again is a duplicate for the issuer (de-duplicated on the event id), still no error.
  const again = await worker("/webhooks/sms-gate", {
    method: "POST",
    headers: { "content-type": "application/json", "x-timestamp": ts, "x-signature": signWebhook(WEBHOOK_KEY, EVENT, ts) },
    body: EVENT,
  });
  assert.equal(again.status, 204);
});

test("JWKS: cached in module scope, so receipts still verify while the issuer is down", async () => {
  await issuer.stop();
  const r = await worker("/protected", bearer(receipt));
  assert.equal(r.status, 200, JSON.stringify(r.body));
  const proxied = await worker("/api/start", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ phone: TEST_NUMBER }),
  });
  assert.equal(proxied.status, 502);
  assert.equal(proxied.body.error.code, "issuer_unavailable");
});

test("webhook: the forwarded request carries exactly the signed bytes and headers", async () => {
  // A capture server in place of the issuer, to compare bytes (the real issuer above checks
  // the signature again, which only passes on exact bytes; this pins it down independently).
  const http = await import("node:http");
  const captured = [];
  const capture = http.createServer((req, res) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      captured.push({ method: req.method, url: req.url, headers: req.headers, body: Buffer.concat(chunks) });
      res.writeHead(202, { "content-type": "application/json", "x-request-id": "req_capture" });
      res.end("{}");
    });
  });
  await new Promise((r) => capture.listen(0, "127.0.0.1", r));
  const edge = new Miniflare({
    ...WORKER,
    bindings: {
      OTPGATE_ISSUER: `http://127.0.0.1:${capture.address().port}`,
      OTPGATE_AUDIENCE: "demo",
      SMSGATE_WEBHOOK_KEY: WEBHOOK_KEY,
    },
  });
  try {
    // Bytes a re-serialisation would change: spacing, key order, a non-ASCII character.
    const body = Buffer.from('{"event":"sms:sent",  "id":"evt-2","payload":{"messageId":"m1","note":"café"},"deviceId":"d"}');
    const ts = String(Math.floor(Date.now() / 1000));
    const sig = signWebhook(WEBHOOK_KEY, body, ts);
    const r = await edge.dispatchFetch("http://worker.test/webhooks/sms-gate", {
      method: "POST",
      headers: { "content-type": "application/json", "x-timestamp": ts, "x-signature": sig },
      body,
    });
    assert.equal(r.status, 202);
    assert.equal(captured.length, 1);
    const got = captured[0];
    assert.equal(got.method, "POST");
    assert.equal(got.url, "/v1/gateways/sms-gate/webhook");
    assert.ok(got.body.equals(body), "the exact bytes");
    assert.equal(got.headers["x-signature"], sig);
    assert.equal(got.headers["x-timestamp"], ts);
    assert.equal(got.headers["content-type"], "application/json");
    assert.equal(got.headers.authorization, undefined, "no API key on webhooks");
  } finally {
    await edge.dispose();
    await new Promise((r) => capture.close(r));
  }
});
