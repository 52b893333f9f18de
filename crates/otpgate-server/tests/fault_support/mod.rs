//! Shared parts of the fault tests (`fault_*.rs`): real `otpgate serve` / `otpgate emulator`
//! / `redis-server` processes on loopback, killed with SIGKILL when asked (and on drop), an
//! HTTP helper that bounds every request, receipt checks, and the soak scaling knobs.
//!
//! Logs of every process go to files in the test's temporary directory (never to a pipe
//! nobody reads, which would stall a chatty process); they are printed when a start fails.
#![allow(dead_code, missing_docs, unreachable_pub, clippy::unwrap_used)]

use std::collections::HashSet;
use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use otpgate_core::receipt::{Claims, Expectations, Jwks};
use serde_json::Value;

/// The `otpgate` binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_otpgate");

/// A free local port (bound then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

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

/// A child process killed (SIGKILL) on drop, its output in `log`.
pub struct Proc {
    pub child: Option<Child>,
    pub log: PathBuf,
    pub what: String,
}

impl Proc {
    /// Spawns `cmd` with stdout and stderr appended to `log`.
    pub fn spawn(mut cmd: Command, log: &Path, what: &str) -> Self {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        cmd.stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
        Self {
            child: Some(child),
            log: log.to_owned(),
            what: what.to_owned(),
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// The last `n` bytes of the log, for failure messages.
    pub fn log_tail(&self, n: usize) -> String {
        let s = std::fs::read(&self.log).unwrap_or_default();
        String::from_utf8_lossy(&s[s.len().saturating_sub(n)..]).into_owned()
    }

    /// Waits until `addr` accepts TCP connections; panics with the log if the process exits
    /// first or `within` passes.
    pub fn wait_port(&mut self, addr: &str, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                panic!(
                    "{} exited early with {status}:\n{}",
                    self.what,
                    self.log_tail(4000)
                );
            }
            if TcpStream::connect(addr).is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not listen on {addr} within {within:?}:\n{}",
                self.what,
                self.log_tail(4000)
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// SIGKILL: no chance to flush or clean up anything. Returns once it is reaped.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Whether it is still running.
    pub fn alive(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A running `otpgate serve`.
pub struct Serve {
    pub proc: Proc,
    pub base: String,
    pub port: u16,
}

impl Serve {
    /// `otpgate serve --config CONFIG --listen 127.0.0.1:PORT` in `dir`, data dir
    /// `DIR/data`, log appended to `DIR/serve.log`; waits until it listens.
    pub fn start(dir: &Path, config: &Path, port: u16, env: &[(&str, String)]) -> Self {
        let mut cmd = Command::new(BIN);
        cmd.arg("serve")
            .arg("--config")
            .arg(config)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .current_dir(dir);
        for k in [
            "OTPGATE_CONFIG",
            "OTPGATE_LISTEN",
            "OTPGATE_DATA_DIR",
            "OTPGATE_STORE",
            "OTPGATE_REDIS_URL",
            "OTPGATE_RECEIPT_KEY",
            "OTPGATE_CODE_KEY",
            "OTPGATE_POW_KEY",
            "OTPGATE_PSEUDONYM_KEY",
        ] {
            cmd.env_remove(k);
        }
        cmd.env("OTPGATE_DATA_DIR", dir.join("data"))
            .env("OTPGATE_LOG", "warn");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut proc = Proc::spawn(cmd, &dir.join("serve.log"), "otpgate serve");
        proc.wait_port(&format!("127.0.0.1:{port}"), Duration::from_secs(20));
        Self {
            proc,
            base: format!("http://127.0.0.1:{port}"),
            port,
        }
    }

    /// SIGKILL.
    pub fn kill9(&mut self) {
        self.proc.kill9();
    }
}

/// A running `otpgate emulator` (one fake phone).
pub struct Phone {
    pub proc: Proc,
    pub base: String,
    pub password: String,
}

impl Phone {
    /// `otpgate emulator` on `port` with Basic auth `sms:PASSWORD`, webhooks signed with
    /// `signing_key` to `webhook`, `delay_ms` per state change, no Android limit (budgets
    /// are the issuer's business here), and the given failure rate.
    pub fn start(
        dir: &Path,
        name: &str,
        port: u16,
        signing_key: &str,
        webhook: &str,
        delay_ms: u64,
        failure_rate: f64,
    ) -> Self {
        let password = format!("pw-{name}");
        let mut cmd = Command::new(BIN);
        cmd.arg("emulator")
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--username")
            .arg("sms")
            .arg("--password")
            .arg(&password)
            .arg("--signing-key")
            .arg(signing_key)
            .arg("--webhook")
            .arg(webhook)
            .arg("--delay-ms")
            .arg(delay_ms.to_string())
            .arg("--failure-rate")
            .arg(failure_rate.to_string())
            .arg("--limit-per-minute")
            .arg("0")
            .env_remove("OTPGATE_EMULATOR_LISTEN")
            .env_remove("OTPGATE_EMULATOR_PASSWORD")
            .env_remove("OTPGATE_EMULATOR_SIGNING_KEY");
        let mut proc = Proc::spawn(
            cmd,
            &dir.join(format!("emulator-{name}.log")),
            &format!("otpgate emulator {name}"),
        );
        proc.wait_port(&format!("127.0.0.1:{port}"), Duration::from_secs(20));
        Self {
            proc,
            base: format!("http://127.0.0.1:{port}"),
            password,
        }
    }

    /// Turns knobs through the authenticated control API (`POST /_control`).
    pub async fn control(&self, http: &reqwest::Client, patch: Value) {
        let res = http
            .post(format!("{}/_control", self.base))
            .basic_auth("sms", Some(&self.password))
            .json(&patch)
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .unwrap();
        assert!(
            res.status().is_success(),
            "control {patch}: {}",
            res.status()
        );
    }

    /// What this phone "sent" (`GET /_emulator/messages`): `(message id, phone, text)`.
    pub async fn outbox(&self, http: &reqwest::Client) -> Vec<(String, String, String)> {
        let v: Value = http
            .get(format!("{}/_emulator/messages", self.base))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v.as_array()
            .or_else(|| v["messages"].as_array())
            .unwrap_or_else(|| panic!("outbox shape: {v}"))
            .iter()
            .map(|m| {
                (
                    m["id"].as_str().unwrap_or_default().to_owned(),
                    m["phone"].as_str().unwrap_or_default().to_owned(),
                    m["text"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    }
}

/// `redis-server` from PATH; a clear failure when it is missing.
pub fn redis_server_bin() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let p = dir.join("redis-server");
        if p.is_file() {
            return p;
        }
    }
    panic!(
        "redis-server is not on PATH: the Redis fault tests start their own server \
         (install it: apt-get install redis-server)"
    );
}

/// A private `redis-server` on a fixed port (so it can be restarted where the issuer
/// expects it), with its files in `dir`.
pub struct Redis {
    pub port: u16,
    pub url: String,
    pub dir: PathBuf,
    pub args: Vec<String>,
    pub proc: Option<Proc>,
}

impl Redis {
    /// Starts it. `persistence`: extra arguments (`--appendonly yes ...`); none = a cache
    /// (`--save "" --appendonly no`).
    pub fn start(dir: &Path, persistence: &[&str]) -> Self {
        let port = free_port();
        let mut args: Vec<String> = vec![
            "--port".into(),
            port.to_string(),
            "--bind".into(),
            "127.0.0.1".into(),
            "--dir".into(),
            dir.display().to_string(),
            "--save".into(),
            String::new(),
            "--daemonize".into(),
            "no".into(),
        ];
        if persistence.is_empty() {
            args.extend(["--appendonly".into(), "no".into()]);
        } else {
            args.extend(persistence.iter().map(|s| (*s).to_owned()));
        }
        let mut me = Self {
            port,
            url: format!("redis://127.0.0.1:{port}/"),
            dir: dir.to_owned(),
            args,
            proc: None,
        };
        me.restart();
        me
    }

    /// Starts the server again on the same port and waits until it answers PING (and has
    /// loaded its data).
    pub fn restart(&mut self) {
        assert!(self.proc.is_none(), "redis is already running");
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let mut cmd = Command::new(redis_server_bin());
            cmd.args(&self.args);
            let mut p = Proc::spawn(cmd, &self.dir.join("redis.log"), "redis-server");
            // The port may still be held by the killed server's sockets for a moment.
            let up = Instant::now() + Duration::from_secs(5);
            while Instant::now() < up && p.alive() {
                if self.command("PING").is_some_and(|r| r.starts_with("+PONG")) {
                    self.proc = Some(p);
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            p.kill9();
            assert!(
                Instant::now() < deadline,
                "redis-server did not come up on {}:\n{}",
                self.port,
                p.log_tail(3000)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// SIGKILL: whatever was not yet on disk is lost.
    pub fn kill9(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill9();
        }
    }

    /// Sends one inline command; the first reply line, or `None` when it cannot connect.
    pub fn command(&self, line: &str) -> Option<String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        s.write_all(format!("{line}\r\n").as_bytes()).ok()?;
        let mut buf = [0u8; 512];
        let n = s.read(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// One HTTP answer.
#[derive(Clone, Debug)]
pub struct Answer {
    pub status: u16,
    pub retry_after: Option<String>,
    pub body: Value,
    pub took: Duration,
}

impl Answer {
    /// The error code of the one error shape, or "".
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
}

/// A client for many concurrent requests on loopback.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        .no_proxy()
        .build()
        .unwrap()
}

/// Sends `req` under `bound`: `Err` for a transport error (including the bound passing).
pub async fn send(req: reqwest::RequestBuilder, bound: Duration) -> Result<Answer, reqwest::Error> {
    let t = Instant::now();
    let res = req.timeout(bound).send().await?;
    let status = res.status().as_u16();
    let retry_after = res
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let bytes = res.bytes().await?;
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Ok(Answer {
        status,
        retry_after,
        body,
        took: t.elapsed(),
    })
}

/// The JWKS an issuer publishes.
pub async fn jwks(http: &reqwest::Client, base: &str) -> Jwks {
    http.get(format!("{base}/.well-known/jwks.json"))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
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
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let expect = Expectations {
        audience,
        issuer,
        now,
        leeway: 60,
    };
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
    let out = Command::new(BIN)
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

/// The `[policy]` tail shared by the fault configs: budgets far above any real deployment
/// (these tests are about faults, not limits), PoW off, NANP numbers allowed.
pub const OPEN_POLICY: &str = r#"
[policy.budgets]
phone = { limit = 1000000, window_secs = 600 }
phone_daily = { limit = 1000000, window_secs = 86400 }
ip = { limit = 100000000, window_secs = 600 }
prefix = { limit = 100000000, window_secs = 600 }
global = { limit = 100000000, window_secs = 60 }
check_ip = { limit = 100000000, window_secs = 600 }

[policy.pow]
enabled = false
"#;
