// The otpgate demo page: the whole flow in a browser, using the npm package `otpgate`
// (the `--target web` build, copied to ./pkg/ by scripts/build-www.sh).
//
// Plain module, no framework. Everything the issuer refuses is explained in words; every
// countdown (rate limit, resend cooldown, expiry) is live.

import { COUNTRIES, guessCountry } from "./countries.js";

const $ = (id) => document.getElementById(id);

const meta = (name) => document.querySelector(`meta[name="${name}"]`)?.content || "";
/** The app configured on the issuer (dev mode has "demo"). */
const APP = new URLSearchParams(location.search).get("app") || meta("otpgate-app") || "demo";
/** The receipt's expected `iss`: the issuer's public URL, by default this page's origin. */
const ISSUER = meta("otpgate-issuer") || location.origin;
/** The receipt's expected `aud`: the app's receipt audience (by default the app's name). */
const AUDIENCE = meta("otpgate-audience") || APP;

const POLL_MS = 1000;
const STATES = ["queued", "submitted", "sent", "delivered"];

let otp = null; // the loaded package
/**
 * The package's error codes by name (`CODE.wrong_code === "wrong_code"`), filled from
 * `otp.errorCodes()`: a name the package does not define throws instead of never matching.
 */
let CODE = null;
let client = null; // OtpClient

/** Everything about the verification in progress. */
let cur = null;

// ---------------------------------------------------------------------------------------
// Small helpers

/** Reads a field that may be camelCase or snake_case, whichever the package returns. */
function pick(obj, camel, snake) {
  if (!obj) return undefined;
  return obj[camel] !== undefined ? obj[camel] : obj[snake];
}

function toMs(rfc3339) {
  const t = Date.parse(rfc3339 || "");
  return Number.isFinite(t) ? t : null;
}

/** "0:42", "1:05" or "12 s" for people; the accessible text says "42 seconds". */
function formatSecs(secs) {
  const s = Math.max(0, Math.ceil(secs));
  if (s < 60) return `${s} s`;
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}

function spokenSecs(secs) {
  const s = Math.max(0, Math.ceil(secs));
  if (s < 60) return `${s} second${s === 1 ? "" : "s"}`;
  const m = Math.floor(s / 60);
  const r = s % 60;
  return `${m} minute${m === 1 ? "" : "s"}${r ? ` ${r} second${r === 1 ? "" : "s"}` : ""}`;
}

function announce(text) {
  const live = $("live");
  live.textContent = "";
  // A fresh text node after a tick so that repeated messages are read again.
  setTimeout(() => { live.textContent = text; }, 50);
}

/** A core message ("that number is too short") as a sentence for the page. */
function sentence(text) {
  const t = String(text).trim();
  return t.charAt(0).toUpperCase() + t.slice(1) + (/[.!?]$/.test(t) ? "" : ".");
}

function show(el, text, kind = "error") {
  el.className = `notice ${kind}`;
  el.textContent = text;
  el.hidden = !text;
}

function hide(el) {
  el.hidden = true;
  el.textContent = "";
}

/** A countdown bound to an element: calls render(secsLeft) every 250 ms, done() at zero. */
class Countdown {
  constructor() { this.timer = null; }
  start(untilMs, render, done) {
    this.stop();
    const tick = () => {
      const left = (untilMs - Date.now()) / 1000;
      if (left <= 0) {
        this.stop();
        done();
      } else {
        render(left);
      }
    };
    tick();
    if (untilMs > Date.now()) this.timer = setInterval(tick, 250);
  }
  stop() {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }
}

const startCooldown = new Countdown();
const resendCooldown = new Countdown();
const expiryClock = new Countdown();
const checkCooldown = new Countdown();

// ---------------------------------------------------------------------------------------
// Errors in words

/** The sentence a person reads for an error of the package (`code`, `status`, ...). */
function explain(err, during) {
  const status = err?.status;
  const code = err?.code || "";
  const retry = Number(err?.retryAfter ?? err?.retry_after);
  const serverMsg = err?.message ? String(err.message) : "";
  if (err?.name === "AbortError" || code === CODE.aborted) return "";
  if (!status && (code === CODE.network_error || err instanceof TypeError)) {
    return "We could not reach the verification service. Check your connection and try again.";
  }
  switch (status) {
    case 400:
      if (during === "start") {
        return `That number was not accepted: ${serverMsg || "check the country and the digits."}`;
      }
      return serverMsg || "The request was not accepted.";
    case 403:
      if (code === CODE.destination_not_allowed || during === "start") {
        return "We can't send codes to numbers in this country. Use a number from a supported country.";
      }
      return serverMsg || "This request is not allowed.";
    case 404:
      return "This verification no longer exists. Start again.";
    case 409:
      return "This code was already used. Start again to get a new one.";
    case 410:
      if (code === CODE.cancelled) return "This verification was cancelled. Start again.";
      return "This code has expired. Send a new code.";
    case 422:
      return wrongCodeText(err);
    case 429:
      if (code === CODE.number_locked) {
        return "Too many wrong codes were entered for this number today. Try again later, or sign in another way.";
      }
      if (code === CODE.too_many_starts) {
        return retry > 0
          ? `Too many codes were requested for this number. Try again in ${spokenSecs(retry)}.`
          : "Too many codes were requested for this number. Try again later.";
      }
      if (during === "check" && code !== CODE.rate_limited) {
        return "Too many wrong codes: this code is locked. Send a new code.";
      }
      // Usually a live countdown replaces this text (see rateLimited()).
      return retry > 0
        ? `Too many requests. Try again in ${spokenSecs(retry)}.`
        : "Too many requests. Try again later.";
    default:
      if (status >= 500) {
        return "The verification service is unavailable right now. Please try again in a moment.";
      }
      return serverMsg || "Something went wrong. Please try again.";
  }
}

function wrongCodeText(err) {
  const left = Number(err?.attemptsLeft ?? err?.attempts_left);
  if (Number.isFinite(left)) {
    if (left <= 0) return "That code is not right, and no attempts are left. Send a new code.";
    return `That code is not right. ${left} attempt${left === 1 ? "" : "s"} left.`;
  }
  return "That code is not right. Check the SMS and try again.";
}

/**
 * A 429 (or a 503) with Retry-After: a live countdown in `el`, `onDone` when it is over.
 * `why` is the first sentence.
 */
function rateLimited(err, el, what, onDone, countdown, why = "Too many requests.") {
  const retry = Number(err?.retryAfter ?? err?.retry_after);
  const secs = Number.isFinite(retry) && retry > 0 ? retry : 30;
  const until = Date.now() + secs * 1000;
  announce(`${why} You can ${what} again in ${spokenSecs(secs)}.`);
  countdown.start(
    until,
    (left) => show(el, `${why} You can ${what} again in ${formatSecs(left)}.`, "warn"),
    () => {
      show(el, `You can ${what} again now.`, "ok");
      announce(`You can ${what} again now.`);
      onDone();
    },
  );
}

// ---------------------------------------------------------------------------------------
// Step 1: the number

function fillCountries() {
  const sel = $("country");
  for (const c of COUNTRIES) {
    const opt = document.createElement("option");
    opt.value = c.iso;
    opt.textContent = `${c.name} (+${c.dial})`;
    sel.append(opt);
  }
  sel.value = guessCountry(navigator.languages || [navigator.language]);
  syncPrefix();
}

function country() {
  return COUNTRIES.find((c) => c.iso === $("country").value) || COUNTRIES[0];
}

function syncPrefix() {
  const typed = $("national").value.trim();
  const prefix = $("dial-prefix");
  prefix.textContent = `+${country().dial}`;
  prefix.hidden = typed.startsWith("+") || typed.startsWith("00");
}

async function onStart(ev) {
  ev.preventDefault();
  if (!client) return;
  const startErr = $("start-error");
  hide(startErr);
  $("national").removeAttribute("aria-invalid");
  let e164;
  try {
    const c = country();
    e164 = otp.toE164($("national").value, c.dial, c.trunk);
  } catch (err) {
    show(startErr, sentence(err?.message || "Check the number."));
    $("national").setAttribute("aria-invalid", "true");
    $("national").focus();
    return;
  }
  await beginVerification(e164);
}

async function beginVerification(phone) {
  const btn = $("start-btn");
  const startErr = $("start-error");
  btn.disabled = true;
  btn.textContent = "Sending…";
  const t0 = performance.now();
  try {
    const view = await startWithPow(phone);
    enterVerify(phone, view, t0);
  } catch (err) {
    if (err?.status === 429) {
      rateLimited(err, startErr, "request a code", () => { btn.disabled = false; }, startCooldown);
      btn.textContent = "Send code";
      return;
    }
    if (err?.status === 503 && Number(err?.retryAfter) > 0) {
      const why = err?.code === CODE.gateway_unavailable
        ? "No gateway phone can send an SMS right now."
        : "The verification service is busy.";
      rateLimited(err, startErr, "try", () => { btn.disabled = false; }, startCooldown, why);
      btn.textContent = "Send code";
      return;
    }
    const text = explain(err, "start") || "Could not send a code.";
    show(startErr, text);
    if (err?.status === 400) $("national").setAttribute("aria-invalid", "true");
    $("national").focus();
    btn.disabled = false;
  } finally {
    if (btn.textContent === "Sending…") btn.textContent = "Send code";
  }
}

/** start(); the package solves the issuer's proof-of-work challenge itself when asked. */
async function startWithPow(phone) {
  return client.start(phone, { app: APP, locale: navigator.language || undefined });
}

// ---------------------------------------------------------------------------------------
// Step 2: delivery, the phone, the code

function enterVerify(phone, view, t0) {
  stopVerification();
  cur = {
    id: view.id,
    phone,
    t0,
    sentAt: Date.now(),
    seen: {},
    lastState: null,
    statusTimer: null,
    phoneTimer: null,
    webotp: null,
    done: false,
    knownSms: new Map(),
  };
  $("start-form").hidden = true;
  $("verify-step").hidden = false;
  $("result").hidden = true;
  $("sent-to").textContent = phone;
  $("phone-target").textContent = phone;
  $("code").value = "";
  $("code").removeAttribute("aria-invalid");
  hide($("check-error"));
  $("check-btn").disabled = false;
  resetTimeline();
  applyView(view);
  announce(`Code sent to ${phone}. Enter it when it arrives.`);
  $("code").focus();
  pollStatus();
  pollPhone();
  listenWebOtp();
}

function stopVerification() {
  if (!cur) return;
  clearTimeout(cur.statusTimer);
  clearTimeout(cur.phoneTimer);
  cur.webotp?.abort();
  cur.done = true;
  resendCooldown.stop();
  expiryClock.stop();
  checkCooldown.stop();
}

/** Applies a verification view (start, status, resend answers) to the page. */
function applyView(view) {
  if (!view || !cur) return;
  const status = view.status;
  const delivery = view.delivery || {};
  if (delivery.state) markDelivery(delivery.state);
  const expires = toMs(pick(view, "expiresAt", "expires_at"));
  if (expires) cur.expiresAt = expires;
  const resendAt = toMs(pick(view, "resendAt", "resend_at"));
  // Half a second of margin: the issuer's clock decides, and a click a moment early is a 429.
  if (resendAt) cur.resendAt = resendAt + 500;
  const left = pick(view, "attemptsLeft", "attempts_left");
  if (left !== undefined) cur.attemptsLeft = left;
  startExpiryClock();
  startResendClock();
  if (status === "expired") showExpired();
  else if (status === "cancelled") show($("check-error"), "This verification was cancelled. Start again.");
  else if (status === "max_attempts_reached") {
    show($("check-error"), "Too many wrong codes: this code is locked. Send a new code.");
  }
}

function resetTimeline() {
  for (const li of $("timeline").children) {
    li.classList.remove("done", "current", "bad");
    li.querySelector(".when").textContent = "";
    if (li.dataset.state === "failed") li.hidden = true;
  }
  $("delivery-status").textContent = "";
}

const DELIVERY_TEXT = {
  queued: "Waiting for a gateway phone…",
  submitted: "The gateway phone has the message.",
  sent: "The phone sent the SMS. Waiting for the delivery report…",
  delivered: "Delivered to your phone.",
  failed: "The SMS could not be delivered. Send a new code, or check the number.",
  skipped: "No SMS was sent: this is a test number with a fixed code.",
};

function markDelivery(state) {
  if (!cur || state === cur.lastState) return;
  const now = performance.now();
  if (!(state in cur.seen)) cur.seen[state] = now;
  cur.lastState = state;
  const rank = STATES.indexOf(state);
  for (const li of $("timeline").children) {
    const s = li.dataset.state;
    const i = STATES.indexOf(s);
    li.classList.remove("current");
    if (s === "failed") {
      li.hidden = state !== "failed";
      li.classList.toggle("bad", state === "failed");
    } else if (rank >= 0 && i <= rank) {
      li.classList.add("done");
    }
    if (s === state) {
      if (state !== "delivered" && state !== "failed") li.classList.add("current");
      li.querySelector(".when").textContent = `+${((now - cur.t0) / 1000).toFixed(1)} s`;
    }
  }
  if (state === "skipped") {
    for (const li of $("timeline").children) li.classList.remove("done");
  }
  $("delivery-status").textContent = DELIVERY_TEXT[state] || `Delivery: ${state}`;
}

async function pollStatus() {
  const me = cur;
  if (!me || me.done) return;
  try {
    const view = await client.status(me.id);
    if (me !== cur || me.done) return;
    applyView(view);
    const st = view?.delivery?.state;
    if (view.status !== "pending" || st === "delivered" || st === "failed" || st === "skipped") {
      // Nothing more will change: the expiry clock keeps running on its own.
      return;
    }
  } catch (err) {
    if (me !== cur) return;
    if (err?.status === 404 || err?.status === 410) {
      applyView({ status: "expired" });
      return;
    }
    // A transient failure: keep polling, slower.
    me.statusTimer = setTimeout(pollStatus, POLL_MS * 3);
    return;
  }
  me.statusTimer = setTimeout(pollStatus, POLL_MS);
}

function startExpiryClock() {
  if (!cur?.expiresAt) return;
  const el = $("expiry");
  expiryClock.start(
    cur.expiresAt,
    (left) => { el.textContent = `The code expires in ${formatSecs(left)}.`; },
    () => { el.textContent = ""; showExpired(); },
  );
}

function showExpired() {
  if (!cur || cur.done) return;
  const first = !cur.expiredShown;
  cur.expiredShown = true;
  expiryClock.stop();
  $("expiry").textContent = "";
  show($("check-error"), "This code has expired. Send a new code.");
  if (first) announce("The code has expired. Send a new code.");
  const resend = $("resend-btn");
  resend.disabled = false;
  resend.textContent = "Send a new code";
  $("resend-note").textContent = "";
  cur.webotp?.abort();
}

function startResendClock() {
  if (!cur?.resendAt || cur.expiredShown) return;
  const btn = $("resend-btn");
  resendCooldown.start(
    cur.resendAt,
    (left) => {
      btn.disabled = true;
      btn.textContent = `Resend code (${formatSecs(left)})`;
      btn.setAttribute("aria-label", `Resend code, available in ${spokenSecs(left)}`);
    },
    () => {
      btn.disabled = false;
      btn.textContent = "Resend code";
      btn.removeAttribute("aria-label");
    },
  );
}

async function onResend() {
  if (!cur) return;
  const btn = $("resend-btn");
  const errEl = $("check-error");
  if (cur.expiredShown) {
    // The old verification is over: a fresh one for the same number.
    const phone = cur.phone;
    stopVerification();
    await beginVerificationFromVerify(phone);
    return;
  }
  btn.disabled = true;
  hide(errEl);
  try {
    const view = await client.resend(cur.id);
    cur.seen = {};
    cur.lastState = null;
    cur.t0 = performance.now();
    resetTimeline();
    $("code").value = "";
    $("code").removeAttribute("aria-invalid");
    $("check-btn").disabled = false;
    applyView(view);
    $("resend-note").textContent = "A new code is on its way. The previous code no longer works.";
    announce("A new code is on its way. The previous code no longer works.");
    clearTimeout(cur.statusTimer);
    pollStatus();
    listenWebOtp();
    $("code").focus();
  } catch (err) {
    if (err?.status === 429) {
      const retry = Number(err?.retryAfter ?? err?.retry_after);
      if (Number.isFinite(retry) && retry > 0) {
        cur.resendAt = Date.now() + retry * 1000;
        startResendClock();
        if (retry <= 3) {
          // Our clock ran a moment ahead of the issuer's: the person already asked, so
          // resend by ourselves once the last second has passed.
          const me = cur;
          $("resend-note").textContent = `Resending in ${spokenSecs(retry)}…`;
          setTimeout(() => { if (me === cur && !me.done) onResend(); }, retry * 1000 + 250);
          return;
        }
        $("resend-note").textContent = `You can resend in ${spokenSecs(retry)}.`;
        return;
      }
      show(errEl, "No more resends for this verification. Start again later.");
      return;
    }
    show(errEl, explain(err, "resend"));
    if (err?.status === 410) showExpired();
    btn.disabled = false;
  }
}

async function beginVerificationFromVerify(phone) {
  $("verify-step").hidden = true;
  $("start-form").hidden = false;
  await beginVerification(phone);
}

async function onCheck(ev) {
  ev.preventDefault();
  if (!cur) return;
  cur.webotp?.abort();
  const input = $("code");
  const errEl = $("check-error");
  const code = input.value.replace(/\s+/g, "");
  hide(errEl);
  input.removeAttribute("aria-invalid");
  if (!/^[0-9A-Za-z]{4,10}$/.test(code)) {
    show(errEl, "Enter the code from the SMS: 4 to 10 digits.");
    input.setAttribute("aria-invalid", "true");
    input.focus();
    return;
  }
  await submitCode(code);
}

async function submitCode(code) {
  const me = cur;
  const btn = $("check-btn");
  const input = $("code");
  const errEl = $("check-error");
  btn.disabled = true;
  btn.textContent = "Checking…";
  try {
    const res = await client.check(me.id, code);
    if (me !== cur) return;
    await approved(res);
  } catch (err) {
    if (me !== cur) return;
    btn.textContent = "Verify";
    input.setAttribute("aria-invalid", "true");
    if (err?.status === 422) {
      const left = Number(err?.attemptsLeft ?? err?.attempts_left);
      if (Number.isFinite(left)) cur.attemptsLeft = left;
      show(errEl, wrongCodeText(err));
      input.select();
      input.focus();
      btn.disabled = Number.isFinite(left) && left <= 0;
      return;
    }
    if (err?.status === 429 && Number(err?.retryAfter ?? err?.retry_after) > 0 && err?.code === CODE.rate_limited) {
      rateLimited(err, errEl, "try a code", () => { btn.disabled = false; }, checkCooldown);
      return;
    }
    if (err?.status === 410 && err?.code !== CODE.cancelled) {
      showExpired();
      return;
    }
    show(errEl, explain(err, "check"));
    btn.disabled = err?.status === 429 || err?.status === 409 || err?.status === 404;
    if (!btn.disabled) input.focus();
  } finally {
    if (btn.textContent === "Checking…") btn.textContent = "Verify";
  }
}

/** WebOTP: fills the code from the SMS where the browser supports it. */
function listenWebOtp() {
  if (!cur) return;
  cur.webotp?.abort();
  const hint = $("code-hint");
  if (!("OTPCredential" in window) || typeof otp.receiveCode !== "function") {
    hint.textContent = "Type the code from the SMS.";
    return;
  }
  hint.textContent = "Your browser can fill in the code from the SMS, or type it.";
  const ctrl = new AbortController();
  const me = cur;
  me.webotp = ctrl;
  Promise.resolve()
    .then(() => otp.receiveCode({ signal: ctrl.signal }))
    .then((got) => {
      const code = typeof got === "string" ? got : got?.code;
      if (!code || ctrl.signal.aborted || me !== cur || me.done) return;
      $("code").value = code;
      announce("Code filled in from the SMS. Checking it.");
      submitCode(code);
    })
    .catch(() => {
      // Aborted (the person typed), unsupported or refused: typing still works.
    });
}

// The emulated phone: what the gateway phone "sent" to this number.
async function pollPhone() {
  const me = cur;
  if (!me || me.done) return;
  let next = POLL_MS;
  try {
    const r = await fetch(`/_emulator/messages?phone=${encodeURIComponent(me.phone)}`, {
      headers: { accept: "application/json" },
      cache: "no-store",
    });
    if (r.status === 404) {
      const note = $("phone-error");
      note.hidden = false;
      note.textContent = "This issuer has no emulated phone (production configuration): the SMS goes to the real number.";
      document.querySelector(".phone").hidden = true;
      $("phone-dev-hint").hidden = true;
      $("phone-title").textContent = "Your phone";
      return;
    }
    if (r.ok) {
      const body = await r.json();
      if (me === cur) renderSms(Array.isArray(body) ? body : body?.messages || []);
    } else {
      next = POLL_MS * 3;
    }
  } catch {
    next = POLL_MS * 3;
  }
  if (me === cur && !me.done) me.phoneTimer = setTimeout(pollPhone, next);
}

const SMS_STATE = {
  pending: "Pending",
  processed: "Handed to the radio",
  sent: "Sent",
  delivered: "Delivered",
  failed: "Failed",
};

function renderSms(messages) {
  const list = $("sms-list");
  $("sms-empty").hidden = messages.length > 0;
  const currentPrefix = cur ? `${cur.id}.` : "\u0000";
  // Newest last, like a messaging app.
  const ordered = [...messages];
  let newestCurrent = null;
  for (const m of ordered) if (String(m.id || "").startsWith(currentPrefix)) newestCurrent = m.id;
  for (const m of ordered) {
    const key = String(m.id ?? `${m.text}`);
    let li = cur.knownSms.get(key);
    if (!li) {
      li = document.createElement("li");
      li.className = "sms";
      li.dataset.id = key;
      const text = document.createElement("p");
      text.className = "text";
      text.textContent = String(m.text ?? m.message ?? ""); // untrusted: text only, never HTML
      const metaEl = document.createElement("p");
      metaEl.className = "meta";
      const from = document.createElement("span");
      from.textContent = "otpgate";
      const state = document.createElement("span");
      state.className = "state";
      metaEl.append(from, state);
      li.append(text, metaEl);
      list.append(li);
      cur.knownSms.set(key, li);
    }
    const st = String(m.state || "").toLowerCase();
    li.querySelector(".state").textContent = SMS_STATE[st] || m.state || "";
    li.classList.toggle("old", newestCurrent !== null && m.id !== newestCurrent);
  }
}

// ---------------------------------------------------------------------------------------
// Step 3: the verdict

async function approved(res) {
  const me = cur;
  const elapsed = performance.now() - me.t0;
  stopVerification();
  const receipt = res?.receipt;
  $("verify-step").hidden = true;
  const result = $("result");
  result.hidden = false;
  result.dataset.elapsedMs = String(Math.round(elapsed));
  $("result-summary").textContent =
    `${me.phone} is verified, ${(elapsed / 1000).toFixed(1)} s after “Send code”.`;
  $("receipt-jwt").textContent = receipt || "";
  $("result-title").focus();
  announce(`Phone number verified. ${me.phone} is confirmed.`);
  pollPhoneOnce(me);

  const check = $("receipt-check");
  check.className = "notice";
  check.textContent = "Checking the receipt's signature against the issuer's public keys…";
  let claims = null;
  try {
    const r = await fetch("/.well-known/jwks.json", { cache: "no-store" });
    if (!r.ok) throw Object.assign(new Error(`JWKS answered ${r.status}`), { code: CODE.jwks_unavailable });
    const jwks = await r.json();
    let issuer = ISSUER;
    try {
      claims = otp.verifyReceipt(receipt, jwks, { audience: AUDIENCE, issuer });
    } catch (err) {
      // Dev mode names its listen address (127.0.0.1) as the issuer; the same server opened
      // as localhost is the same issuer.
      const alias = loopbackAlias(issuer);
      if (err?.code !== CODE.receipt_wrong_issuer || !alias) throw err;
      issuer = alias;
      claims = otp.verifyReceipt(receipt, jwks, { audience: AUDIENCE, issuer });
    }
    show(check, `Signature valid: verified offline with ${describeKeys(jwks)} from /.well-known/jwks.json (issuer ${issuer}, audience ${AUDIENCE}).`, "ok");
    result.dataset.receipt = "valid";
  } catch (err) {
    const code = err?.code ? ` (${err.code})` : "";
    let why = err?.message || "unknown error";
    if (err?.code === CODE.receipt_wrong_issuer) {
      why = `it names another issuer than ${ISSUER}; set the issuer's public URL to the address this page is served from`;
    }
    show(check, `The issuer approved the code, but the receipt did not verify here${code}: ${why}. The claims below are shown unverified.`, "warn");
    result.dataset.receipt = "invalid";
    claims = decodeClaims(receipt);
  }
  renderClaims(claims || {});
}

/** The same loopback origin under its other name (localhost <-> 127.0.0.1), if any. */
function loopbackAlias(origin) {
  if (meta("otpgate-issuer")) return null;
  try {
    const u = new URL(origin);
    if (u.hostname === "localhost") u.hostname = "127.0.0.1";
    else if (u.hostname === "127.0.0.1") u.hostname = "localhost";
    else return null;
    return u.origin;
  } catch {
    return null;
  }
}

function describeKeys(jwks) {
  const n = Array.isArray(jwks?.keys) ? jwks.keys.length : 0;
  return `${n} key${n === 1 ? "" : "s"}`;
}

function decodeClaims(jwt) {
  try {
    const part = String(jwt).split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const bin = atob(part + "===".slice((part.length + 3) % 4));
    return JSON.parse(new TextDecoder().decode(Uint8Array.from(bin, (c) => c.charCodeAt(0))));
  } catch {
    return null;
  }
}

const CLAIM_NOTES = {
  iss: "issuer",
  aud: "audience (the app)",
  sub: "verification id",
  jti: "token id",
  phone_number: "verified number",
  phone_number_verified: "",
  iat: "issued",
  exp: "expires",
};

function renderClaims(claims) {
  const dl = $("claims");
  dl.replaceChildren();
  const order = ["phone_number", "phone_number_verified", "iss", "aud", "sub", "jti", "iat", "exp"];
  const keys = [...order.filter((k) => k in claims), ...Object.keys(claims).filter((k) => !order.includes(k))];
  for (const k of keys) {
    const dt = document.createElement("dt");
    dt.textContent = k;
    const dd = document.createElement("dd");
    let v = claims[k];
    if ((k === "iat" || k === "exp") && Number.isFinite(Number(v))) {
      const d = new Date(Number(v) * 1000);
      v = `${v} (${d.toLocaleString()}${k === "exp" ? `, valid for ${Math.round((Number(claims.exp) - Number(claims.iat)) / 60)} min` : ""})`;
    } else if (typeof v === "object") {
      v = JSON.stringify(v);
    }
    dd.textContent = String(v) + (CLAIM_NOTES[k] && k !== "iat" && k !== "exp" ? ` · ${CLAIM_NOTES[k]}` : "");
    dd.dataset.claim = k;
    dl.append(dt, dd);
  }
}

async function pollPhoneOnce(me) {
  // One last look so the panel shows the final delivery state.
  try {
    const r = await fetch(`/_emulator/messages?phone=${encodeURIComponent(me.phone)}`, { cache: "no-store" });
    if (r.ok) {
      const body = await r.json();
      const saved = cur;
      cur = { ...me, done: true };
      renderSms(Array.isArray(body) ? body : body?.messages || []);
      cur = saved;
    }
  } catch {
    // The panel keeps what it had.
  }
}

function startOver({ keepNumber = true } = {}) {
  const old = cur;
  stopVerification();
  if (old && !old.done && client) client.cancel(old.id).catch(() => {});
  cur = null;
  $("verify-step").hidden = true;
  $("result").hidden = true;
  $("start-form").hidden = false;
  hide($("start-error"));
  $("start-btn").disabled = false;
  $("start-btn").textContent = "Send code";
  $("resend-note").textContent = "";
  if (!keepNumber) $("national").value = "";
  $("national").focus();
}

// ---------------------------------------------------------------------------------------
// Boot

async function boot() {
  fillCountries();
  $("country").addEventListener("change", syncPrefix);
  $("national").addEventListener("input", () => {
    syncPrefix();
    $("national").removeAttribute("aria-invalid");
  });
  $("start-form").addEventListener("submit", onStart);
  $("check-form").addEventListener("submit", onCheck);
  $("code").addEventListener("input", () => {
    // The person is typing: stop waiting for WebOTP so the two never race.
    cur?.webotp?.abort();
    $("code").removeAttribute("aria-invalid");
  });
  $("resend-btn").addEventListener("click", onResend);
  $("change-btn").addEventListener("click", () => startOver());
  $("again-btn").addEventListener("click", () => startOver({ keepNumber: false }));
  setInterval(() => {
    $("phone-clock").textContent = new Date().toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }, 1000);

  try {
    otp = await import("./pkg/otpgate.js");
    if (typeof otp.default === "function") await otp.default();
    const known = new Set(otp.errorCodes());
    CODE = new Proxy(Object.create(null), {
      get(_, name) {
        if (!known.has(name)) throw new Error(`not an otpgate error code: ${String(name)}`);
        return name;
      },
    });
    client = new otp.OtpClient(location.origin, { app: APP });
  } catch (err) {
    show($("boot-error"),
      `The otpgate client module did not load (${err?.message || err}). Build it with scripts/build-www.sh.`);
    return;
  }
  document.documentElement.dataset.ready = "true";
  $("start-btn").disabled = false;
}

boot();
