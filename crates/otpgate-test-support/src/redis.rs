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

/// A scratch directory removed on drop (the servers' files, configs and certificates).
#[derive(Debug)]
pub struct ScratchDir(pub PathBuf);

impl ScratchDir {
    /// A new empty directory under the system's temp dir.
    pub fn new(what: &str) -> Self {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("otpgate-{what}-{}-{n}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A binary from PATH (`redis-cli`, `redis-sentinel`); a clear failure naming the Debian
/// package when it is missing (Redis tests never skip silently).
pub fn bin(name: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let p = dir.join(name);
        if p.is_file() {
            return p;
        }
    }
    panic!("{name} is not on PATH: install it (apt-get install {package}; scripts/setup.sh does)");
}

/// A free port whose cluster bus port (+10000) is free too, both below the ephemeral range.
pub fn free_cluster_port() -> u16 {
    static GIVEN: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    let seed = u32::from(std::process::id() as u16)
        .wrapping_mul(7919)
        .wrapping_add(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos()),
        );
    for i in 0..20_000u32 {
        // 10000..22700, the bus port 20000..32700: both below Linux's ephemeral range
        // (32768..61000), where the OS hands out the ports of outgoing connections and of
        // every other test's `free_port()`: a bus port found free there was taken before
        // redis-server bound it (CI: "Failed listening on port 44100 (cluster)").
        let port = u16::try_from(10_000 + (seed.wrapping_add(i.wrapping_mul(97))) % 12_700)
            .unwrap_or(10_000);
        let bindable = |p: u16| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok();
        if bindable(port) && bindable(port + 10_000) {
            let mut given = GIVEN
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if given.insert(port) {
                return port;
            }
        }
    }
    panic!("no free port pair (port, port + 10000) for a Redis Cluster node");
}

/// Sends one command (RESP, so arguments may hold spaces) to `127.0.0.1:port`; the whole
/// reply as text, or `None` when it cannot connect or answer in time.
pub fn command_args(port: u16, args: &[&str]) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_millis(500))).ok()?;
    let mut req = format!("*{}\r\n", args.len());
    for a in args {
        req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    s.write_all(req.as_bytes()).ok()?;
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    // Replies here are short: read until a pause.
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                out.extend_from_slice(&buf[..n]);
                s.set_read_timeout(Some(Duration::from_millis(30))).ok()?;
            }
            Err(_) => break,
        }
    }
    (!out.is_empty()).then(|| String::from_utf8_lossy(&out).into_owned())
}

fn wait_until(within: Duration, what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !ok() {
        assert!(Instant::now() < deadline, "{what} within {within:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One node of a [`RedisCluster`] or [`RedisSentinel`]: a `redis-server` with its files
/// in the group's directory.
pub struct Node {
    /// Its port.
    pub port: u16,
    /// The process while it runs.
    pub proc: Option<Proc>,
    /// How to start it again (a data node: its directory and extra arguments).
    again: Option<(PathBuf, Vec<String>)>,
}

impl Node {
    fn start(dir: &Path, port: u16, extra: &[String]) -> Self {
        let mut cmd = Command::new(redis_server_bin());
        cmd.args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--dir",
            &dir.display().to_string(),
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
        ])
        .args(extra);
        let mut p = Proc::spawn(cmd, &dir.join(format!("redis-{port}.log")), "redis-server");
        p.wait_port(&format!("127.0.0.1:{port}"), Duration::from_secs(10));
        Self {
            port,
            proc: Some(p),
            again: Some((dir.to_path_buf(), extra.to_vec())),
        }
    }

    /// Starts a killed data node again on its port with its arguments (no data: it comes
    /// back empty, and a Cluster or the sentinels make it a replica of whoever took over).
    pub fn restart(&mut self) {
        assert!(self.proc.is_none(), "node {} still runs", self.port);
        let (dir, extra) = self.again.clone().expect("a data node");
        // The killed server's port may linger a moment.
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpListener::bind(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "port {} stays busy", self.port);
            std::thread::sleep(Duration::from_millis(100));
        }
        *self = Self::start(&dir, self.port, &extra);
    }

    /// SIGKILL.
    pub fn kill9(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill9();
        }
    }
}

/// A Redis Cluster of 3 masters and 3 replicas on loopback (`--cluster-enabled yes`,
/// created with `redis-cli --cluster create --cluster-replicas 1`), node timeout 1 s so a
/// killed master is replaced within a few seconds. Killed on drop.
pub struct RedisCluster {
    /// The six nodes (the first three were created masters).
    pub nodes: Vec<Node>,
    /// `redis://127.0.0.1:PORT` of every node: the seed URLs.
    pub urls: Vec<String>,
    dir: ScratchDir,
}

impl RedisCluster {
    /// Starts six nodes, creates the cluster and waits until every node says
    /// `cluster_state:ok`.
    pub fn start() -> Self {
        let cli = bin("redis-cli", "redis-tools");
        let dir = ScratchDir::new("cluster");
        let ports: Vec<u16> = (0..6).map(|_| free_cluster_port()).collect();
        let nodes: Vec<Node> = ports
            .iter()
            .map(|&port| {
                Node::start(
                    &dir.0,
                    port,
                    &[
                        "--cluster-enabled".into(),
                        "yes".into(),
                        "--cluster-config-file".into(),
                        format!("nodes-{port}.conf"),
                        "--cluster-node-timeout".into(),
                        "1000".into(),
                    ],
                )
            })
            .collect();
        let mut create = Command::new(&cli);
        create.arg("--cluster").arg("create");
        for p in &ports {
            create.arg(format!("127.0.0.1:{p}"));
        }
        let out = create
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run redis-cli --cluster create: {e}"));
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let me = Self {
            urls: ports
                .iter()
                .map(|p| format!("redis://127.0.0.1:{p}"))
                .collect(),
            nodes,
            dir,
        };
        me.wait_ok(Duration::from_secs(20));
        me
    }

    /// Waits until every running node says `cluster_state:ok` and every replica is in
    /// sync with its master (a replica that never synced would not take over).
    pub fn wait_ok(&self, within: Duration) {
        wait_until(within, "the cluster did not become ok", || {
            self.nodes.iter().filter(|n| n.proc.is_some()).all(|n| {
                command_args(n.port, &["CLUSTER", "INFO"])
                    .is_some_and(|i| i.contains("cluster_state:ok"))
                    && command_args(n.port, &["INFO", "replication"]).is_some_and(|i| {
                        i.contains("role:master") || i.contains("master_link_status:up")
                    })
            })
        });
    }

    /// The port of the master that serves `key`'s slot (asked with `CLUSTER KEYSLOT` and
    /// `CLUSTER SHARDS`-free `CLUSTER NODES`).
    pub fn master_of(&self, key: &str) -> u16 {
        self.try_master_of(key)
            .unwrap_or_else(|| panic!("no healthy master serves the slot of {key}"))
    }

    /// The port of the healthy master that serves `key`'s slot, `None` while none does
    /// (its master failed and no replica took over yet).
    pub fn try_master_of(&self, key: &str) -> Option<u16> {
        let live = self
            .nodes
            .iter()
            .find(|n| n.proc.is_some())
            .expect("a live node");
        let slot: u16 = command_args(live.port, &["CLUSTER", "KEYSLOT", key])
            .and_then(|r| r.trim().trim_start_matches(':').parse().ok())
            .expect("CLUSTER KEYSLOT");
        let nodes = command_args(live.port, &["CLUSTER", "NODES"])?;
        for line in nodes.lines() {
            let f: Vec<&str> = line.split(' ').collect();
            if f.len() < 9 || !f[2].contains("master") || f[2].contains("fail") {
                continue;
            }
            let serves = f[8..].iter().any(|r| match r.split_once('-') {
                Some((a, b)) => {
                    a.parse::<u16>().is_ok_and(|a| a <= slot)
                        && b.trim().parse::<u16>().is_ok_and(|b| slot <= b)
                }
                None => r.trim().parse::<u16>().is_ok_and(|s| s == slot),
            });
            if serves {
                let addr = f[1].split('@').next().unwrap_or("");
                return addr.rsplit(':').next().and_then(|p| p.parse().ok());
            }
        }
        None
    }

    /// The port of the replica of the master on `master_port` (`CLUSTER NODES`).
    pub fn replica_of(&self, master_port: u16) -> u16 {
        let live = self
            .nodes
            .iter()
            .find(|n| n.proc.is_some())
            .expect("a live node");
        let nodes = command_args(live.port, &["CLUSTER", "NODES"]).expect("CLUSTER NODES");
        let port_of = |addr: &str| -> Option<u16> {
            addr.split('@').next()?.rsplit(':').next()?.parse().ok()
        };
        let rows: Vec<Vec<&str>> = nodes
            .lines()
            .map(|l| l.split(' ').collect::<Vec<_>>())
            .filter(|f| f.len() >= 8)
            .collect();
        let master_id = rows
            .iter()
            .find(|f| port_of(f[1]) == Some(master_port))
            .map(|f| f[0])
            .unwrap_or_else(|| panic!("no node on {master_port}:\n{nodes}"));
        rows.iter()
            .find(|f| f[2].contains("slave") && f[3] == master_id && !f[2].contains("fail"))
            .and_then(|f| port_of(f[1]))
            .unwrap_or_else(|| panic!("no live replica of {master_port}:\n{nodes}"))
    }

    /// Starts the killed node on `port` again: it rejoins as a replica of whoever took over.
    pub fn restart(&mut self, port: u16) {
        for n in &mut self.nodes {
            if n.port == port {
                n.restart();
            }
        }
    }

    /// SIGKILLs the node on `port`.
    pub fn kill9(&mut self, port: u16) {
        for n in &mut self.nodes {
            if n.port == port {
                n.kill9();
            }
        }
    }

    /// Where the nodes keep their files and logs.
    pub fn dir(&self) -> &Path {
        &self.dir.0
    }
}

/// A primary, one replica and three `redis-sentinel`s monitoring it as `mymaster`
/// (quorum 2, down after 1 s, failover timeout 3 s). Killed on drop.
pub struct RedisSentinel {
    /// The primary at start.
    pub primary: Node,
    /// Its replica at start.
    pub replica: Node,
    /// The sentinels.
    pub sentinels: Vec<Node>,
    /// `redis://127.0.0.1:PORT` of every sentinel.
    pub urls: Vec<String>,
    dir: ScratchDir,
}

/// The service name of [`RedisSentinel`].
pub const SENTINEL_SERVICE: &str = "mymaster";

impl RedisSentinel {
    /// Starts the five processes and waits until the sentinels know the replica and one
    /// another (`SENTINEL CKQUORUM` says OK on each) and the replica is in sync.
    pub fn start() -> Self {
        let sentinel_bin = bin("redis-sentinel", "redis-sentinel");
        let dir = ScratchDir::new("sentinel");
        let primary = Node::start(&dir.0, free_port(), &[]);
        let replica = Node::start(
            &dir.0,
            free_port(),
            &[
                "--replicaof".into(),
                "127.0.0.1".into(),
                primary.port.to_string(),
            ],
        );
        let sentinels: Vec<Node> = (0..3)
            .map(|_| {
                let port = free_port();
                let conf = dir.0.join(format!("sentinel-{port}.conf"));
                std::fs::write(
                    &conf,
                    format!(
                        "port {port}\nbind 127.0.0.1\ndir {dir}\n\
                         sentinel monitor {SENTINEL_SERVICE} 127.0.0.1 {p} 2\n\
                         sentinel down-after-milliseconds {SENTINEL_SERVICE} 1000\n\
                         sentinel failover-timeout {SENTINEL_SERVICE} 3000\n\
                         sentinel parallel-syncs {SENTINEL_SERVICE} 1\n",
                        dir = dir.0.display(),
                        p = primary.port
                    ),
                )
                .unwrap();
                let mut cmd = Command::new(&sentinel_bin);
                cmd.arg(&conf);
                let mut p = Proc::spawn(
                    cmd,
                    &dir.0.join(format!("sentinel-{port}.log")),
                    "redis-sentinel",
                );
                p.wait_port(&format!("127.0.0.1:{port}"), Duration::from_secs(10));
                Node {
                    port,
                    proc: Some(p),
                    again: None,
                }
            })
            .collect();
        let me = Self {
            urls: sentinels
                .iter()
                .map(|s| format!("redis://127.0.0.1:{}", s.port))
                .collect(),
            primary,
            replica,
            sentinels,
            dir,
        };
        wait_until(
            Duration::from_secs(20),
            "the sentinels did not see the replica and one another",
            || {
                me.sentinels.iter().all(|s| {
                    command_args(s.port, &["SENTINEL", "CKQUORUM", SENTINEL_SERVICE])
                        .is_some_and(|r| r.starts_with("+OK 3 usable"))
                        && command_args(s.port, &["SENTINEL", "REPLICAS", SENTINEL_SERVICE])
                            .is_some_and(|r| r.contains(&me.replica.port.to_string()))
                }) && command_args(me.replica.port, &["INFO", "replication"])
                    .is_some_and(|i| i.contains("master_link_status:up"))
            },
        );
        me
    }

    /// The primary's port as the first sentinel reports it.
    pub fn primary_port(&self) -> Option<u16> {
        let s = self.sentinels.iter().find(|s| s.proc.is_some())?;
        let r = command_args(
            s.port,
            &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", SENTINEL_SERVICE],
        )?;
        r.lines().filter_map(|l| l.trim().parse().ok()).next_back()
    }

    /// Where the processes keep their files and logs.
    pub fn dir(&self) -> &Path {
        &self.dir.0
    }
}

/// PEM files of a test CA, a server certificate for `localhost` and `127.0.0.1` signed by
/// it, and a client certificate signed by it.
#[derive(Debug)]
pub struct TestPki {
    /// The CA certificate.
    pub ca: PathBuf,
    /// The server certificate and key.
    pub server_cert: PathBuf,
    /// The server key.
    pub server_key: PathBuf,
    /// The client certificate.
    pub client_cert: PathBuf,
    /// The client key.
    pub client_key: PathBuf,
}

impl TestPki {
    /// Generates the files into `dir`.
    pub fn generate(dir: &Path) -> Self {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "otpgate test CA");
        let ca_key = KeyPair::generate().unwrap();
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);

        let mut server = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        server
            .subject_alt_names
            .push(SanType::IpAddress(std::net::IpAddr::from([127, 0, 0, 1])));
        let server_key = KeyPair::generate().unwrap();
        let server_cert = server.signed_by(&server_key, &issuer).unwrap();

        let mut client = CertificateParams::new(Vec::<String>::new()).unwrap();
        client
            .distinguished_name
            .push(DnType::CommonName, "otpgate issuer");
        let client_key = KeyPair::generate().unwrap();
        let client_cert = client.signed_by(&client_key, &issuer).unwrap();

        let write = |name: &str, pem: String| {
            let p = dir.join(name);
            std::fs::write(&p, pem).unwrap();
            p
        };
        Self {
            ca: write("ca.pem", ca_cert.pem()),
            server_cert: write("server.pem", server_cert.pem()),
            server_key: write("server.key", server_key.serialize_pem()),
            client_cert: write("client.pem", client_cert.pem()),
            client_key: write("client.key", client_key.serialize_pem()),
        }
    }
}

/// A TLS-only `redis-server` (`--port 0 --tls-port P`) with certificates from a fresh
/// [`TestPki`]; `require_client_cert` sets `--tls-auth-clients yes`. Killed on drop.
pub struct RedisTlsServer {
    /// The node.
    pub node: Node,
    /// `rediss://127.0.0.1:PORT` (the certificate names 127.0.0.1 and localhost).
    pub url: String,
    /// The certificates.
    pub pki: TestPki,
    dir: ScratchDir,
}

impl RedisTlsServer {
    /// Starts it.
    pub fn start(require_client_cert: bool) -> Self {
        let dir = ScratchDir::new("tls");
        let pki = TestPki::generate(&dir.0);
        let port = free_port();
        let path = |p: &Path| p.display().to_string();
        let mut cmd = Command::new(redis_server_bin());
        cmd.args([
            "--port",
            "0",
            "--tls-port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--dir",
            &path(&dir.0),
            "--save",
            "",
            "--appendonly",
            "no",
            "--tls-cert-file",
            &path(&pki.server_cert),
            "--tls-key-file",
            &path(&pki.server_key),
            "--tls-ca-cert-file",
            &path(&pki.ca),
            "--tls-auth-clients",
            if require_client_cert { "yes" } else { "no" },
        ]);
        let mut p = Proc::spawn(cmd, &dir.0.join("redis.log"), "redis-server (TLS)");
        p.wait_port(&format!("127.0.0.1:{port}"), Duration::from_secs(10));
        Self {
            node: Node {
                port,
                proc: Some(p),
                again: None,
            },
            url: format!("rediss://127.0.0.1:{port}"),
            pki,
            dir,
        }
    }

    /// Where its files are.
    pub fn dir(&self) -> &Path {
        &self.dir.0
    }
}
