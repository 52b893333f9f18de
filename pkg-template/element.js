// <otp-verify>: the whole phone verification on one tag (the package entry `otpgate/element`).
//
// Plain DOM in an open shadow root, no framework, no dependency but the package itself:
// numbers are put in E.164 by the package's `toE164`, the calling code of a typed `+…` number
// is found by the package's table of assigned codes, the issuer is called through `OtpClient`,
// the SMS is read with `receiveCode` (WebOTP, only where the browser has `OTPCredential`) and
// the receipt is verified offline with `verifyReceipt` against the issuer's JWKS.
//
//   <otp-verify issuer="https://otp.example.com" app="shop"></otp-verify>
//
// Attributes: issuer (base URL; default: this page's origin), app (the issuer's [[apps]]
// name), audience (the receipts' aud; default: app), receipt-issuer (the receipts' iss;
// default: issuer), country (ISO code preselected; default: from the browser's language).
// Events (bubbling, composed): otp-sent {id, phone, expiresAt, resendAt, resend},
// otp-approved {receipt, claims, phone, id, elapsedMs}, otp-error {code, message, stage, ...}.
// Theming: --otp-* custom properties and ::part()s (listed in the package README).

import init, { OtpClient, errorCodes, receiveCode, toE164, verifyReceipt } from "./otpgate.js";

// ---------------------------------------------------------------------------------------
// Countries of the picker: ISO code, calling code, the national trunk prefix people type in
// front of a national number ("-": none, or the 0 belongs to the number as in Italy). The
// names come from the browser (Intl.DisplayNames). A typed +… number outside this list is
// still accepted: the picker shows its calling code.
const TABLE =
  "US 1 1|CA 1 1|AR 54 0|AU 61 0|AT 43 0|BE 32 0|BR 55 0|CL 56 -|CN 86 0|CO 57 -|CZ 420 -|" +
  "DK 45 -|EG 20 0|FI 358 0|FR 33 0|DE 49 0|GH 233 0|GR 30 -|IN 91 0|ID 62 0|IE 353 0|IL 972 0|" +
  "IT 39 -|JP 81 0|KE 254 0|MY 60 0|MX 52 -|MA 212 0|NL 31 0|NZ 64 0|NG 234 0|NO 47 -|PK 92 0|" +
  "PE 51 -|PH 63 0|PL 48 -|PT 351 -|RO 40 0|SA 966 0|SG 65 -|ZA 27 0|KR 82 0|ES 34 -|SE 46 0|" +
  "CH 41 0|TH 66 0|TR 90 0|UA 380 0|AE 971 0|GB 44 0|VN 84 0";

const COUNTRIES = TABLE.split("|").map((row) => {
  const [iso, dial, trunk] = row.split(" ");
  return { iso, dial, trunk: trunk === "-" ? undefined : trunk };
});

const STEPS = ["queued", "submitted", "sent", "delivered"];
const STEP_LABEL = { queued: "Queued", submitted: "At the phone", sent: "Sent", delivered: "Delivered" };
const DELIVERY_TEXT = {
  queued: "Waiting for a gateway phone…",
  submitted: "The gateway phone has the message.",
  sent: "The SMS is sent. Waiting for the delivery report…",
  delivered: "Delivered to your phone.",
  failed: "The SMS could not be delivered. Send a new code, or check the number.",
  skipped: "No SMS was sent: this is a test number with a fixed code.",
};
const POLL_MS = 1000;

// ---------------------------------------------------------------------------------------
// The package, loaded once for every element on the page.

let loading = null;
/** Every error code the package knows: a name outside it is a typo here, not a silent miss. */
let CODES = null;
function load() {
  loading ??= init().then(() => {
    CODES = new Set(errorCodes());
  });
  return loading;
}
/** The code `name` (checked against the package's list). */
function C(name) {
  if (CODES && !CODES.has(name)) throw new Error(`otp-verify: not an otpgate error code: ${name}`);
  return name;
}

/** Whether `digits` is exactly an assigned calling code (the package's table decides). */
function assigned(digits) {
  try {
    toE164("0", digits);
  } catch (err) {
    // An unassigned home calling code is refused as a bad argument; an assigned one gets
    // as far as judging the typed "0" (too short).
    return err?.code !== C("invalid_argument");
  }
  return true;
}

/** The calling code a typed international number starts with (1 to 3 digits), or null. */
function callingCodeOf(typed) {
  const t = typed.trim();
  if (!t.startsWith("+") && !t.startsWith("00")) return null;
  const digits = t.replace(/^00/, "").replace(/\D/g, "");
  for (let n = 1; n <= 3 && n <= digits.length; n++) {
    if (assigned(digits.slice(0, n))) return digits.slice(0, n);
  }
  return null;
}

// ---------------------------------------------------------------------------------------
// Small helpers

function toMs(rfc3339) {
  const t = Date.parse(rfc3339 || "");
  return Number.isFinite(t) ? t : null;
}

/** Whole seconds left, rounded up: a 30 s wait reads 30, then 29, ..., 1. */
const secsLeft = (ms) => Math.max(0, Math.ceil(ms / 1000));

/** "42 s" or "1:05". */
function clock(secs) {
  return secs < 60 ? `${secs} s` : `${Math.floor(secs / 60)}:${String(secs % 60).padStart(2, "0")}`;
}

/** "42 seconds", "1 minute 5 seconds": what the accessible texts say. */
function spoken(secs) {
  const plural = (n, w) => `${n} ${w}${n === 1 ? "" : "s"}`;
  if (secs < 60) return plural(secs, "second");
  const m = Math.floor(secs / 60);
  const r = secs % 60;
  return plural(m, "minute") + (r ? ` ${plural(r, "second")}` : "");
}

function sentence(text) {
  const t = String(text || "").trim();
  if (!t) return "";
  return t.charAt(0).toUpperCase() + t.slice(1) + (/[.!?]$/.test(t) ? "" : ".");
}

function isMobile() {
  const m = navigator.userAgentData?.mobile;
  return typeof m === "boolean" ? m : /Android|iPhone|iPad|Mobile/i.test(navigator.userAgent);
}

/** The same loopback origin under its other name (localhost <-> 127.0.0.1), if any. */
function loopbackAlias(origin) {
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

function wrongCodeText(left) {
  if (!Number.isFinite(left)) return "That code is not right. Check the SMS and try again.";
  if (left <= 0) return "That code is not right, and no attempts are left. Send a new code.";
  return `That code is not right. ${left} attempt${left === 1 ? "" : "s"} left.`;
}

/** The sentence a person reads for an error of the package, during `stage`. */
function explain(err, stage) {
  const status = err?.status;
  const code = err?.code || "";
  const msg = err?.message ? String(err.message) : "";
  if (!status && (code === C("network_error") || err instanceof TypeError)) {
    return "We could not reach the verification service. Check your connection and try again.";
  }
  switch (status) {
    case 400:
      return stage === "start" ? `That number was not accepted: ${msg || "check the country and the digits."}` : sentence(msg) || "The request was not accepted.";
    case 403:
      return stage === "start" || code === C("destination_not_allowed")
        ? "We can't send codes to numbers in this country. Use a number from a supported country."
        : sentence(msg) || "This request is not allowed.";
    case 404:
      return "This verification no longer exists. Start again.";
    case 409:
      return "This code was already used. Start again to get a new one.";
    case 410:
      return code === C("cancelled") ? "This verification was cancelled. Start again." : "This code has expired. Send a new code.";
    case 422:
      return wrongCodeText(Number(err?.attemptsLeft));
    case 429:
      if (code === C("number_locked")) {
        return "Too many wrong codes were entered for this number today. Try again later, or sign in another way.";
      }
      if (code === C("too_many_sends")) return "No more codes can be sent for this verification. Start again later.";
      if (stage === "check" && code !== C("rate_limited")) return "Too many wrong codes: this code is locked. Send a new code.";
      return "Too many requests. Try again later.";
    default:
      if (status >= 500) return "The verification service is unavailable right now. Please try again in a moment.";
      return sentence(msg) || "Something went wrong. Please try again.";
  }
}

/**
 * A countdown to an absolute time (ms): render(secsLeft) as each second begins, done() at
 * zero. Each tick is timed to the next second boundary, so the text changes on the second.
 */
class Countdown {
  constructor() {
    this.timer = 0;
  }
  start(untilMs, render, done) {
    this.stop();
    const tick = () => {
      const ms = untilMs - Date.now();
      const s = secsLeft(ms);
      if (s <= 0) {
        this.timer = 0;
        done();
        return;
      }
      render(s);
      // The next whole second left (a few ms late rather than early).
      this.timer = setTimeout(tick, ms - (s - 1) * 1000 + 5);
    };
    tick();
  }
  stop() {
    clearTimeout(this.timer);
    this.timer = 0;
  }
}

// ---------------------------------------------------------------------------------------
// Look

const CSS = `
:host {
  --_fg: var(--otp-fg, #1b1e23); --_bg: var(--otp-bg, #fff); --_muted: var(--otp-muted, #4a5260);
  --_line: var(--otp-line, #8a919c); --_accent: var(--otp-accent, #0b57d0); --_accent-fg: var(--otp-accent-fg, #fff);
  --_ok: var(--otp-ok, #0f6b2f); --_ok-bg: var(--otp-ok-bg, #e4f4e8); --_err: var(--otp-error, #a3121f);
  --_err-bg: var(--otp-error-bg, #fde8ea); --_warn: var(--otp-warn, #7a4a00); --_warn-bg: var(--otp-warn-bg, #fff3d6);
  --_focus: var(--otp-focus, #c25e00); --_field: var(--otp-field-bg, var(--_bg)); --_r: var(--otp-radius, 8px);
  display: block; color: var(--_fg); background: var(--_bg); font: var(--otp-font, inherit);
  line-height: 1.5; container-type: inline-size;
}
@supports (color: light-dark(#000, #fff)) {
  :host {
    --_fg: var(--otp-fg, light-dark(#1b1e23, #eef0f3)); --_bg: var(--otp-bg, light-dark(#fff, #1b1f25));
    --_muted: var(--otp-muted, light-dark(#4a5260, #b4bbc6)); --_line: var(--otp-line, light-dark(#8a919c, #6b7380));
    --_accent: var(--otp-accent, light-dark(#0b57d0, #8ab4f8)); --_accent-fg: var(--otp-accent-fg, light-dark(#fff, #0b1b33));
    --_ok: var(--otp-ok, light-dark(#0f6b2f, #7fd69a)); --_ok-bg: var(--otp-ok-bg, light-dark(#e4f4e8, #15301f));
    --_err: var(--otp-error, light-dark(#a3121f, #ffb3ba)); --_err-bg: var(--otp-error-bg, light-dark(#fde8ea, #3a1519));
    --_warn: var(--otp-warn, light-dark(#7a4a00, #ffd27a)); --_warn-bg: var(--otp-warn-bg, light-dark(#fff3d6, #33270d));
    --_focus: var(--otp-focus, light-dark(#c25e00, #ffb15c));
  }
}
:host([hidden]) { display: none; }
* { box-sizing: border-box; }
[hidden] { display: none !important; }
.vh { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap; }
form, section { margin: 0; }
:focus-visible { outline: 3px solid var(--_focus); outline-offset: 2px; }
.row { display: flex; gap: .75rem; flex-wrap: wrap; }
.field { display: flex; flex-direction: column; gap: .25rem; margin-bottom: .5rem; flex: 1 1 100%; min-width: 0; }
@container (min-width: 30rem) { .field.country { flex: 1 1 10rem; } .field.number { flex: 2 1 14rem; } }
label { font-weight: 600; }
input, select, button { font: inherit; color: inherit; }
input, select {
  min-height: 2.75rem; padding: .5rem .65rem; width: 100%; border: 1px solid var(--_line);
  border-radius: var(--_r); background: var(--_field); color: var(--_fg);
}
input[aria-invalid="true"] { border: 2px solid var(--_err); }
.code { font-size: 1.5rem; letter-spacing: .3em; font-variant-numeric: tabular-nums; max-width: 13rem; }
.pre { display: flex; }
.pre span {
  display: flex; align-items: center; padding: 0 .6rem; border: 1px solid var(--_line); border-right: 0;
  border-radius: var(--_r) 0 0 var(--_r); font-variant-numeric: tabular-nums;
}
.pre span + input { border-radius: 0 var(--_r) var(--_r) 0; }
button { min-height: 2.75rem; padding: .5rem 1.1rem; border-radius: var(--_r); cursor: pointer; border: 1px solid var(--_line); background: transparent; }
button.primary { background: var(--_accent); color: var(--_accent-fg); border-color: var(--_accent); font-weight: 600; }
button.link { border: 0; padding: 0; min-height: 0; background: none; color: var(--_accent); text-decoration: underline; }
button:disabled { cursor: not-allowed; opacity: .7; }
.actions { display: flex; gap: .75rem; flex-wrap: wrap; margin-top: .25rem; }
.hint { color: var(--_muted); margin: .25rem 0 .6rem; }
.hint strong { color: var(--_fg); }
.notice { border-radius: var(--_r); padding: .55rem .75rem; margin: .5rem 0 .6rem; border-left: 4px solid currentColor; }
.notice.error { background: var(--_err-bg); color: var(--_err); }
.notice.warn { background: var(--_warn-bg); color: var(--_warn); }
.notice.ok { background: var(--_ok-bg); color: var(--_ok); }
.steps { list-style: none; margin: .25rem 0 .25rem; padding: 0; display: grid; grid-template-columns: repeat(4, minmax(0, 1fr)); gap: .25rem; }
.steps li { border-top: 4px solid var(--_line); padding-top: .2rem; color: var(--_muted); font-size: .85rem; line-height: 1.3; }
.steps li.done { border-color: var(--_ok); color: var(--_fg); }
.steps li[aria-current] { border-color: var(--_accent); color: var(--_fg); }
.steps li.bad { border-color: var(--_err); color: var(--_err); }
.steps .when { display: block; font-variant-numeric: tabular-nums; color: var(--_muted); }
.status { font-weight: 600; margin: .2rem 0 .6rem; }
.title { font-size: 1.2rem; font-weight: 700; margin: 0 0 .25rem; color: var(--_ok); }
.title:focus { outline: none; }
.title:focus-visible { outline: 3px solid var(--_focus); }
`;

const HTML = `
<p id="live" class="vh" aria-live="polite" aria-atomic="true"></p>
<p id="boot-error" part="notice error" class="notice error" role="alert" hidden></p>
<form id="start-form" part="form start-form" novalidate>
  <div class="row">
    <div class="field country">
      <label for="country" part="label">Country</label>
      <select id="country" part="select country-select" autocomplete="country"></select>
    </div>
    <div class="field number">
      <label for="national" part="label">Phone number</label>
      <div class="pre">
        <span id="dial-prefix" part="prefix" aria-hidden="true"></span>
        <input id="national" part="input phone-input" type="tel" inputmode="tel" autocomplete="tel-national"
          required spellcheck="false" aria-describedby="national-hint start-error">
      </div>
    </div>
  </div>
  <p id="national-hint" part="hint" class="hint">We send a one-time code by SMS. You can also type the full number starting with +.</p>
  <p id="start-error" part="notice" class="notice error" role="alert" hidden></p>
  <button id="start-btn" part="button primary" class="primary" type="submit" disabled>Send code</button>
</form>
<section id="verify-step" part="verify-step" hidden>
  <p class="hint">Code sent to <strong id="sent-to"></strong>.
    <button id="change-btn" part="link" class="link" type="button">Change number</button></p>
  <ol id="timeline" part="timeline" class="steps" aria-label="Delivery">
    <li data-state="queued"></li><li data-state="submitted"></li><li data-state="sent"></li><li data-state="delivered"></li>
  </ol>
  <p id="delivery-status" part="status" class="status" role="status"></p>
  <form id="check-form" part="form check-form" novalidate>
    <div class="field">
      <label for="code" part="label">Code from the SMS</label>
      <input id="code" part="input code-input" class="code" type="text" inputmode="numeric" pattern="[0-9]*"
        autocomplete="one-time-code" maxlength="10" required spellcheck="false"
        aria-describedby="code-hint expiry check-error">
    </div>
    <p id="code-hint" part="hint" class="hint"></p>
    <p id="expiry" part="hint expiry" class="hint"></p>
    <p id="check-error" part="notice" class="notice error" role="alert" hidden></p>
    <div class="actions">
      <button id="check-btn" part="button primary" class="primary" type="submit">Verify</button>
      <button id="resend-btn" part="button secondary" type="button" disabled>Resend code</button>
    </div>
    <p id="resend-note" part="hint" class="hint"></p>
  </form>
</section>
<section id="result" part="result" hidden>
  <p id="result-title" class="title" tabindex="-1"><span aria-hidden="true">&#10003;</span> Phone number verified</p>
  <p id="result-summary" part="hint" class="hint"></p>
  <p id="receipt-note" part="notice" class="notice warn" hidden></p>
  <button id="again-btn" part="button secondary" type="button">Verify another number</button>
</section>`;

let sheet = null;
function styles(root) {
  // A constructed style sheet (not subject to a page's style-src policy) where there is one.
  if ("adoptedStyleSheets" in root && typeof CSSStyleSheet.prototype.replaceSync === "function") {
    if (!sheet) {
      sheet = new CSSStyleSheet();
      sheet.replaceSync(CSS);
    }
    root.adoptedStyleSheets = [sheet];
  } else {
    const s = document.createElement("style");
    s.textContent = CSS;
    root.append(s);
  }
}

// ---------------------------------------------------------------------------------------
// The element

const Base = globalThis.HTMLElement ?? class {};

export class OtpVerifyElement extends Base {
  static get observedAttributes() {
    return ["issuer", "app", "country"];
  }

  constructor() {
    super();
    const root = this.attachShadow({ mode: "open" });
    styles(root);
    const t = document.createElement("template");
    t.innerHTML = HTML;
    root.append(t.content);
    /** @type {(id: string) => any} */
    this.$ = (id) => root.getElementById(id);
    this.cur = null;
    this.client = null;
    this.clocks = { start: new Countdown(), resend: new Countdown(), expiry: new Countdown(), check: new Countdown() };
    const $ = this.$;
    $("country").addEventListener("change", () => this.syncPrefix());
    $("national").addEventListener("input", () => {
      this.followNumber();
      $("national").removeAttribute("aria-invalid");
    });
    $("start-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      this.onStart();
    });
    $("check-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      this.onCheck();
    });
    $("code").addEventListener("input", () => {
      // The person is typing: stop waiting for WebOTP so that the two never race.
      this.cur?.webotp?.abort();
      $("code").removeAttribute("aria-invalid");
    });
    $("resend-btn").addEventListener("click", () => this.onResend());
    $("change-btn").addEventListener("click", () => this.reset());
    $("again-btn").addEventListener("click", () => this.reset({ keepNumber: false }));
  }

  /** The issuer's base URL (attribute `issuer`; default: this page's origin). */
  get issuer() {
    return (this.getAttribute("issuer") || location.origin).replace(/\/+$/, "");
  }
  set issuer(v) {
    this.setAttribute("issuer", v);
  }
  /** The issuer's app name (attribute `app`). */
  get app() {
    return this.getAttribute("app") || "";
  }
  set app(v) {
    this.setAttribute("app", v);
  }

  connectedCallback() {
    if (this.booted) return;
    this.booted = true;
    load().then(
      () => this.ready(),
      (err) => this.fail("load", err, `The verification module did not load (${err?.message || err}).`),
    );
  }

  disconnectedCallback() {
    // Moved or removed: nothing keeps polling or waiting behind the page's back.
    this.stopVerification();
    this.clocks.start.stop();
  }

  attributeChangedCallback(name) {
    if (name === "country") {
      if (this.$("country").options.length) this.pickCountry(this.getAttribute("country"));
    } else {
      this.client = null; // a new issuer or app: a new client at the next call
    }
  }

  ready() {
    if (this.filled) return;
    this.filled = true;
    const sel = this.$("country");
    let names = null;
    try {
      names = new Intl.DisplayNames(["en"], { type: "region" });
    } catch {
      // No region names in this runtime: the ISO codes stand in.
    }
    const rows = COUNTRIES.map((c) => ({ ...c, name: names?.of(c.iso) || c.iso }));
    rows.sort((a, b) => a.name.localeCompare(b.name, "en"));
    for (const c of rows) sel.append(new Option(`${c.name} (+${c.dial})`, c.iso));
    const guess = [this.getAttribute("country"), ...(navigator.languages || [navigator.language])]
      .map((tag) => /^(?:[a-z]{2,3}-)?([A-Z]{2})\b/i.exec(tag || "")?.[1]?.toUpperCase())
      .find((iso) => iso && COUNTRIES.some((c) => c.iso === iso));
    this.pickCountry(guess || "US");
    this.$("start-btn").disabled = false;
    this.dataset.ready = "";
  }

  pickCountry(iso) {
    const sel = this.$("country");
    const up = String(iso || "").toUpperCase();
    if ([...sel.options].some((o) => o.value === up)) sel.value = up;
    this.syncPrefix();
  }

  /** The country picked: `{iso, dial, trunk}` (an "other" entry has only the dial). */
  country() {
    const v = this.$("country").value;
    if (v.startsWith("+")) return { iso: "", dial: v.slice(1) };
    return COUNTRIES.find((c) => c.iso === v) || COUNTRIES[0];
  }

  syncPrefix() {
    const typed = this.$("national").value.trim();
    const prefix = this.$("dial-prefix");
    prefix.textContent = `+${this.country().dial}`;
    prefix.hidden = typed.startsWith("+") || typed.startsWith("00");
  }

  /** A typed +… number moves the country picker to its calling code. */
  followNumber() {
    const cc = callingCodeOf(this.$("national").value);
    const sel = this.$("country");
    if (cc && this.country().dial !== cc) {
      const match = COUNTRIES.find((c) => c.dial === cc);
      let other = sel.querySelector("option[data-other]");
      if (match) {
        sel.value = match.iso;
      } else {
        if (!other) {
          other = new Option("", "");
          other.dataset.other = "";
          sel.prepend(other);
        }
        other.value = `+${cc}`;
        other.textContent = `Other (+${cc})`;
        sel.value = other.value;
      }
    }
    this.syncPrefix();
  }

  api() {
    this.client ??= new OtpClient(this.issuer, this.app ? { app: this.app } : {});
    return this.client;
  }

  announce(text) {
    const live = this.$("live");
    live.textContent = "";
    // A fresh text after a tick, so that the same message is read again.
    setTimeout(() => {
      live.textContent = text;
    }, 50);
  }

  show(id, text, kind = "error") {
    const el = this.$(id);
    el.className = `notice ${kind}`;
    el.setAttribute("part", `notice ${kind}`);
    el.textContent = text;
    el.hidden = !text;
  }

  hide(id) {
    const el = this.$(id);
    el.hidden = true;
    el.textContent = "";
  }

  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail, bubbles: true, composed: true }));
  }

  /** An error the element shows in words and reports as `otp-error`. */
  fail(stage, err, text, where = "boot-error") {
    this.show(where, text);
    const detail = { code: err?.code || C("error"), message: text, stage };
    for (const k of ["status", "retryAfter", "attemptsLeft", "requestId"]) if (err?.[k] !== undefined) detail[k] = err[k];
    this.emit("otp-error", detail);
  }

  /**
   * A wait the issuer asked for (429 or 503 with Retry-After): "… again in 42 s", counted
   * down live from the issuer's seconds; `onDone` when it is over.
   */
  wait(stage, err, where, what, clock_, onDone, why) {
    const secs = Math.max(1, Math.round(Number(err.retryAfter)));
    const until = Date.now() + secs * 1000;
    this.fail(stage, err, `${why} You can ${what} again in ${clock(secs)}.`, where);
    this.announce(`${why} You can ${what} again in ${spoken(secs)}.`);
    clock_.start(
      until,
      (s) => this.show(where, `${why} You can ${what} again in ${clock(s)}.`, "warn"),
      () => {
        this.show(where, `You can ${what} again now.`, "ok");
        this.announce(`You can ${what} again now.`);
        onDone();
      },
    );
  }

  // -------------------------------------------------------------------- step 1: the number

  async onStart() {
    const $ = this.$;
    if ($("start-btn").disabled) return;
    this.hide("start-error");
    $("national").removeAttribute("aria-invalid");
    let phone;
    try {
      const c = this.country();
      phone = toE164($("national").value, c.dial, c.trunk);
    } catch (err) {
      this.fail("start", err, sentence(err?.message) || "Check the number.", "start-error");
      $("national").setAttribute("aria-invalid", "true");
      $("national").focus();
      return;
    }
    await this.begin(phone);
  }

  async begin(phone) {
    const $ = this.$;
    const btn = $("start-btn");
    btn.disabled = true;
    btn.textContent = "Sending…";
    const t0 = performance.now();
    try {
      const view = await this.api().start(phone, { locale: navigator.language || undefined });
      this.enterVerify(phone, view, t0);
    } catch (err) {
      const again = () => {
        btn.disabled = false;
      };
      const retry = Number(err?.retryAfter);
      if (err?.status === 429 && retry > 0 && err?.code !== C("number_locked")) {
        const why = err.code === C("too_many_starts") ? "Too many codes were requested for this number." : "Too many requests.";
        this.wait("start", err, "start-error", "request a code", this.clocks.start, again, why);
      } else if (err?.status === 503 && retry > 0) {
        const why = err.code === C("gateway_unavailable") ? "No gateway phone can send an SMS right now." : "The verification service is busy.";
        this.wait("start", err, "start-error", "try", this.clocks.start, again, why);
      } else {
        this.fail("start", err, explain(err, "start") || "Could not send a code.", "start-error");
        if (err?.status === 400) $("national").setAttribute("aria-invalid", "true");
        $("national").focus();
        btn.disabled = false;
      }
    } finally {
      btn.textContent = "Send code";
    }
  }

  // -------------------------------------------------------------- step 2: delivery, the code

  enterVerify(phone, view, t0) {
    const $ = this.$;
    this.stopVerification();
    this.cur = { id: view.id, phone, t0, sentAt: t0, times: {}, webotp: null, done: false };
    $("start-form").hidden = true;
    $("verify-step").hidden = false;
    $("result").hidden = true;
    $("sent-to").textContent = phone;
    this.resetCode();
    this.resetTimeline();
    this.applyView(view);
    this.announce(`Code sent to ${phone}. Enter it when it arrives.`);
    $("code").focus();
    this.emitSent(view, false);
    this.pollStatus();
    this.listenWebOtp();
  }

  emitSent(view, resend) {
    this.emit("otp-sent", { id: view.id, phone: this.cur.phone, expiresAt: view.expires_at, resendAt: view.resend_at, resend });
  }

  resetCode() {
    const $ = this.$;
    $("code").value = "";
    $("code").removeAttribute("aria-invalid");
    $("check-btn").disabled = false;
    $("check-btn").textContent = "Verify";
    this.hide("check-error");
    $("resend-note").textContent = "";
  }

  stopVerification() {
    const cur = this.cur;
    if (!cur) return;
    clearTimeout(cur.timer);
    cur.webotp?.abort();
    cur.done = true;
    this.clocks.resend.stop();
    this.clocks.expiry.stop();
    this.clocks.check.stop();
  }

  /** Applies a verification (start, status, resend answers). */
  applyView(view) {
    const cur = this.cur;
    if (!view || !cur) return;
    if (view.delivery?.state) this.markDelivery(view.delivery.state);
    const expires = toMs(view.expires_at);
    if (expires) cur.expiresAt = expires;
    // The issuer's own instant (whole seconds): the countdown reads its seconds, and a resend
    // after it is never early.
    const resendAt = toMs(view.resend_at);
    if (resendAt) cur.resendAt = resendAt;
    this.startExpiryClock();
    this.startResendClock();
    if (view.status === "expired") this.showExpired();
    else if (view.status === "cancelled") this.show("check-error", "This verification was cancelled. Start again.");
    else if (view.status === "max_attempts_reached") this.locked();
  }

  locked() {
    this.show("check-error", "Too many wrong codes: this code is locked. Send a new code.");
    this.$("check-btn").disabled = true;
  }

  resetTimeline() {
    for (const li of this.$("timeline").children) this.paintStep(li, "", "");
    this.$("delivery-status").textContent = "";
  }

  paintStep(li, cls, when) {
    const s = li.dataset.state;
    li.className = cls;
    if (cls === "current") li.setAttribute("aria-current", "step");
    else li.removeAttribute("aria-current");
    li.replaceChildren(`${STEP_LABEL[s]}`);
    const w = document.createElement("span");
    w.className = "when";
    w.textContent = when;
    const say = document.createElement("span");
    say.className = "vh";
    say.textContent = cls === "done" ? " (done)" : cls === "bad" ? " (failed)" : "";
    li.append(say, w);
  }

  /**
   * The timeline at `state`, seen now: its time is when it was first seen (the issuer's
   * `updated_at` has whole seconds only); steps passed between two polls get the time they
   * were first seen passed ("by +1.2 s").
   */
  markDelivery(state) {
    const cur = this.cur;
    if (state === cur.last) return;
    cur.last = state;
    const since = (ms) => `+${(ms / 1000).toFixed(1)} s`;
    const elapsed = performance.now() - cur.sentAt;
    const rank = state === "failed" ? STEPS.indexOf(cur.lastRank || "queued") : STEPS.indexOf(state);
    if (rank >= 0 && state !== "failed") cur.lastRank = state;
    for (const [i, s] of STEPS.entries()) {
      if (i < rank && !cur.times[s]) cur.times[s] = `by ${since(elapsed)}`;
    }
    if (STEPS.includes(state) && !cur.times[state]) cur.times[state] = since(elapsed);
    for (const li of this.$("timeline").children) {
      const s = li.dataset.state;
      const i = STEPS.indexOf(s);
      let cls = "";
      if (state === "failed" && i === rank + 1) cls = "bad";
      else if (i < rank || (i === rank && s === "delivered")) cls = "done";
      else if (i === rank) cls = "current";
      this.paintStep(li, state === "skipped" ? "" : cls, state === "skipped" ? "" : cur.times[s] || "");
    }
    this.$("delivery-status").textContent = DELIVERY_TEXT[state] || `Delivery: ${state}`;
  }

  async pollStatus() {
    const me = this.cur;
    if (!me || me.done) return;
    let next = POLL_MS;
    try {
      const view = await this.api().status(me.id);
      if (me !== this.cur || me.done) return;
      this.applyView(view);
      const st = view.delivery?.state;
      // Nothing more will change: the expiry clock runs on its own.
      if (view.status !== "pending" || st === "delivered" || st === "failed" || st === "skipped") return;
    } catch (err) {
      if (me !== this.cur) return;
      if (err?.status === 404 || err?.status === 410) {
        this.showExpired();
        return;
      }
      next = POLL_MS * 3; // a passing failure: keep polling, slower
    }
    me.timer = setTimeout(() => this.pollStatus(), next);
  }

  startExpiryClock() {
    const cur = this.cur;
    if (!cur?.expiresAt || cur.expired) return;
    const el = this.$("expiry");
    this.clocks.expiry.start(
      cur.expiresAt,
      (s) => {
        el.textContent = `The code expires in ${clock(s)}.`;
      },
      () => this.showExpired(),
    );
  }

  showExpired() {
    const cur = this.cur;
    if (!cur || cur.done) return;
    if (cur.expired) {
      // Said again (the issuer's 410 after the element's own clock): no second event.
      this.show("check-error", "This code has expired. Send a new code.");
      this.$("check-btn").disabled = true;
      return;
    }
    cur.expired = true;
    this.clocks.expiry.stop();
    this.clocks.resend.stop();
    cur.webotp?.abort();
    this.$("expiry").textContent = "";
    this.fail("check", { code: C("expired"), status: 410 }, "This code has expired. Send a new code.", "check-error");
    this.announce("This code has expired. Send a new code.");
    this.$("check-btn").disabled = true;
    const resend = this.$("resend-btn");
    resend.disabled = false;
    resend.textContent = "Send a new code";
    resend.removeAttribute("aria-label");
    this.$("resend-note").textContent = "";
  }

  startResendClock() {
    const cur = this.cur;
    if (!cur?.resendAt || cur.expired) return;
    const btn = this.$("resend-btn");
    this.clocks.resend.start(
      cur.resendAt,
      (s) => {
        btn.disabled = true;
        btn.textContent = `Resend code (${clock(s)})`;
        btn.setAttribute("aria-label", `Resend code, available in ${spoken(s)}`);
      },
      () => {
        btn.disabled = false;
        btn.textContent = "Resend code";
        btn.removeAttribute("aria-label");
      },
    );
  }

  async onResend() {
    const $ = this.$;
    const cur = this.cur;
    if (!cur) return;
    if (cur.expired) {
      // The verification is over: a fresh one for the same number.
      this.stopVerification();
      $("verify-step").hidden = true;
      $("start-form").hidden = false;
      await this.begin(cur.phone);
      return;
    }
    const btn = $("resend-btn");
    btn.disabled = true;
    this.hide("check-error");
    try {
      const view = await this.api().resend(cur.id);
      if (cur !== this.cur) return;
      cur.times = {};
      cur.last = cur.lastRank = null;
      cur.sentAt = performance.now(); // the timeline restarts; elapsedMs counts from the first "Send code"
      this.resetTimeline();
      this.resetCode();
      this.applyView(view);
      const note = "A new code is on its way. The previous code no longer works.";
      $("resend-note").textContent = note;
      this.announce(note);
      this.emitSent(view, true);
      clearTimeout(cur.timer);
      this.pollStatus();
      this.listenWebOtp();
      $("code").focus();
    } catch (err) {
      if (cur !== this.cur) return;
      const retry = Number(err?.retryAfter);
      if (err?.status === 429 && retry > 0) {
        // The issuer's clock decides: count down its seconds on the button again.
        cur.resendAt = Date.now() + retry * 1000;
        this.startResendClock();
        this.fail("resend", err, `You can resend in ${spoken(retry)}.`, "check-error");
        this.show("check-error", `You can resend in ${clock(retry)}.`, "warn");
        return;
      }
      this.fail("resend", err, explain(err, "resend"), "check-error");
      if (err?.status === 410) this.showExpired();
      else btn.disabled = false;
    }
  }

  async onCheck() {
    const $ = this.$;
    const cur = this.cur;
    if (!cur || $("check-btn").disabled) return;
    cur.webotp?.abort();
    const input = $("code");
    const code = input.value.replace(/\s+/g, "");
    this.hide("check-error");
    input.removeAttribute("aria-invalid");
    if (!/^[0-9A-Za-z]{4,10}$/.test(code)) {
      this.show("check-error", "Enter the code from the SMS: 4 to 10 digits.");
      input.setAttribute("aria-invalid", "true");
      input.focus();
      return;
    }
    await this.submitCode(code);
  }

  async submitCode(code) {
    const $ = this.$;
    const me = this.cur;
    const btn = $("check-btn");
    const input = $("code");
    btn.disabled = true;
    btn.textContent = "Checking…";
    try {
      const res = await this.api().check(me.id, code);
      if (me !== this.cur) return;
      await this.approved(res);
    } catch (err) {
      if (me !== this.cur) return;
      btn.textContent = "Verify";
      input.setAttribute("aria-invalid", "true");
      const retry = Number(err?.retryAfter);
      if (err?.status === 422) {
        const left = Number(err.attemptsLeft);
        this.fail("check", err, wrongCodeText(left), "check-error");
        btn.disabled = Number.isFinite(left) && left <= 0;
        input.select();
        input.focus();
      } else if (err?.status === 429 && retry > 0 && err.code === C("rate_limited")) {
        this.wait("check", err, "check-error", "try a code", this.clocks.check, () => {
          btn.disabled = false;
        }, "Too many requests.");
      } else if (err?.status === 410 && err.code !== C("cancelled")) {
        this.showExpired();
      } else {
        this.fail("check", err, explain(err, "check"), "check-error");
        btn.disabled = [404, 409, 429].includes(err?.status);
        if (!btn.disabled) input.focus();
      }
    } finally {
      if (btn.textContent === "Checking…") btn.textContent = "Verify";
    }
  }

  /** WebOTP, only where the browser has it; the hint promises autofill only on a phone. */
  listenWebOtp() {
    const cur = this.cur;
    cur.webotp?.abort();
    const hint = this.$("code-hint");
    if (!("OTPCredential" in window)) {
      hint.textContent = "Type the code from the SMS.";
      return;
    }
    hint.textContent = isMobile() ? "Your phone can fill in the code from the SMS, or type it." : "Type the code from the SMS.";
    const ctrl = new AbortController();
    cur.webotp = ctrl;
    receiveCode({ signal: ctrl.signal }).then(
      (code) => {
        if (!code || ctrl.signal.aborted || cur !== this.cur || cur.done) return;
        this.$("code").value = code;
        this.announce("Code filled in from the SMS. Checking it.");
        this.submitCode(code);
      },
      () => {
        // Aborted (the person typed), unsupported or refused: typing still works.
      },
    );
  }

  // ------------------------------------------------------------------ step 3: the verdict

  async approved(res) {
    const $ = this.$;
    const me = this.cur;
    const elapsedMs = Math.round(performance.now() - me.t0);
    this.stopVerification();
    this.cur = null;
    $("verify-step").hidden = true;
    $("result").hidden = false;
    $("result-summary").textContent = `${me.phone} is verified, ${(elapsedMs / 1000).toFixed(1)} s after “Send code”.`;
    this.hide("receipt-note");
    $("result-title").focus();
    this.announce(`Phone number verified. ${me.phone} is confirmed.`);
    const receipt = res.receipt;
    const audience = this.getAttribute("audience") || this.app;
    let iss = (this.getAttribute("receipt-issuer") || this.issuer).replace(/\/+$/, "");
    try {
      if (!audience) throw Object.assign(new Error("set the app (or audience) attribute to check receipts"), { code: C("invalid_argument") });
      const r = await fetch(`${this.issuer}/.well-known/jwks.json`, { cache: "no-store" });
      if (!r.ok) throw Object.assign(new Error(`the issuer's keys answered ${r.status}`), { code: C("jwks_unavailable") });
      const jwks = await r.json();
      let claims;
      try {
        claims = verifyReceipt(receipt, jwks, { audience, issuer: iss });
      } catch (err) {
        // The same loopback issuer under its other name (dev mode names 127.0.0.1).
        const alias = this.hasAttribute("receipt-issuer") ? null : loopbackAlias(iss);
        if (err?.code !== C("receipt_wrong_issuer") || !alias) throw err;
        iss = alias;
        claims = verifyReceipt(receipt, jwks, { audience, issuer: iss });
      }
      this.dataset.elapsedMs = String(elapsedMs);
      this.emit("otp-approved", { receipt, claims, phone: me.phone, id: me.id, elapsedMs });
    } catch (err) {
      const text = `The code was accepted, but the receipt could not be checked here: ${err?.message || err}.`;
      this.show("receipt-note", text, "warn");
      const detail = { code: err?.code || C("error"), message: text, stage: "receipt", receipt };
      this.emit("otp-error", detail);
    }
  }

  /** Back to the number (kept unless `keepNumber` is false); cancels a verification in progress. */
  reset({ keepNumber = true } = {}) {
    const $ = this.$;
    const old = this.cur;
    this.stopVerification();
    if (old && this.client) this.client.cancel(old.id).catch(() => {});
    this.cur = null;
    $("verify-step").hidden = true;
    $("result").hidden = true;
    $("start-form").hidden = false;
    if (!this.clocks.start.timer) {
      this.hide("start-error");
      $("start-btn").disabled = !this.filled;
    }
    if (!keepNumber) $("national").value = "";
    this.syncPrefix();
    $("national").focus();
  }
}

if (globalThis.customElements && !customElements.get("otp-verify")) {
  customElements.define("otp-verify", OtpVerifyElement);
}
