//! Runs the real `otpgate` binary for the serve tests.
#![allow(dead_code, missing_docs, unreachable_pub, clippy::unwrap_used)]

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free local port (bound then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `otpgate serve`, killed on drop.
pub struct Server {
    pub child: Child,
    pub base: String,
}

impl Server {
    /// Starts `otpgate serve --config CONFIG --listen 127.0.0.1:PORT` in `cwd` with `env`,
    /// and waits until `/healthz` answers.
    pub fn start(cwd: &Path, config: Option<&Path>, port: u16, env: &[(&str, String)]) -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_otpgate"));
        cmd.arg("serve")
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .current_dir(cwd);
        if let Some(c) = config {
            cmd.arg("--config").arg(c);
        }
        cmd.env_remove("OTPGATE_CONFIG")
            .env_remove("OTPGATE_LISTEN")
            .env_remove("OTPGATE_DATA_DIR");
        for (k, v) in env {
            cmd.env(k, v);
        }
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
                    use std::io::Read;
                    let _ = e.read_to_string(&mut err);
                }
                panic!("otpgate serve exited early with {status}: {err}");
            }
            if std::net::TcpStream::connect(self.base.trim_start_matches("http://")).is_ok() {
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
