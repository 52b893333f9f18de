//! The official JS client (npm `android-sms-gateway` 3.x) against the emulator, unchanged.
//!
//! Needs Node and the package; point `OTPGATE_SMSGATE_NPM` at its `dist/index.js`:
//! ```sh
//! npm i --prefix /tmp/sg android-sms-gateway@3
//! OTPGATE_SMSGATE_NPM=/tmp/sg/node_modules/android-sms-gateway/dist/index.js \
//!   cargo test -p otpgate-server --test gateway emulator_npm_client
//! ```
//! Without it the test says so and passes (the emulator's wire format is covered by
//! `emulator_api.rs` either way).
#![allow(missing_docs)]

use otpgate_server::emulator::{Emulator, EmulatorConfig, Knobs};
use otpgate_test_support::rig::serve_phone;

const SCRIPT: &str = r#"
const [,, lib, base] = process.argv;
const { default: Client } = await import(lib);
const http = {
  async call(method, url, body, headers) {
    const r = await fetch(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    const text = await r.text();
    if (!r.ok) { const e = new Error(`HTTP ${r.status} ${text}`); e.status = r.status; throw e; }
    return text ? JSON.parse(text) : undefined;
  },
  get(url, headers) { return this.call("GET", url, undefined, headers); },
  post(url, body, headers) { return this.call("POST", url, body, headers); },
  put(url, body, headers) { return this.call("PUT", url, body, headers); },
  patch(url, body, headers) { return this.call("PATCH", url, body, headers); },
  delete(url, headers) { return this.call("DELETE", url, undefined, headers); },
};
const assert = (c, m) => { if (!c) { console.error("FAIL: " + m); process.exit(1); } };
for (const prefix of ["", "/3rdparty/v1"]) {
  const c = new Client("sms", "npm-pass", http, base + prefix);
  const id = "npm-" + (prefix ? "cloud" : "local");
  const st = await c.send({ id, message: "Your code is 123456", phoneNumbers: ["+14155550123"], ttl: 300, priority: 100 });
  assert(st.id === id && st.state === "Pending", "send: " + JSON.stringify(st));
  let dup = null;
  try { await c.send({ id, message: "again", phoneNumbers: ["+14155550123"] }); } catch (e) { dup = e.status; }
  assert(dup === 409, "duplicate id gives 409, got " + dup);
  let state;
  for (let i = 0; i < 100; i++) { state = await c.getState(id); if (state.state === "Delivered") break; await new Promise(r => setTimeout(r, 20)); }
  assert(state.state === "Delivered", "state: " + JSON.stringify(state));
  assert(state.recipients[0].phoneNumber === "+14155550123", "recipient");
  const local = await c.send({ message: "x", phoneNumbers: ["89161234567"] }, { skipPhoneValidation: true });
  assert(local.recipients[0].phoneNumber === "89161234567", "skipPhoneValidation");
  const hook = await c.registerWebhook({ url: "http://127.0.0.1:9/hook", event: "sms:delivered" });
  assert(typeof hook.id === "string", "webhook id");
  const hooks = await c.getWebhooks();
  assert(hooks.some(h => h.id === hook.id), "webhook listed");
  await c.deleteWebhook(hook.id);
  assert(!(await c.getWebhooks()).some(h => h.id === hook.id), "webhook deleted");
  const health = await c.getHealth();
  assert(health.status === "pass", "health");
  const devices = await c.getDevices();
  assert(Array.isArray(devices) && devices.length === 1, "devices");
  await c.exportInbox({ deviceId: devices[0].id, since: new Date(0), until: new Date() });
  assert(Array.isArray(await c.getLogs(new Date(0), new Date())), "logs");
}
let unauth = null;
try { await new Client("sms", "wrong", http, base).getState("npm-local"); } catch (e) { unauth = e.status; }
assert(unauth === 401, "bad password gives 401");
console.log("OK");
"#;

#[tokio::test]
async fn the_official_js_client_works_unchanged() {
    let Ok(lib) = std::env::var("OTPGATE_SMSGATE_NPM") else {
        eprintln!("skipped: set OTPGATE_SMSGATE_NPM to android-sms-gateway's dist/index.js");
        return;
    };
    let mut cfg = EmulatorConfig::new("sms", Some("npm-pass".into()), None);
    cfg.knobs = Knobs {
        delay_ms: 10,
        ..Knobs::default()
    };
    let emu = Emulator::new(cfg);
    let base = serve_phone(&emu).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let script = dir.path().join("client.mjs");
    std::fs::write(&script, SCRIPT).expect("write");
    let out = tokio::process::Command::new("node")
        .arg(&script)
        .arg(&lib)
        .arg(&base)
        .output()
        .await
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("OK"),
        "stdout: {stdout}\nstderr: {stderr}"
    );
}
