//! Token auth for cloud/private sms-gate.app servers (issue 20 item 2, `auth = "token"`),
//! against the emulator served over HTTP, which issues, checks, refreshes and revokes JWTs
//! as the real server does (`android-sms-gateway/server` `internal/sms-gateway/jwt`):
//! sends work with a JWT; it is renewed before it expires (a 2 s token, sends across
//! several renewals, no call ever refused); an expired or revoked token gets one retry with
//! a fresh one; the token's scopes are only what otpgate calls; the password is used to
//! obtain a token, never on a message; the real `otpgate serve` never logs a token.
#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use otpgate_core::wire::DeliveryState;
use otpgate_server::clock::{Clock, ManualClock, SystemClock};
use otpgate_server::emulator::{AuthSeen, Emulator, EmulatorConfig, Knobs};
use otpgate_server::gateway::adapter::TOKEN_SCOPES;
use otpgate_server::gateway::config::AuthMode;
use otpgate_server::gateway::{
    DeviceConfig, Dispatcher, GatewaysConfig, Kind, LiteralSecrets, Mode, Pool, Secret, SendJob,
};
use otpgate_server::store::Store;
use otpgate_test_support::http::{client, get_json, start};
use otpgate_test_support::process::{Serve, ServeToml, free_port};
use otpgate_test_support::rig::{
    delivery_state, memory_pool, pending_record, send_job, serve_phone,
};
use serde_json::{Value, json};

const KEY: &str = "a-strong-signing-key-0123456789abcdef";
const PASSWORD: &str = "the-account-password";

fn phone(access_ttl_secs: u64, clock: Arc<dyn Clock>) -> Arc<Emulator> {
    let mut cfg = EmulatorConfig::new("acct", Some(PASSWORD.into()), Some(KEY.into()));
    cfg.knobs = Knobs {
        delay_ms: 10,
        webhook_retry_base_ms: 50,
        jwt_access_ttl_secs: access_ttl_secs,
        ..Knobs::default()
    };
    cfg.clock = clock;
    Emulator::new(cfg)
}

/// A cloud-mode device on the emulator at `url` with token auth.
fn token_device(url: &str) -> DeviceConfig {
    let mut d = DeviceConfig::new("cloud", Kind::SmsGate, Some(url.to_owned()));
    d.mode = Mode::Cloud;
    // The emulated private server listens on plain loopback HTTP.
    d.danger_allow_http = true;
    d.auth = AuthMode::Token;
    d.username = Some("acct".into());
    d.with_secrets(LiteralSecrets {
        password: Some(Secret::new(PASSWORD)),
        ..LiteralSecrets::default()
    })
}

struct Rig {
    pool: Arc<Pool>,
    store: Arc<dyn Store>,
    emu: Arc<Emulator>,
    url: String,
}

async fn rig(emu: Arc<Emulator>) -> Rig {
    let url = serve_phone(&emu).await;
    let mut cfg = GatewaysConfig::default().with_signing_key(KEY);
    cfg.devices = vec![token_device(&url)];
    // No webhooks on this phone: the state comes back by polling (GET /messages/{id}).
    cfg.poll_interval_secs = 1;
    cfg.validate().unwrap();
    let (pool, store) = memory_pool(cfg);
    Rig {
        pool,
        store,
        emu,
        url,
    }
}

impl Rig {
    async fn job(&self, n: u32) -> SendJob {
        let vid = format!("v_{n:0>22}");
        let now = SystemClock.now_ms();
        let rec = pending_record(&vid, "+447911123456", 1, now, 120_000);
        self.store.create(&rec).await.unwrap();
        send_job(&rec, "123456 is your code")
    }

    /// Dispatches job `n` and waits until the phone reports it delivered.
    async fn send_delivered(&self, n: u32) {
        let job = self.job(n).await;
        self.pool.dispatch(job.clone()).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let s = delivery_state(&self.store, &job.verification_id).await;
            if s == DeliveryState::Delivered {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "send {n} not delivered ({s:?}); calls: {:#?}",
                self.emu.auth_log()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    fn calls(&self, method: &str, path: &str) -> Vec<AuthSeen> {
        self.emu
            .auth_log()
            .into_iter()
            // `/messages` exactly; `/messages/` any message under it.
            .filter(|c| {
                c.method == method
                    && (c.path.ends_with(path) || (path.ends_with('/') && c.path.contains(path)))
            })
            .collect()
    }

    fn basic_calls(&self) -> Vec<AuthSeen> {
        self.emu
            .auth_log()
            .into_iter()
            .filter(|c| c.scheme == "basic")
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_auth_sends_and_renews_before_expiry_without_the_password() {
    // The server caps tokens at 2 s: sends over ~6 s span several renewals.
    let r = rig(phone(2, Arc::new(SystemClock))).await;
    for n in 0..8 {
        r.send_delivered(n).await;
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    let log = r.emu.auth_log();
    // The password went out once, to obtain the first token; never with a message.
    let basic = r.basic_calls();
    assert_eq!(basic.len(), 1, "{basic:#?}");
    assert_eq!(
        (basic[0].method.as_str(), basic[0].status),
        ("POST", 201),
        "{basic:#?}"
    );
    assert!(basic[0].path.ends_with("/auth/token"), "{basic:#?}");
    let sends = r.calls("POST", "/messages");
    assert_eq!(sends.len(), 8, "{log:#?}");
    assert!(
        sends
            .iter()
            .all(|c| c.scheme == "bearer" && c.status == 202),
        "{sends:#?}"
    );
    let polls = r.calls("GET", "/messages/");
    assert!(!polls.is_empty(), "{log:#?}");
    assert!(
        polls
            .iter()
            .all(|c| c.scheme == "bearer" && c.status == 200),
        "{polls:#?}"
    );
    // Renewed with the refresh token, before expiry: no call was ever refused.
    let refreshes = r.calls("POST", "/auth/token/refresh");
    assert!(refreshes.len() >= 2, "{log:#?}");
    assert!(refreshes.iter().all(|c| c.status == 201), "{refreshes:#?}");
    assert!(
        log.iter().all(|c| c.status != 401 && c.status != 403),
        "{log:#?}"
    );
    // Every access token carried exactly otpgate's scopes and lived the server's 2 s at most.
    let tokens = r.emu.issued_tokens();
    assert_eq!(
        tokens.iter().filter(|t| !t.refresh).count(),
        refreshes.len() + 1
    );
    for t in tokens.iter().filter(|t| !t.refresh) {
        assert_eq!(t.scopes, TOKEN_SCOPES, "{t:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_or_expired_token_gets_one_retry_with_a_fresh_one() {
    let clock = ManualClock::new(SystemClock.now_ms());
    let r = rig(phone(900, Arc::new(clock.clone()))).await;
    r.send_delivered(1).await;
    assert_eq!(r.basic_calls().len(), 1);

    // The account owner revokes every token (the refresh token with them).
    assert_eq!(r.emu.revoke_all_tokens(), 2);
    r.send_delivered(2).await;
    let sends = r.calls("POST", "/messages");
    assert_eq!(
        sends.iter().map(|c| c.status).collect::<Vec<_>>(),
        [202, 401, 202],
        "{sends:#?}"
    );
    // The revoked refresh token was refused, so the password obtained a new token: once.
    let refreshes = r.calls("POST", "/auth/token/refresh");
    assert_eq!(
        refreshes.iter().map(|c| c.status).collect::<Vec<_>>(),
        [401]
    );
    assert_eq!(r.basic_calls().len(), 2, "{:#?}", r.emu.auth_log());

    // The server's clock runs an hour ahead: the token expired there though otpgate thought
    // it good for 15 min. One 401, a refresh (the refresh token lives 30 days), one retry.
    clock.advance(3_600_000);
    r.send_delivered(3).await;
    let sends = r.calls("POST", "/messages");
    assert_eq!(
        sends.iter().map(|c| c.status).collect::<Vec<_>>(),
        [202, 401, 202, 401, 202],
        "{sends:#?}"
    );
    let refreshes = r.calls("POST", "/auth/token/refresh");
    assert_eq!(
        refreshes.iter().map(|c| c.status).collect::<Vec<_>>(),
        [401, 201]
    );
    assert_eq!(r.basic_calls().len(), 2, "no password needed to refresh");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_retry_is_not_retried_again() {
    let r = rig(phone(900, Arc::new(SystemClock))).await;
    r.send_delivered(1).await;
    // The server turns token auth off: bearers get 401, /auth/* 501.
    let mut k = r.emu.knobs();
    k.jwt_enabled = false;
    r.emu.set_knobs(k);
    let job = r.job(2).await;
    let _ = r.pool.dispatch(job.clone()).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sends = r.calls("POST", "/messages");
    let basic = r.basic_calls();
    let refreshes = r.calls("POST", "/auth/token/refresh");
    // Each attempt of the pool: one refused call, one try to refresh, one to obtain a token
    // with the password (501: disabled), and no second call without a fresh token.
    assert!(sends.len() >= 2, "{sends:#?}");
    assert_eq!(sends[0].status, 202);
    assert!(sends[1..].iter().all(|c| c.status == 401), "{sends:#?}");
    assert_eq!(refreshes.len(), sends.len() - 1, "{refreshes:#?}");
    assert!(refreshes.iter().all(|c| c.status == 401), "{refreshes:#?}");
    assert_eq!(basic.len() - 1, sends.len() - 1, "{basic:#?}");
    assert!(basic[1..].iter().all(|c| c.status == 501), "{basic:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_has_only_the_scopes_otpgate_calls() {
    let r = rig(phone(900, Arc::new(SystemClock))).await;
    r.send_delivered(1).await;
    let tokens = r.emu.issued_tokens();
    let access = tokens.iter().find(|t| !t.refresh).unwrap();
    let refresh = tokens.iter().find(|t| t.refresh).unwrap();
    assert_eq!(access.scopes, ["messages:send", "messages:read"]);
    let api = format!("{}/3rdparty/v1", r.url);
    let http = client();
    let call = |method: reqwest::Method, path: &str, bearer: &str, body: Option<Value>| {
        let mut rb = http
            .request(method, format!("{api}{path}"))
            .bearer_auth(bearer);
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        async move {
            let res = rb.send().await.unwrap();
            let status = res.status().as_u16();
            (status, res.text().await.unwrap())
        }
    };
    let msg =
        json!({"id": "scoped-1", "textMessage": {"text": "hi"}, "phoneNumbers": ["+447911123456"]});
    // What otpgate calls works with its token.
    let (s, _) = call(reqwest::Method::POST, "/messages", &access.token, Some(msg)).await;
    assert_eq!(s, 202);
    let (s, _) = call(
        reqwest::Method::GET,
        "/messages/scoped-1",
        &access.token,
        None,
    )
    .await;
    assert_eq!(s, 200);
    let (s, _) = call(reqwest::Method::GET, "/health", &access.token, None).await;
    assert_eq!(s, 200);
    // Everything else is refused with 403 naming the scope.
    for (method, path, body, scope) in [
        (reqwest::Method::GET, "/messages", None, "messages:list"),
        (
            reqwest::Method::DELETE,
            "/messages/scoped-1",
            None,
            "messages:cancel",
        ),
        (reqwest::Method::GET, "/webhooks", None, "webhooks:list"),
        (
            reqwest::Method::POST,
            "/webhooks",
            Some(json!({"url": "https://example.com/h", "event": "sms:sent"})),
            "webhooks:write",
        ),
        (
            reqwest::Method::DELETE,
            "/webhooks/x",
            None,
            "webhooks:delete",
        ),
        (reqwest::Method::GET, "/devices", None, "devices:list"),
        (reqwest::Method::GET, "/settings", None, "settings:read"),
        (
            reqwest::Method::PATCH,
            "/settings",
            Some(json!({"messages": {"limit_value": 1}})),
            "settings:write",
        ),
        (reqwest::Method::GET, "/logs", None, "logs:read"),
        (reqwest::Method::GET, "/inbox", None, "inbox:list"),
        (
            reqwest::Method::POST,
            "/auth/token",
            Some(json!({"ttl": 60, "scopes": ["all:any"]})),
            "tokens:manage",
        ),
        (
            reqwest::Method::DELETE,
            "/auth/token/x",
            None,
            "tokens:manage",
        ),
        (
            reqwest::Method::POST,
            "/auth/token/refresh",
            None,
            "tokens:refresh",
        ),
    ] {
        let (s, body) = call(method.clone(), path, &access.token, body).await;
        assert_eq!(s, 403, "{method} {path}: {body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            v["message"],
            format!("scope required: {scope}"),
            "{method} {path}"
        );
    }
    // The refresh token is good for refreshing only.
    let (s, _) = call(
        reqwest::Method::GET,
        "/messages/scoped-1",
        &refresh.token,
        None,
    )
    .await;
    assert_eq!(s, 403);
    // A forged or tampered token is no credential at all.
    let mut forged = access.token.clone();
    forged.replace_range(forged.len() - 2.., "AA");
    let (s, _) = call(reqwest::Method::GET, "/messages/scoped-1", &forged, None).await;
    assert_eq!(s, 401);
    // Basic still opens everything (the account's own credentials).
    let s = http
        .get(format!("{api}/webhooks"))
        .basic_auth("acct", Some(PASSWORD))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(s.as_u16(), 200);
}

#[test]
fn token_auth_config_is_validated() {
    let parse = |device: &str| -> Result<(), String> {
        let text = format!(
            "[[devices]]\nname = \"c\"\nkind = \"sms-gate\"\nurl = \"https://api.sms-gate.app\"\n{device}"
        );
        let cfg: GatewaysConfig = toml::from_str(&text).map_err(|e| e.to_string())?;
        cfg.validate()
    };
    let ok = "mode = \"cloud\"\nauth = \"token\"\nusername = \"u\"\npassword_env = \"P\"\n";
    assert_eq!(parse(ok), Ok(()));
    // The default is the credentials as given.
    let cfg: GatewaysConfig = toml::from_str(
        "[[devices]]\nname = \"c\"\nkind = \"sms-gate\"\nurl = \"https://x\"\nusername = \"u\"\npassword_env = \"P\"\n",
    )
    .unwrap();
    assert_eq!(cfg.devices[0].auth, AuthMode::Basic);
    for (device, says) in [
        (
            "mode = \"local\"\nauth = \"token\"\nusername = \"u\"\npassword_env = \"P\"\n",
            "gateways.devices[0].auth: \"token\" is for kind = \"sms-gate\" with mode = \"cloud\"",
        ),
        (
            "mode = \"cloud\"\nauth = \"token\"\ntoken_env = \"T\"\n",
            "gateways.devices[0].username: auth = \"token\" needs username and password_env",
        ),
        (
            "mode = \"cloud\"\nauth = \"token\"\nusername = \"u\"\npassword_env = \"P\"\ntoken_env = \"T\"\n",
            "gateways.devices[0].token_env: not with auth = \"token\"",
        ),
    ] {
        let e = parse(device).unwrap_err();
        assert!(e.starts_with(says), "{e}");
    }
    assert!(parse("mode = \"cloud\"\nauth = \"jwt\"\n").is_err());
}

/// The real issuer with `auth = "token"`: codes reach the phone, the password went out once,
/// and neither a token nor the password appears in its log, at debug level.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otpgate_serve_uses_tokens_and_never_logs_them() {
    let dir = tempfile::tempdir().unwrap();
    let emu = phone(2, Arc::new(SystemClock));
    let url = serve_phone(&emu).await;
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let config = ServeToml {
        discard_sends: false,
        policy: "[policy.pow]\nenabled = false\n".into(),
        tail: format!(
            "[gateways]\npoll_interval_secs = 1\n\n[[gateways.devices]]\nname = \"cloud\"\n\
             kind = \"sms-gate\"\nurl = \"{url}\"\nmode = \"cloud\"\ndanger_allow_http = true\n\
             auth = \"token\"\nusername = \"acct\"\npassword_env = \"PW\"\nsigning_key_env = \"KEY\"\n"
        ),
        ..ServeToml::new(&base)
    }
    .write(dir.path());
    let env = [
        ("PW", PASSWORD.to_owned()),
        ("KEY", KEY.to_owned()),
        ("OTPGATE_LOG", "debug".to_owned()),
    ];
    let server = Serve::start(dir.path(), &config, port, &env);
    for (i, number) in ["+447400900121", "+447400900122", "+447400900123"]
        .iter()
        .enumerate()
    {
        let (status, body) = start(&client(), &server.base, number).await;
        assert_eq!(status, 201, "{body}");
        let id = body["id"].as_str().unwrap();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let v = get_json(&client(), &format!("{}/v1/verifications/{id}", server.base)).await;
            if v["delivery"]["state"] == "delivered" {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{i}: not delivered: {v}\n{}",
                server.proc.log_tail(30)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(emu.sent(Some(number)).len(), 1);
        // Past the 2 s token's renewal point before the next code.
        tokio::time::sleep(Duration::from_millis(1_200)).await;
    }
    let log = emu.auth_log();
    let basic: Vec<_> = log.iter().filter(|c| c.scheme == "basic").collect();
    assert_eq!(basic.len(), 1, "{log:#?}");
    assert!(
        log.iter()
            .filter(|c| c.method == "POST" && c.path.ends_with("/messages"))
            .all(|c| c.scheme == "bearer" && c.status == 202),
        "{log:#?}"
    );
    let tokens = emu.issued_tokens();
    assert!(tokens.len() >= 4, "renewed at least once: {tokens:#?}");
    let text = std::fs::read_to_string(dir.path().join("serve.log")).unwrap();
    assert!(
        text.contains("DEBUG") || text.contains("debug"),
        "debug logging on:\n{text}"
    );
    for t in &tokens {
        assert!(!text.contains(&t.token), "a token was logged");
        // Not even its signature (the part that makes it a credential).
        let sig = t.token.rsplit('.').next().unwrap();
        assert!(!text.contains(sig), "a token's signature was logged");
    }
    assert!(!text.contains(PASSWORD), "the password was logged");
}
