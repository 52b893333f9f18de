//! The fault tests' shared parts: soak scaling knobs, the open `[policy]` of their configs,
//! and the checks they end with (receipts unique and valid, audit log intact, no approval
//! written twice).

use std::collections::HashSet;
use std::path::Path;
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use otpgate_core::receipt::{Claims, Expectations, Jwks};
use serde_json::Value;

use crate::process::{ServeToml, otpgate_bin};

/// Whether the long (soak) variants were asked for: `OTPGATE_SOAK=1`.
pub fn soak() -> bool {
    std::env::var("OTPGATE_SOAK").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// A count knob: the environment variable `name` when set, else `soak_default` under
/// `OTPGATE_SOAK=1`, else `ci_default`.
pub fn knob(name: &str, ci_default: usize, soak_default: usize) -> usize {
    match std::env::var(name).ok().and_then(|v| v.parse().ok()) {
        Some(v) => v,
        None if soak() => soak_default,
        None => ci_default,
    }
}

/// Milliseconds since `t`, for the timing lines the tests print.
pub fn ms(t: Instant) -> u128 {
    t.elapsed().as_millis()
}

/// What a receipt must show now (Unix seconds from the system clock), within `leeway`
/// seconds.
pub fn expectations<'a>(audience: &'a str, issuer: &'a str, leeway: i64) -> Expectations<'a> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    Expectations {
        audience,
        issuer,
        now,
        leeway,
    }
}

/// Verifies one receipt against `jwks` now (5 s leeway); returns its claims, panics when it
/// does not verify.
pub fn verify_receipt(receipt: &str, jwks: &Jwks, audience: &str, issuer: &str) -> Claims {
    otpgate_core::receipt::verify(receipt, jwks, &expectations(audience, issuer, 5))
        .unwrap_or_else(|e| panic!("the receipt does not verify: {e:?}"))
}

/// Checks that no verification was approved twice: each receipt's `jti` (= the verification
/// id) is unique. The signatures of the first 25 (and of every receipt under
/// `OTPGATE_SOAK=1`) are verified against `jwks` (Ed25519 in a debug build costs tens of
/// milliseconds each on a loaded machine); the claims of the others are read unverified.
/// Returns the claims.
pub fn receipts_unique(
    receipts: &[(String, String)],
    jwks: &Jwks,
    audience: &str,
    issuer: &str,
) -> Vec<Claims> {
    use base64::Engine as _;
    let expect = expectations(audience, issuer, 60);
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (i, (id, jwt)) in receipts.iter().enumerate() {
        let claims = if i < 25 || soak() {
            otpgate_core::receipt::verify(jwt, jwks, &expect)
                .unwrap_or_else(|e| panic!("receipt for {id} does not verify: {e:?}"))
        } else {
            let payload = jwt.split('.').nth(1).expect("a compact JWT");
            let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(payload)
                .expect("base64url payload");
            let claims: Claims = serde_json::from_slice(&bytes).expect("receipt claims");
            assert_eq!(claims.aud, audience);
            assert_eq!(claims.iss, issuer);
            claims
        };
        assert_eq!(&claims.jti, id, "receipt jti is the verification id");
        assert!(
            seen.insert(claims.jti.clone()),
            "verification {} approved twice (two receipts)",
            claims.jti
        );
        out.push(claims);
    }
    out
}

/// `otpgate audit verify --file FILE` must exit 0; returns its output.
pub fn audit_verify(file: &Path) -> String {
    let out = Command::new(otpgate_bin())
        .args(["audit", "verify", "--file"])
        .arg(file)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "otpgate audit verify --file {} failed: {text}",
        file.display()
    );
    text
}

/// The verification ids of every `check.approved` line of an audit log; panics if one id
/// appears twice (an approval written twice).
pub fn audit_approvals_unique(file: &Path) -> HashSet<String> {
    let text = std::fs::read_to_string(file).unwrap();
    let mut seen = HashSet::new();
    for line in text.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        if v["kind"] == "check.approved" {
            let id = v["verification_id"].as_str().unwrap().to_owned();
            assert!(seen.insert(id.clone()), "the audit log approves {id} twice");
        }
    }
    seen
}

/// The `[policy]` tail shared by the fault configs and the issuer benchmark
/// (`open-policy.toml`): budgets far above any real deployment (these tests are about
/// faults, not limits), PoW off.
pub const OPEN_POLICY: &str = include_str!("../open-policy.toml");

/// The frame of the fault tests' configs: the issuer at `issuer` with `store` as the body of
/// `[store]`, NANP numbers allowed, `policy` as more `[policy]` keys, then [`OPEN_POLICY`].
pub fn open_config(issuer: &str, store: String, policy: &str) -> ServeToml {
    ServeToml {
        store,
        policy: format!("allowed_regions = [\"US\"]\n{policy}\n{OPEN_POLICY}"),
        ..ServeToml::new(issuer)
    }
}

/// What a fault test's workers met that they should not have (an answer outside the
/// documented ones), gathered while the load runs and asserted empty at the end.
#[derive(Debug, Default)]
pub struct Unexpected(Mutex<Vec<String>>);

impl Unexpected {
    /// Notes one.
    pub fn note(&self, what: String) {
        self.0.lock().unwrap().push(what);
    }

    /// All noted so far.
    pub fn all(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }

    /// Panics with `what` and the list unless nothing was noted.
    pub fn assert_none(&self, what: &str) {
        let all = self.all();
        assert!(all.is_empty(), "{what}: {all:#?}");
    }
}

/// Spawns `n` load workers, the `i`th as `worker(http, base, i)` with its own handle on the
/// client and its own copy of the issuer's base URL.
pub fn spawn_workers<F, Fut>(
    n: usize,
    http: &reqwest::Client,
    base: &str,
    worker: F,
) -> Vec<tokio::task::JoinHandle<()>>
where
    F: Fn(reqwest::Client, String, usize) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    (0..n)
        .map(|i| tokio::spawn(worker(http.clone(), base.to_owned(), i)))
        .collect()
}

/// Tells the workers to stop (`stop`) and waits for each; panics if one panicked.
pub async fn stop_workers(stop: &AtomicBool, workers: Vec<tokio::task::JoinHandle<()>>) {
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
}
