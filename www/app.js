// The otpgate demo page: a thin page around the package's <otp-verify> element (copied to
// ./pkg/ by scripts/build-www.sh) plus the emulated phone of dev mode, which shows the SMS the
// gateway phone "sent" (GET /_emulator/messages?phone=).

import "./pkg/element.js";

const $ = (id) => document.getElementById(id);
const meta = (name) => document.querySelector(`meta[name="${name}"]`)?.content || "";
const POLL_MS = 1000;

const otp = $("otp");
// <meta name="otpgate-app|otpgate-issuer|otpgate-audience"> and ?app= adjust the element.
const app = new URLSearchParams(location.search).get("app") || meta("otpgate-app");
if (app) otp.setAttribute("app", app);
if (meta("otpgate-issuer")) otp.setAttribute("receipt-issuer", meta("otpgate-issuer"));
if (meta("otpgate-audience")) otp.setAttribute("audience", meta("otpgate-audience"));

// ---------------------------------------------------------------- the emulated phone

/** The number on the phone and the verification whose SMS is the current one. */
let watch = null;

otp.addEventListener("otp-sent", (ev) => {
  const { phone, id } = ev.detail;
  if (!watch || watch.phone !== phone) {
    $("sms-list").replaceChildren();
    watch = { phone, id, known: new Map(), timer: 0 };
  }
  clearTimeout(watch.timer);
  watch.id = id;
  watch.until = Date.now() + 10 * 60_000;
  $("phone-target").textContent = phone;
  $("phone-panel").hidden = false;
  $("receipt-view").hidden = true;
  pollPhone(watch);
});

otp.addEventListener("otp-approved", (ev) => {
  const { receipt, claims, elapsedMs } = ev.detail;
  const result = $("receipt-view");
  result.hidden = false;
  result.dataset.elapsedMs = String(elapsedMs);
  result.dataset.receipt = "valid";
  $("receipt-check").textContent =
    `Signature valid: the element verified the receipt offline against /.well-known/jwks.json (issuer ${claims.iss}, audience ${claims.aud}).`;
  $("receipt-jwt").textContent = receipt;
  renderClaims(claims);
  // One last look, so that the phone shows the final delivery state; then it rests.
  if (watch) {
    watch.until = 0;
    pollPhone(watch);
  }
});

otp.addEventListener("otp-error", (ev) => {
  if (ev.detail.stage === "receipt") {
    $("receipt-view").hidden = false;
    $("receipt-view").dataset.receipt = "invalid";
    $("receipt-check").className = "notice warn";
    $("receipt-check").textContent = ev.detail.message;
  }
});

async function pollPhone(me) {
  if (me !== watch) return;
  let next = POLL_MS;
  try {
    const r = await fetch(`/_emulator/messages?phone=${encodeURIComponent(me.phone)}`, {
      headers: { accept: "application/json" },
      cache: "no-store",
    });
    if (r.status === 404) {
      // A production configuration has no emulated phone: the SMS goes to the real number.
      $("phone-error").hidden = false;
      $("phone-error").textContent = "This issuer has no emulated phone: the SMS goes to the real number.";
      $("phone-screen").hidden = true;
      $("phone-dev-hint").hidden = true;
      $("phone-title").textContent = "Your phone";
      return;
    }
    if (r.ok) {
      const body = await r.json();
      if (me === watch) renderSms(me, Array.isArray(body) ? body : body?.messages || []);
    } else {
      next = POLL_MS * 3;
    }
  } catch {
    next = POLL_MS * 3;
  }
  if (me === watch && Date.now() < me.until) me.timer = setTimeout(() => pollPhone(me), next);
}

const SMS_STATE = { pending: "Pending", processed: "Handed to the radio", sent: "Sent", delivered: "Delivered", failed: "Failed" };

function renderSms(me, messages) {
  const list = $("sms-list");
  $("sms-empty").hidden = messages.length > 0;
  // The newest SMS of the current verification is the one to read; older ones are dimmed
  // (and hidden on narrow screens, where the panel sits above the code field).
  let newest = null;
  for (const m of messages) if (String(m.id || "").startsWith(`${me.id}.`)) newest = String(m.id);
  for (const m of messages) {
    const key = String(m.id ?? m.text);
    let li = me.known.get(key);
    if (!li) {
      li = document.createElement("li");
      li.className = "sms";
      const text = document.createElement("p");
      text.className = "text";
      text.textContent = String(m.text ?? ""); // untrusted: text only, never HTML
      const metaEl = document.createElement("p");
      metaEl.className = "meta";
      const from = document.createElement("span");
      from.textContent = "otpgate";
      const state = document.createElement("span");
      state.className = "state";
      metaEl.append(from, state);
      li.append(text, metaEl);
      list.append(li);
      me.known.set(key, li);
    }
    const st = String(m.state || "").toLowerCase();
    li.querySelector(".state").textContent = SMS_STATE[st] || m.state || "";
    li.classList.toggle("old", newest !== null && key !== newest);
  }
}

setInterval(() => {
  $("phone-clock").textContent = new Date().toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}, 1000);

// ---------------------------------------------------------------- the receipt's claims

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
      v = `${v} (${new Date(Number(v) * 1000).toLocaleString()})`;
    } else if (typeof v === "object") {
      v = JSON.stringify(v);
    }
    dd.textContent = String(v);
    dd.dataset.claim = k;
    dl.append(dt, dd);
  }
}

customElements.whenDefined("otp-verify").then(() => {
  document.documentElement.dataset.ready = "true";
});
