//! `redis-server` for tests: [`TestRedis`] (the shared `OTPGATE_TEST_REDIS_URL` server or a
//! spawned one, no files) and [`Redis`] (a private server with its files in a directory,
//! killed and restarted by the fault tests).

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::process::{Proc, free_port};

/// A Redis server for tests: `OTPGATE_TEST_REDIS_URL` when set, otherwise a
/// `redis-server` child on a free port (no persistence), killed on drop. Panics with a
/// clear message when neither is possible: Redis tests never skip silently.
#[derive(Debug)]
pub struct TestRedis {
    /// The URL to connect to.
    pub url: String,
    port: u16,
    child: Option<Child>,
}

impl TestRedis {
    /// The shared server of `OTPGATE_TEST_REDIS_URL`, or a spawned one.
    pub fn start() -> Self {
        match std::env::var("OTPGATE_TEST_REDIS_URL") {
            Ok(url) if !url.is_empty() => Self {
                url,
                port: 0,
                child: None,
            },
            _ => Self::spawn(),
        }
    }

    /// Always a spawned server of its own (tests that stop and restart it).
    pub fn spawn() -> Self {
        let port = free_port();
        let mut me = Self {
            url: format!("redis://127.0.0.1:{port}/"),
            port,
            child: None,
        };
        me.restart();
        me
    }

    /// Stops the spawned server (SIGKILL); its data is gone.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the spawned server again on the same port and waits until it answers.
    pub fn restart(&mut self) {
        assert!(
            self.port != 0,
            "cannot restart the external OTPGATE_TEST_REDIS_URL server"
        );
        self.stop();
        let bin =
            std::env::var("OTPGATE_TEST_REDIS_SERVER").unwrap_or_else(|_| "redis-server".into());
        let child = Command::new(&bin)
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "Redis tests need a server: set OTPGATE_TEST_REDIS_URL or install redis-server \
                     (spawning `{bin}` failed: {e})"
                )
            });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if Self::answers(self.port) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "redis-server on port {} did not answer within 10 s",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn answers(port: u16) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
        let mut buf = [0u8; 7];
        s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        self.stop();
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
    /// The port it listens on.
    pub port: u16,
    /// `redis://127.0.0.1:PORT/`.
    pub url: String,
    /// Its working directory (data files, log).
    pub dir: PathBuf,
    /// Its command line.
    pub args: Vec<String>,
    /// The process while it runs.
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
            p.assert_before(deadline, &format!("did not come up on {}", self.port));
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
