//! The real `otpgate` binary as a child process: free ports, `otpgate serve` ([`Serve`]
//! with its log in a file, [`Server`] with stderr piped to the test), `otpgate emulator`
//! phones ([`Phone`]), all killed with SIGKILL when asked and on drop.
//!
//! Logs go to files in the test's temporary directory (never to a pipe nobody reads, which
//! would stall a chatty process); they are printed when a start fails.

use std::io::Read as _;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::http::get_within;

/// The `otpgate` binary under test: `CARGO_BIN_EXE_otpgate` (cargo sets it when it runs an
/// integration test of otpgate-server), else `otpgate` beside the test binary's `deps/`.
pub fn otpgate_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("CARGO_BIN_EXE_otpgate") {
        return p.into();
    }
    let mut dir = std::env::current_exe().expect("the test binary's path");
    dir.pop();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let bin = dir.join(format!("otpgate{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.is_file(),
        "the otpgate binary is not at {} (run the tests through `cargo test -p otpgate-server`)",
        bin.display()
    );
    bin
}

/// A free local port (bound then released), never the same one twice in a process: two
/// servers of one test given the same port would answer each other's requests.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if GIVEN
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(port)
        {
            return port;
        }
    }
}

/// The environment variables `otpgate serve` reads that a test must not inherit from the
/// shell running it (a test sets the ones it wants through `env`).
const SERVE_ENV: [&str; 18] = [
    "OTPGATE_CONFIG",
    "OTPGATE_TRUSTED_PROXIES",
    "OTPGATE_TRUST_FORWARDED_FOR",
    "OTPGATE_LISTEN",
    "OTPGATE_DATA_DIR",
    "OTPGATE_STORE",
    "OTPGATE_REDIS_URL",
    "OTPGATE_REDIS_URL_FILE",
    "OTPGATE_REDIS_USERNAME",
    "OTPGATE_REDIS_USERNAME_FILE",
    "OTPGATE_REDIS_PASSWORD",
    "OTPGATE_REDIS_PASSWORD_FILE",
    "OTPGATE_REDIS_SENTINEL_PASSWORD",
    "OTPGATE_REDIS_SENTINEL_PASSWORD_FILE",
    "OTPGATE_RECEIPT_KEY",
    "OTPGATE_CODE_KEY",
    "OTPGATE_POW_KEY",
    "OTPGATE_PSEUDONYM_KEY",
];

/// `otpgate serve --listen 127.0.0.1:PORT [--config CONFIG]` in `cwd`, with a clean
/// environment plus `env`.
fn serve_command(cwd: &Path, config: Option<&Path>, port: u16, env: &[(&str, String)]) -> Command {
    let mut cmd = Command::new(otpgate_bin());
    cmd.arg("serve")
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .current_dir(cwd);
    if let Some(c) = config {
        cmd.arg("--config").arg(c);
    }
    for k in SERVE_ENV {
        cmd.env_remove(k);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// A child process killed (SIGKILL) on drop, its output in `log`.
pub struct Proc {
    /// The child, `None` once killed.
    pub child: Option<Child>,
    /// Its stdout and stderr.
    pub log: PathBuf,
    /// What it is, for messages.
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

    /// Panics, saying what it is, `why` and the tail of its log, once `deadline` has passed.
    pub fn assert_before(&self, deadline: Instant, why: &str) {
        assert!(
            Instant::now() < deadline,
            "{} {why}:\n{}",
            self.what,
            self.log_tail(4000)
        );
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
            self.assert_before(
                deadline,
                &format!("did not listen on {addr} within {within:?}"),
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
    /// The process.
    pub proc: Proc,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The port it listens on.
    pub port: u16,
}

impl Serve {
    /// `otpgate serve --config CONFIG --listen 127.0.0.1:PORT` in `dir`, data dir
    /// `DIR/data`, log appended to `DIR/serve.log`; waits until it listens.
    pub fn start(dir: &Path, config: &Path, port: u16, env: &[(&str, String)]) -> Self {
        let mut all = vec![
            ("OTPGATE_DATA_DIR", dir.join("data").display().to_string()),
            ("OTPGATE_LOG", "warn".to_owned()),
        ];
        all.extend(env.iter().cloned());
        let cmd = serve_command(dir, Some(config), port, &all);
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
    /// The process.
    pub proc: Proc,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The Basic auth password (user `sms`).
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
        let mut cmd = Command::new(otpgate_bin());
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
        let url = format!("{}/_emulator/messages", self.base);
        let v: Value = get_within(http, &url, Duration::from_secs(5)).await;
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

/// A running `otpgate serve` with its stderr piped to the test (stdout discarded),
/// killed on drop.
pub struct Server {
    /// The child; its stderr is a pipe the test may take and read.
    pub child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
}

impl Server {
    /// Starts `otpgate serve --config CONFIG --listen 127.0.0.1:PORT` in `cwd` with `env`,
    /// and waits until `/healthz` answers.
    pub fn start(cwd: &Path, config: Option<&Path>, port: u16, env: &[(&str, String)]) -> Self {
        let mut cmd = serve_command(cwd, config, port, env);
        cmd.stdout(Stdio::null()).stderr(Stdio::piped());
        let child = cmd.spawn().unwrap();
        let mut me = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
        };
        me.wait_healthy();
        me
    }

    fn wait_healthy(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                let mut err = String::new();
                if let Some(mut e) = self.child.stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                panic!("otpgate serve exited early with {status}: {err}");
            }
            if TcpStream::connect(self.base.trim_start_matches("http://")).is_ok() {
                return;
            }
            assert!(Instant::now() < deadline, "otpgate serve did not come up");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL, no chance to flush anything.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes `toml` to `DIR/otpgate.toml` (the config a test starts `otpgate serve` with) and
/// returns that path.
pub fn write_config(dir: &Path, toml: &str) -> PathBuf {
    let config = dir.join("otpgate.toml");
    std::fs::write(&config, toml).unwrap();
    config
}

/// An `otpgate serve` config for the process tests: the frame they share (one app `shop` at
/// `https://shop.example.com`) around each test's own keys, which the test names section by
/// section (`ServeToml { store: ..., ..ServeToml::new(url) }`).
#[derive(Clone, Debug)]
pub struct ServeToml {
    /// `[server] public_url`.
    pub public_url: String,
    /// `[server] danger_discard_sends` (true unless the test sends through gateways).
    pub discard_sends: bool,
    /// More lines after `[server]`'s own (sub-tables such as `[server.tls]` included).
    pub server: String,
    /// The body of `[store]`.
    pub store: String,
    /// The body of `[policy]` (sub-tables such as `[policy.pow]` included).
    pub policy: String,
    /// Sections after `[policy]` (`[audit]`, `[gateways]`, ...).
    pub tail: String,
}

impl ServeToml {
    /// The frame for an issuer at `public_url`, sends discarded, nothing else set.
    pub fn new(public_url: &str) -> Self {
        Self {
            public_url: public_url.to_owned(),
            discard_sends: true,
            server: String::new(),
            store: String::new(),
            policy: String::new(),
            tail: String::new(),
        }
    }

    /// The TOML text.
    pub fn render(&self) -> String {
        let discard = if self.discard_sends {
            "danger_discard_sends = true\n"
        } else {
            ""
        };
        format!(
            "[server]\n{discard}public_url = \"{}\"\n{}\n\n[store]\n{}\n\n\
             [[apps]]\nname = \"shop\"\norigins = [\"https://shop.example.com\"]\n\n\
             [policy]\n{}\n{}\n",
            self.public_url, self.server, self.store, self.policy, self.tail
        )
    }

    /// Writes the config to `DIR/otpgate.toml` ([`write_config`]) and returns that path.
    pub fn write(&self, dir: &Path) -> PathBuf {
        write_config(dir, &self.render())
    }
}
