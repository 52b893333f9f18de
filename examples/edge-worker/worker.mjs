// An edge worker in front of an otpgate issuer (Cloudflare Workers / workerd module syntax).
//
//   POST /api/start            → issuer POST /v1/verifications, with the trusted-backend API key
//   POST /api/check            → issuer POST /v1/verifications/{id}/check ({id, code} in the body)
//   GET  /protected            → 200 only with `Authorization: Bearer <receipt>` (verified offline
//                                against the issuer's JWKS, cached in module scope)
//   POST /webhooks/sms-gate    → sms-gate.app delivery webhooks: the signature is checked here,
//                                then the exact raw body and headers are forwarded to the issuer
//
// Environment (wrangler `[vars]`/secrets, or `bindings` in config.capnp):
//   OTPGATE_ISSUER           the issuer's base URL as this worker reaches it (required)
//   OTPGATE_API_KEY          the issuer's trusted-backend API key (secret; required for /api/*)
//   OTPGATE_AUDIENCE         the receipt audience to accept (the app's name by default; required)
//   OTPGATE_RECEIPT_ISSUER   the receipt `iss` to accept (default: OTPGATE_ISSUER)
//   OTPGATE_APP              force this app on /api/start (optional)
//   SMSGATE_WEBHOOK_KEY      the sms-gate.app webhook signing key (secret; required for webhooks)
//   JWKS_TTL_SECS            how long the JWKS is cached (default 300)

import { initSync, verifyReceipt, verifyWebhookSignature } from "./pkg/otpgate.js";
import wasmModule from "./pkg/otpgate_bg.wasm";

// The wasm module is compiled by the runtime at upload time; instantiate it once per isolate.
// (The async default `init()` would try to fetch the .wasm from import.meta.url: not here.)
initSync({ module: wasmModule });

const MAX_JSON_BYTES = 4 * 1024;
const MAX_WEBHOOK_BYTES = 64 * 1024;
const UPSTREAM_TIMEOUT_MS = 10_000;
const DEFAULT_JWKS_TTL_SECS = 300;
/** An unknown `kid` may force a JWKS refresh at most this often (no refetch storms). */
const MIN_FORCED_REFRESH_MS = 30_000;
/** Headers of the issuer's answer that the client may see. */
const PASS_HEADERS = ["content-type", "retry-after", "x-request-id", "cache-control"];

// ---------------------------------------------------------------------------------------
// Module-scope JWKS cache (one per isolate; isolates are reused across requests).

const jwksCache = {
  url: "",
  jwks: null,
  fetchedAt: 0,
  inflight: null,
  lastForcedAt: 0,
};

/** The issuer's JWKS, fresh within the TTL; a stale copy when the issuer is unreachable. */
async function getJwks(env, { force = false } = {}) {
  const url = `${issuerBase(env)}/.well-known/jwks.json`;
  const ttlMs = ttlSecs(env) * 1000;
  const now = Date.now();
  if (jwksCache.url !== url) {
    Object.assign(jwksCache, { url, jwks: null, fetchedAt: 0, inflight: null, lastForcedAt: 0 });
  }
  const fresh = jwksCache.jwks && now - jwksCache.fetchedAt < ttlMs;
  if (fresh && !force) return jwksCache.jwks;
  if (force) {
    if (now - jwksCache.lastForcedAt < MIN_FORCED_REFRESH_MS && jwksCache.jwks) return jwksCache.jwks;
    jwksCache.lastForcedAt = now;
  }
  if (!jwksCache.inflight) {
    jwksCache.inflight = (async () => {
      try {
        const r = await fetch(url, {
          headers: { accept: "application/json" },
          signal: AbortSignal.timeout(UPSTREAM_TIMEOUT_MS),
        });
        if (!r.ok) throw new Error(`JWKS answered HTTP ${r.status}`);
        const jwks = await r.json();
        if (!jwks || !Array.isArray(jwks.keys)) throw new Error("JWKS has no keys array");
        jwksCache.jwks = jwks;
        jwksCache.fetchedAt = Date.now();
        return jwks;
      } finally {
        jwksCache.inflight = null;
      }
    })();
  }
  try {
    return await jwksCache.inflight;
  } catch (err) {
    if (jwksCache.jwks) {
      console.warn(`otpgate worker: JWKS refresh failed, using the cached copy: ${err.message}`);
      return jwksCache.jwks;
    }
    throw err;
  }
}

// ---------------------------------------------------------------------------------------
// Helpers

function issuerBase(env) {
  return String(env.OTPGATE_ISSUER || "").replace(/\/+$/, "");
}

function ttlSecs(env) {
  const n = Number(env.JWKS_TTL_SECS);
  return Number.isFinite(n) && n >= 0 && n <= 86_400 ? n : DEFAULT_JWKS_TTL_SECS;
}

/** The one error shape of otpgate: `{"error": {"code", "message"}}`. */
function error(status, code, message, headers = {}) {
  return Response.json({ error: { code, message } }, { status, headers });
}

function misconfigured(what) {
  // The operator reads the log; the client gets no internals.
  console.error(`otpgate worker: ${what} is not set`);
  return error(500, "misconfigured", "the service is not configured");
}

/** Reads a small JSON object body, or returns the error Response. */
async function readJson(request) {
  const type = request.headers.get("content-type") || "";
  if (!/^application\/json\b/i.test(type)) {
    return { res: error(415, "unsupported_media_type", "send the body as application/json") };
  }
  const declared = Number(request.headers.get("content-length"));
  if (Number.isFinite(declared) && declared > MAX_JSON_BYTES) {
    return { res: error(413, "payload_too_large", `the body is limited to ${MAX_JSON_BYTES} bytes`) };
  }
  const buf = await request.arrayBuffer();
  if (buf.byteLength > MAX_JSON_BYTES) {
    return { res: error(413, "payload_too_large", `the body is limited to ${MAX_JSON_BYTES} bytes`) };
  }
  let body;
  try {
    body = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(buf));
  } catch {
    return { res: error(400, "invalid_json", "the body is not valid JSON") };
  }
  if (!body || typeof body !== "object" || Array.isArray(body)) {
    return { res: error(400, "invalid_request", "the body must be a JSON object") };
  }
  return { body };
}

/** Calls the issuer and relays its answer (status, JSON body, a few headers). */
async function relay(env, path, { method = "POST", body, headers = {}, request }) {
  const h = new Headers(headers);
  const clientIp = request?.headers.get("cf-connecting-ip");
  if (clientIp) h.set("x-forwarded-for", clientIp);
  let upstream;
  try {
    upstream = await fetch(`${issuerBase(env)}${path}`, {
      method,
      body,
      headers: h,
      redirect: "manual",
      signal: AbortSignal.timeout(UPSTREAM_TIMEOUT_MS),
    });
  } catch (err) {
    console.error(`otpgate worker: issuer unreachable: ${err.message}`);
    return error(502, "issuer_unavailable", "the verification service is unreachable; try again shortly");
  }
  const out = new Headers();
  for (const name of PASS_HEADERS) {
    const v = upstream.headers.get(name);
    if (v) out.set(name, v);
  }
  return new Response(upstream.body, { status: upstream.status, headers: out });
}

const ID_RE = /^[A-Za-z0-9_-]{1,64}$/;

// ---------------------------------------------------------------------------------------
// Routes

async function apiStart(request, env) {
  if (!env.OTPGATE_API_KEY) return misconfigured("OTPGATE_API_KEY");
  const { body, res } = await readJson(request);
  if (res) return res;
  if (typeof body.phone !== "string" || body.phone.length > 32) {
    return error(400, "invalid_phone", "phone must be a string (E.164, e.g. +14155550123)");
  }
  if (body.locale !== undefined && (typeof body.locale !== "string" || body.locale.length > 35)) {
    return error(400, "invalid_request", "locale must be a BCP 47 language tag");
  }
  if (body.app !== undefined && (typeof body.app !== "string" || body.app.length > 64)) {
    return error(400, "invalid_request", "app must be a string");
  }
  // Only the known fields go on (the issuer refuses unknown ones anyway).
  const forward = { phone: body.phone };
  const app = env.OTPGATE_APP || body.app;
  if (app) forward.app = app;
  if (body.locale) forward.locale = body.locale;
  return relay(env, "/v1/verifications", {
    request,
    body: JSON.stringify(forward),
    headers: {
      "content-type": "application/json",
      accept: "application/json",
      authorization: `Bearer ${env.OTPGATE_API_KEY}`,
    },
  });
}

async function apiCheck(request, env) {
  if (!env.OTPGATE_API_KEY) return misconfigured("OTPGATE_API_KEY");
  const { body, res } = await readJson(request);
  if (res) return res;
  if (typeof body.id !== "string" || !ID_RE.test(body.id)) {
    return error(400, "invalid_request", "id must be a verification id");
  }
  if (typeof body.code !== "string" || body.code.length === 0 || body.code.length > 64) {
    return error(400, "invalid_request", "code must be a non-empty string");
  }
  return relay(env, `/v1/verifications/${body.id}/check`, {
    request,
    body: JSON.stringify({ code: body.code }),
    headers: {
      "content-type": "application/json",
      accept: "application/json",
      authorization: `Bearer ${env.OTPGATE_API_KEY}`,
    },
  });
}

function unauthorized(code, message) {
  return error(401, code, message, {
    "www-authenticate": `Bearer realm="otpgate", error="invalid_token", error_description="${code}"`,
  });
}

async function guarded(request, env) {
  const audience = env.OTPGATE_AUDIENCE;
  const issuer = env.OTPGATE_RECEIPT_ISSUER || issuerBase(env);
  if (!audience) return misconfigured("OTPGATE_AUDIENCE");
  if (!issuer) return misconfigured("OTPGATE_ISSUER");
  const auth = request.headers.get("authorization") || "";
  const m = /^Bearer[ ]+([A-Za-z0-9_\-.]{1,8192})$/i.exec(auth);
  if (!m) {
    return error(401, "receipt_required", "send the receipt as `Authorization: Bearer <receipt>`", {
      "www-authenticate": 'Bearer realm="otpgate"',
    });
  }
  let jwks;
  try {
    jwks = await getJwks(env);
  } catch (err) {
    console.error(`otpgate worker: no JWKS: ${err.message}`);
    return error(503, "jwks_unavailable", "cannot check receipts right now; try again shortly");
  }
  let claims;
  try {
    claims = verifyReceipt(m[1], jwks, { audience, issuer });
  } catch (err) {
    if (err?.code !== "receipt_unknown_key") return unauthorized(err?.code || "receipt_invalid", err?.message || "invalid receipt");
    // A key this cache has not seen (the issuer rotated keys): refresh once, then decide.
    try {
      jwks = await getJwks(env, { force: true });
      claims = verifyReceipt(m[1], jwks, { audience, issuer });
    } catch (err2) {
      return unauthorized(err2?.code || "receipt_invalid", err2?.message || "invalid receipt");
    }
  }
  return Response.json(
    {
      ok: true,
      phone_number: claims.phone_number,
      verification: claims.sub,
      app: claims.aud,
      expires_at: claims.exp,
    },
    { headers: { "cache-control": "no-store" } },
  );
}

async function smsGateWebhook(request, env) {
  const key = env.SMSGATE_WEBHOOK_KEY;
  if (!key) return misconfigured("SMSGATE_WEBHOOK_KEY");
  const declared = Number(request.headers.get("content-length"));
  if (Number.isFinite(declared) && declared > MAX_WEBHOOK_BYTES) {
    return error(413, "payload_too_large", `webhooks are limited to ${MAX_WEBHOOK_BYTES} bytes`);
  }
  const raw = new Uint8Array(await request.arrayBuffer());
  if (raw.byteLength > MAX_WEBHOOK_BYTES) {
    return error(413, "payload_too_large", `webhooks are limited to ${MAX_WEBHOOK_BYTES} bytes`);
  }
  const timestamp = request.headers.get("x-timestamp");
  const signature = request.headers.get("x-signature");
  try {
    // HMAC-SHA256(key, raw body ‖ X-Timestamp), constant-time compare, ±300 s window.
    verifyWebhookSignature(key, raw, timestamp, signature);
  } catch (err) {
    return error(401, err?.code || "bad_signature", "the webhook signature was refused");
  }
  // Verified at the edge: forward the exact bytes with the same signature headers, so the
  // issuer can (and does) check them again.
  return relay(env, "/v1/gateways/sms-gate/webhook", {
    request,
    body: raw,
    headers: {
      "content-type": request.headers.get("content-type") || "application/json",
      "x-signature": signature,
      "x-timestamp": timestamp,
    },
  });
}

const ROUTES = {
  "/api/start": { POST: apiStart },
  "/api/check": { POST: apiCheck },
  "/protected": { GET: guarded },
  "/webhooks/sms-gate": { POST: smsGateWebhook },
};

export default {
  async fetch(request, env) {
    const { pathname } = new URL(request.url);
    const route = ROUTES[pathname];
    if (!route) return error(404, "not_found", "no such route");
    const handler = route[request.method];
    if (!handler) {
      return error(405, "method_not_allowed", `use ${Object.keys(route).join(", ")}`, {
        allow: Object.keys(route).join(", "),
      });
    }
    if (!issuerBase(env)) return misconfigured("OTPGATE_ISSUER");
    try {
      return await handler(request, env);
    } catch (err) {
      console.error(`otpgate worker: ${pathname}: ${err?.stack || err}`);
      return error(500, "internal", "internal error");
    }
  },
};
