//! The Redis store: several issuer instances share one Redis, reached in one of three
//! modes ([`RedisMode`]): one server (`single`), a Redis Cluster (`cluster`, through the
//! redis crate's own cluster client: it follows MOVED/ASK and refreshes its slot map after
//! a failover), or a primary with replicas watched by Sentinel (`sentinel`: the primary is
//! found through the sentinels and found again when it stops answering or turns read-only,
//! see [`RedisMode::Sentinel`]). `rediss://` URLs use TLS (rustls), with a private CA and a
//! client certificate when given ([`RedisTls`]).
//!
//! # Atomicity
//! Every operation that reads and changes state is ONE Lua script touching ONE key, so it
//! is atomic on the server whatever the number of issuers; the scripts are the only
//! writers. Each script's keys carry a hash tag, so they stay within one slot:
//! - a verification: `<prefix>:v:{<id>}`, the record as JSON (the format of
//!   `store/codec.rs`, read and written by the scripts with cjson), expiring (PEXPIRE) at
//!   its code's expiry plus [`RETENTION_GRACE_MS`](super::RETENTION_GRACE_MS), counted
//!   from the caller's `now` (so clock skew between issuers and Redis does not matter);
//! - a budget counter: `<prefix>:b:{<key>}:<window length>:<window start>`, an integer
//!   (checked against the limit, then INCR) expiring one window length after its window;
//! - a `once` key: `<prefix>:o:{<key>}`, `SET NX PX ttl` (expires on the Redis clock);
//! - the send queue: `<prefix>:q:{sends}`, one sorted set (ZADD in a script, ZPOPMIN,
//!   ZCARD: one key each);
//! - a polling phone's outbox: `<prefix>:mo:{<name, hex>}:q` (a sorted set by queue time)
//!   and `:seen` (the ids ever put there, until they expire): one slot per outbox;
//! - the leases of in-flight sends: `<prefix>:l:{leases}:b|o|t` (bodies, owners, times):
//!   one slot;
//! - the readiness probe: `<prefix>:ready:{probe}` (a `SET PX` by [`Store::ping`]).
//!
//! A check also counts the caller's check budget, whose key lives in another hash slot. On
//! a single Redis server (mode `single` or `sentinel`, and `INFO cluster` says
//! `cluster_enabled:0`, asked once at connect) budget and check are one script over both
//! keys, one round trip; on a Cluster (or when `INFO` is refused) the budget is its own
//! step first. Either way the budget is counted before the attempt, and a check refused
//! for its budget counts no attempt.
//!
//! # Failures
//! Every failure to reach Redis (refused, dropped, timed out after
//! [`RedisOptions::op_timeout`], a Cluster without a primary for the slot, a primary that
//! turned replica) is [`StoreError::Unavailable`], never a panic; the connection
//! reconnects in the background (single: the connection manager; cluster: the cluster
//! client; sentinel: the next call asks the sentinels again). A write whose answer was
//! lost may have been applied: budgets then count one unit too many (never too few), and
//! an approval the caller did not see stays single use.
//!
//! # Durability
//! As configured on the Redis server (AOF `appendfsync everysec` loses up to a second on
//! a crash of the Redis host). Replication is asynchronous: a failover (Cluster or
//! Sentinel) may lose the last writes the old primary acknowledged and had not yet passed
//! to its replica. With [`RedisOptions::wait_replicas`] = N > 0 every write (verification
//! opened, attempt counted, approval, budget unit, `once` key, queue entry, claim) goes
//! out in one pipeline with `WAIT N timeout` on the same connection; the store answers only
//! when N replicas confirmed it, else [`StoreError::Unavailable`] (the write may stand on
//! the primary: a budget unit counted, an attempt spent, an approval the caller did not
//! see; never a success that a failover to one of those replicas can take back). Reads
//! do not wait.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{
    ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection,
};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{
    AsyncConnectionConfig, Cmd, ConnectionAddr, ConnectionInfo, IntoConnectionInfo, Pipeline,
    RedisFuture, Script, TlsCertificates, TlsMode, Value,
};

use super::logic::Window;
use super::{
    Budget, BudgetRequest, CheckOutcome, DeliveryRecord, Guess, OUTBOX_GRACE_MS, OutboxMessage,
    QueuedSend, RETENTION_GRACE_MS, Record, RotateOutcome, Rotation, SendLease, Store, StoreError,
    codec, logic,
};
use otpgate_core::wire::Status;

/// Timeouts and script layout of the [`RedisStore`].
#[derive(Clone, Debug)]
pub struct RedisOptions {
    /// Most time one operation may take, reconnection included.
    pub op_timeout: Duration,
    /// Most time to establish a connection.
    pub connect_timeout: Duration,
    /// Keeps every script within one hash slot even on a single server, as on a Cluster (a
    /// check is then two round trips). Off by default; for a proxy that hides a Cluster.
    pub one_slot_per_script: bool,
    /// `wait_replicas`: when above 0, every write is acknowledged only after `WAIT N`
    /// confirmed it on this many replicas (sent with the write, on its connection: on a
    /// Cluster to the master of the write's slot); fewer within
    /// [`RedisOptions::wait_timeout`] is [`StoreError::Unavailable`].
    pub wait_replicas: u32,
    /// The `WAIT` timeout (`wait_timeout_ms`).
    pub wait_timeout: Duration,
}

impl Default for RedisOptions {
    fn default() -> Self {
        Self {
            op_timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(1),
            one_slot_per_script: false,
            wait_replicas: 0,
            wait_timeout: Duration::from_millis(500),
        }
    }
}

/// How the store reaches Redis (`[store] mode`).
#[derive(Clone, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub enum RedisMode {
    /// One server: [`RedisTarget::urls`] holds its one URL.
    Single,
    /// A Redis Cluster: the URLs are seed nodes; the slot map is asked of them and kept
    /// current by the redis crate's cluster client (MOVED/ASK, failovers).
    Cluster,
    /// A primary watched by Sentinel: the URLs are the sentinels, asked for the primary of
    /// `service_name` at connect and again whenever the primary stops answering (refused,
    /// dropped, timed out) or answers `READONLY` (it was demoted by a failover).
    Sentinel {
        /// The name the sentinels monitor the primary under.
        service_name: String,
    },
}

impl RedisMode {
    /// `single`, `cluster` or `sentinel`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Single => "single",
            Self::Cluster => "cluster",
            Self::Sentinel { .. } => "sentinel",
        }
    }
}

/// TLS material for `rediss://` URLs, as PEM bytes. Without a CA the system's roots are
/// trusted; with a client certificate and key, the client proves itself (mutual TLS).
#[derive(Clone, Default)]
pub struct RedisTls {
    /// The trust anchors (a private CA), PEM.
    pub ca_pem: Option<Vec<u8>>,
    /// The client certificate chain, PEM (with [`RedisTls::client_key_pem`]).
    pub client_cert_pem: Option<Vec<u8>>,
    /// The client private key, PEM (a secret: never printed).
    pub client_key_pem: Option<zeroize::Zeroizing<Vec<u8>>>,
}

impl std::fmt::Debug for RedisTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisTls")
            .field("ca", &self.ca_pem.is_some())
            .field("client_cert", &self.client_cert_pem.is_some())
            .field(
                "client_key",
                &self.client_key_pem.as_ref().map(|_| "[redacted]"),
            )
            .finish()
    }
}

impl RedisTls {
    fn certificates(&self) -> TlsCertificates {
        TlsCertificates {
            client_tls: match (&self.client_cert_pem, &self.client_key_pem) {
                (Some(cert), Some(key)) => Some(redis::ClientTlsConfig {
                    client_cert: cert.clone(),
                    client_key: key.to_vec(),
                }),
                _ => None,
            },
            root_cert: self.ca_pem.clone(),
        }
    }
}

/// Where the store connects, and as whom. Prints without credentials.
#[derive(Clone)]
pub struct RedisTarget {
    /// The mode.
    pub mode: RedisMode,
    /// `redis://` or `rediss://` URLs: the server (single), seed nodes (cluster) or the
    /// sentinels (sentinel).
    pub urls: Vec<String>,
    /// The user of the data nodes (ACL), when not in the URL.
    pub username: Option<String>,
    /// The password of the data nodes; overrides one in the URL.
    pub password: Option<zeroize::Zeroizing<String>>,
    /// The password of the sentinels (mode sentinel).
    pub sentinel_password: Option<zeroize::Zeroizing<String>>,
    /// TLS material for `rediss://` URLs (sentinel: for the sentinels and the data nodes).
    pub tls: RedisTls,
}

impl std::fmt::Debug for RedisTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisTarget")
            .field("mode", &self.mode)
            .field("nodes", &self.nodes())
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "[redacted]"))
            .field(
                "sentinel_password",
                &self.sentinel_password.as_ref().map(|_| "[redacted]"),
            )
            .field("tls", &self.tls)
            .finish()
    }
}

impl RedisTarget {
    /// One server at `url` (`redis://[user:password@]host:port[/db]` or `rediss://`).
    pub fn single(url: impl Into<String>) -> Self {
        Self::new(RedisMode::Single, vec![url.into()])
    }

    /// A Cluster reached through `seeds`.
    pub fn cluster(seeds: Vec<String>) -> Self {
        Self::new(RedisMode::Cluster, seeds)
    }

    /// The primary of `service_name`, found through `sentinels`.
    pub fn sentinel(sentinels: Vec<String>, service_name: impl Into<String>) -> Self {
        Self::new(
            RedisMode::Sentinel {
                service_name: service_name.into(),
            },
            sentinels,
        )
    }

    fn new(mode: RedisMode, urls: Vec<String>) -> Self {
        Self {
            mode,
            urls,
            username: None,
            password: None,
            sentinel_password: None,
            tls: RedisTls::default(),
        }
    }

    /// The nodes named by the URLs, `host:port` each (never credentials), comma-separated;
    /// an unreadable URL shows as `?`.
    pub fn nodes(&self) -> String {
        self.urls
            .iter()
            .map(|u| {
                u.as_str()
                    .into_connection_info()
                    .map_or_else(|_| "?".to_owned(), |i| i.addr().to_string())
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Whether the URLs use TLS (`rediss://`).
    fn uses_tls(&self) -> bool {
        self.urls.iter().any(|u| u.starts_with("rediss://"))
    }

    /// The URLs as connection infos, with the data nodes' credentials applied.
    fn infos(&self) -> Result<Vec<ConnectionInfo>, StoreError> {
        if self.urls.is_empty() {
            return Err(unavailable("no URL given"));
        }
        if self.uses_tls() && self.urls.iter().any(|u| !u.starts_with("rediss://")) {
            return Err(unavailable(
                "the URLs mix redis:// and rediss://: use one scheme",
            ));
        }
        self.urls
            .iter()
            .enumerate()
            .map(|(i, u)| {
                // The parse error could echo the URL (and a password in it): its kind only.
                let info = u
                    .as_str()
                    .into_connection_info()
                    .map_err(|e| unavailable(format!("invalid URL #{} ({:?})", i + 1, e.kind())))?;
                Ok(self.with_credentials(info))
            })
            .collect()
    }

    fn with_credentials(&self, info: ConnectionInfo) -> ConnectionInfo {
        if self.username.is_none() && self.password.is_none() {
            return info;
        }
        let mut redis = info.redis_settings().clone();
        if let Some(u) = &self.username {
            redis = redis.set_username(u);
        }
        if let Some(p) = &self.password {
            redis = redis.set_password(p.as_str());
        }
        info.set_redis_settings(redis)
    }
}

/// The connection of one mode; cheap to clone (one shared connection underneath).
#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
    Sentinel(Arc<SentinelConn>),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
            Self::Sentinel(s) => Box::pin(async move {
                let (generation, mut con) = s.connection().await?;
                let r = con.req_packed_command(cmd).await;
                if let Err(e) = &r {
                    s.failed(generation, e);
                }
                r
            }),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(cmd, offset, count),
            Self::Cluster(c) => c.req_packed_commands(cmd, offset, count),
            Self::Sentinel(s) => Box::pin(async move {
                let (generation, mut con) = s.connection().await?;
                let r = con.req_packed_commands(cmd, offset, count).await;
                if let Err(e) = &r {
                    s.failed(generation, e);
                }
                r
            }),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
            Self::Sentinel(_) => 0,
        }
    }
}

/// The small reconnect layer over the crate's sentinel client: one multiplexed connection
/// to the primary, dropped when it fails in a way a failover explains (connection refused
/// or dropped, I/O error, timeout, `READONLY`), so that the next call asks the sentinels
/// for the primary again.
struct SentinelConn {
    client: tokio::sync::Mutex<SentinelClient>,
    current: std::sync::Mutex<Option<(u64, MultiplexedConnection)>>,
    generation: AtomicU64,
    config: AsyncConnectionConfig,
}

impl SentinelConn {
    async fn connection(&self) -> redis::RedisResult<(u64, MultiplexedConnection)> {
        if let Some(c) = self.cached() {
            return Ok(c);
        }
        let mut client = self.client.lock().await;
        // Another call may have found the primary while this one waited.
        if let Some(c) = self.cached() {
            return Ok(c);
        }
        let con = client
            .get_async_connection_with_config(&self.config)
            .await?;
        let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        if let Ok(mut current) = self.current.lock() {
            *current = Some((generation, con.clone()));
        }
        Ok((generation, con))
    }

    fn cached(&self) -> Option<(u64, MultiplexedConnection)> {
        self.current.lock().ok().and_then(|c| c.clone())
    }

    /// Forgets the connection `generation` when `e` says the primary may have moved.
    fn failed(&self, generation: u64, e: &redis::RedisError) {
        let moved = e.is_io_error()
            || e.is_connection_dropped()
            || e.is_connection_refusal()
            || e.is_timeout()
            || e.is_unrecoverable_error()
            || e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly);
        if !moved {
            return;
        }
        if let Ok(mut current) = self.current.lock()
            && current.as_ref().is_some_and(|(g, _)| *g == generation)
        {
            tracing::warn!(error = %e, "redis: the primary failed; asking the sentinels again");
            *current = None;
        }
    }
}

/// The Redis [`Store`] (see the module docs).
#[derive(Clone)]
pub struct RedisStore {
    con: Conn,
    prefix: String,
    op_timeout: Duration,
    /// A single server (not a Cluster): scripts may touch keys of different hash slots.
    single_node: bool,
    mode: &'static str,
    /// Replicas every write waits for (`WAIT`), 0 for none.
    wait_replicas: u32,
    wait_timeout: Duration,
}

impl std::fmt::Debug for RedisStore {
    // The URL may carry a password: never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("mode", &self.mode)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("redis: {e}"))
}

/// Common helpers of the record scripts.
const PRELUDE: &str = r"
local function load(key)
  local raw = redis.call('GET', key)
  if not raw then return nil end
  return cjson.decode(raw)
end
local function save(key, rec)
  local raw = cjson.encode(rec)
  redis.call('SET', key, raw, 'KEEPTTL')
  return raw
end
";

/// ARGV: now, then (key id, digest hex) pairs: the typed code's digest under each key the
/// issuer holds, up to ARGV[PAIRS_END] (set by the script's head). Counts the attempt,
/// compares, approves on a match, in one step. Returns {kind[, record | attempts left]}.
/// The digests are compared as Lua strings: interned, so equality is a pointer comparison
/// that takes the same time whatever the bytes (and an HMAC digest of a guess tells nothing
/// about the code anyway).
const CHECK: &str = r"
local rec = load(KEYS[1])
if not rec then return {'not_found'} end
if rec.outcome == 'approved' then return {'already_used'} end
if rec.outcome == 'cancelled' then return {'cancelled'} end
if rec.attempts >= rec.max_attempts then return {'no_attempts_left'} end
if tonumber(ARGV[1]) >= rec.expires_at_ms then return {'expired'} end
rec.attempts = rec.attempts + 1
local guess = nil
for i = 2, PAIRS_END - 1, 2 do
  if ARGV[i] == rec.key_id then guess = ARGV[i + 1] end
end
if guess ~= nil and guess == rec.digest then
  rec.outcome = 'approved'
  return {'approved', save(KEYS[1], rec)}
end
save(KEYS[1], rec)
return {'wrong', rec.max_attempts - rec.attempts, rec.version}
";

/// ARGV: now, version, digest (hex), key id, expires at, resend at, max sends, grace.
const ROTATE: &str = r"
local rec = load(KEYS[1])
if not rec then return {'not_found'} end
local now = tonumber(ARGV[1])
if rec.outcome == 'approved' then return {'not_pending', 'approved'} end
if rec.outcome == 'cancelled' then return {'not_pending', 'cancelled'} end
if rec.attempts >= rec.max_attempts then return {'not_pending', 'max_attempts_reached'} end
if tonumber(ARGV[2]) ~= rec.version + 1 then return {'conflict'} end
if rec.sends >= tonumber(ARGV[7]) then return {'too_many_sends'} end
if now < rec.resend_at_ms then return {'cooling_down', rec.resend_at_ms} end
rec.version = tonumber(ARGV[2])
rec.digest = ARGV[3]
rec.key_id = ARGV[4]
rec.expires_at_ms = tonumber(ARGV[5])
rec.resend_at_ms = tonumber(ARGV[6])
rec.attempts = 0
rec.sends = rec.sends + 1
rec.d_state = 'queued'
rec.d_gateway = cjson.null
rec.d_message_id = cjson.null
rec.d_updated_at_ms = now
rec.d_detail = cjson.null
local raw = cjson.encode(rec)
local ttl = rec.expires_at_ms + tonumber(ARGV[8]) - now
if ttl < 1 then ttl = 1 end
redis.call('SET', KEYS[1], raw, 'PX', ttl)
return {'rotated', raw}
";

/// The head of the check alone: every ARGV after `now` is a (key id, digest) pair.
const CHECK_HEAD: &str = "local PAIRS_END = #ARGV\n";

/// The head of the check with its budget (single server only: KEYS[2] is the budget key,
/// in another hash slot): the last two ARGV are the budget's limit and TTL. An exhausted
/// budget answers {'rate_limited'} before the record is read.
const CHECK_WITH_BUDGET_HEAD: &str = r"
local PAIRS_END = #ARGV - 2
if take(KEYS[2], tonumber(ARGV[#ARGV - 1]), ARGV[#ARGV]) < 0 then return {'rate_limited'} end
";

/// Returns the record after the call, or nil.
const CANCEL: &str = r"
local rec = load(KEYS[1])
if not rec then return false end
if rec.outcome == 'open' then
  rec.outcome = 'cancelled'
  return save(KEYS[1], rec)
end
return redis.call('GET', KEYS[1])
";

/// ARGV: version, delivery JSON (the record's d_* fields). Returns 1 when applied.
const UPDATE_DELIVERY: &str = r"
local rank = {queued = 0, submitted = 1, sent = 2, delivered = 3, failed = 3, skipped = 3}
local rec = load(KEYS[1])
if not rec then return 0 end
if rec.version ~= tonumber(ARGV[1]) then return 0 end
local d = cjson.decode(ARGV[2])
local old_rank, new_rank = rank[rec.d_state], rank[d.d_state]
if old_rank == nil or new_rank == nil then return redis.error_reply('unknown delivery state') end
local old_msg, new_msg = rec.d_message_id, d.d_message_id
local allowed
if old_msg ~= cjson.null and new_msg ~= cjson.null and old_msg ~= new_msg then
  allowed = new_rank <= rank.submitted and rec.d_state ~= 'delivered' and rec.d_state ~= 'skipped'
else
  allowed = new_rank > old_rank
end
if not allowed then return 0 end
rec.d_state = d.d_state
rec.d_updated_at_ms = d.d_updated_at_ms
rec.d_detail = d.d_detail
if new_msg ~= cjson.null then rec.d_message_id = new_msg end
if d.d_gateway ~= cjson.null then rec.d_gateway = d.d_gateway end
save(KEYS[1], rec)
return 1
";

/// `take(key, limit, ttl)`: counts one unit on the budget counter `key` unless it holds
/// `limit` already; returns what is left, or -1 when exhausted (nothing counted). A new
/// counter expires after `ttl` ms.
const TAKE_FN: &str = r"
local function take(key, limit, ttl)
  local count = tonumber(redis.call('GET', key) or '0')
  if count >= limit then return -1 end
  count = redis.call('INCR', key)
  if count == 1 then redis.call('PEXPIRE', key, ttl) end
  return limit - count
end
";

/// ARGV: limit, ttl. Returns the remaining count, or -1 when exhausted (nothing counted).
const TAKE_BUDGET: &str = "return take(KEYS[1], tonumber(ARGV[1]), ARGV[2])\n";

/// ARGV: n, ttl. Adds n (the counter's TTL is set when this creates it).
const ADD_TO_BUDGET: &str = r"
local count = redis.call('INCRBY', KEYS[1], ARGV[1])
if count == tonumber(ARGV[1]) then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return count
";

/// Gives back one unit, never below zero.
const REFUND_BUDGET: &str = r"
local count = tonumber(redis.call('GET', KEYS[1]) or '0')
if count > 0 then redis.call('DECR', KEYS[1]) end
return 0
";

/// KEYS[1] the send queue; ARGV: max entries, score, the entry, the queue's TTL (ms).
/// Queues the entry unless the queue is full; keeps the queue alive past its entries.
const ENQUEUE_SEND: &str = r"
if redis.call('ZSCORE', KEYS[1], ARGV[3]) then return 1 end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[3])
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[4]) then
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
end
return 1
";

/// KEYS[1] the value; ARGV: the value to store, its TTL (ms). Answers the live value, or
/// stores ARGV[1] and answers nil.
const CLAIM: &str = r"
local v = redis.call('GET', KEYS[1])
if v then return v end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return false
";

/// KEYS: the outbox (a sorted set of message JSON by queue time), its remembered ids (id
/// → until). ARGV: id, queue time, the message JSON, max, remember until, now, the keys'
/// TTL (ms). Answers 1 when queued or seen before, 0 when full.
const OUTBOX_PUSH: &str = r"
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[6])
if redis.call('ZSCORE', KEYS[2], ARGV[1]) then return 1 end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[4]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[5], ARGV[1])
for i = 1, 2 do
  if redis.call('PTTL', KEYS[i]) < tonumber(ARGV[7]) then redis.call('PEXPIRE', KEYS[i], ARGV[7]) end
end
return 1
";

/// The leases: KEYS[1] key → body JSON, KEYS[2] key → owner, KEYS[3] key → until (a
/// sorted set). ARGV: key, owner, until, body, now, the keys' TTL (ms). Answers 1 when
/// written, 0 while another owner's lease is live.
const LEASE_PUT: &str = r"
local cur = redis.call('HGET', KEYS[2], ARGV[1])
if cur and cur ~= ARGV[2] then
  local u = redis.call('ZSCORE', KEYS[3], ARGV[1])
  if u and tonumber(u) > tonumber(ARGV[5]) then return 0 end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[4])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[1])
for i = 1, 3 do
  if redis.call('PTTL', KEYS[i]) < tonumber(ARGV[6]) then redis.call('PEXPIRE', KEYS[i], ARGV[6]) end
end
return 1
";

/// KEYS as [`LEASE_PUT`]; ARGV: owner, until, then the keys. Answers the keys not held.
const LEASE_RENEW: &str = r"
local lost = {}
for i = 3, #ARGV do
  if redis.call('HGET', KEYS[2], ARGV[i]) == ARGV[1] then
    redis.call('ZADD', KEYS[3], 'XX', ARGV[2], ARGV[i])
  else
    table.insert(lost, ARGV[i])
  end
end
return lost
";

/// KEYS as [`LEASE_PUT`]; ARGV: key, owner.
const LEASE_RELEASE: &str = r"
if redis.call('HGET', KEYS[2], ARGV[1]) == ARGV[2] then
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('HDEL', KEYS[2], ARGV[1])
  redis.call('ZREM', KEYS[3], ARGV[1])
end
return 0
";

/// KEYS as [`LEASE_PUT`]; ARGV: owner, until, max, now. Takes the leases whose time ran
/// out, oldest first (those past their deadline are forgotten); answers their bodies.
const LEASE_TAKE: &str = r"
local now = tonumber(ARGV[4])
local keys = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now, 'LIMIT', 0, tonumber(ARGV[3]))
local out = {}
for _, k in ipairs(keys) do
  local body = redis.call('HGET', KEYS[1], k)
  if (not body) or cjson.decode(body).deadline_ms <= now then
    redis.call('HDEL', KEYS[1], k)
    redis.call('HDEL', KEYS[2], k)
    redis.call('ZREM', KEYS[3], k)
  else
    redis.call('HSET', KEYS[2], k, ARGV[1])
    redis.call('ZADD', KEYS[3], ARGV[2], k)
    table.insert(out, body)
  end
end
return out
";

/// A lease as Redis keeps it (owner and time beside it).
#[derive(serde::Serialize, serde::Deserialize)]
struct LeaseBody {
    key: String,
    deadline_ms: i64,
    body: String,
}

/// How long past its newest deadline the send queue is kept (for a dequeue to report
/// the entries that missed it).
const QUEUE_GRACE_MS: i64 = 10 * 60 * 1000;

/// A queued send's score: priority first (11 bits), then age (42 bits, until the year
/// 2109): exact in an f64.
fn queue_score(send: &QueuedSend) -> i64 {
    (i64::from(send.priority.min(2047)) << 42) + send.queued_at_ms.clamp(0, (1 << 42) - 1)
}

/// A budget's counter for one window.
struct BudgetSlot {
    key: String,
    /// How long the counter lives from now (past its window, for `budget_used`).
    ttl_ms: i64,
    /// Until the window ends.
    retry_after_ms: i64,
}

/// A script and its text (sent with `EVAL` when the server does not know its hash).
struct Lua {
    script: Script,
    body: String,
}

impl Lua {
    fn new(body: String) -> Self {
        Self {
            script: Script::new(&body),
            body,
        }
    }
}

struct Scripts {
    check: Lua,
    check_with_budget: Lua,
    rotate: Lua,
    cancel: Lua,
    update_delivery: Lua,
    take_budget: Lua,
    add_to_budget: Lua,
    refund_budget: Lua,
    enqueue_send: Lua,
    claim: Lua,
    outbox_push: Lua,
    lease_put: Lua,
    lease_renew: Lua,
    lease_release: Lua,
    lease_take: Lua,
}

static SCRIPTS: std::sync::LazyLock<Scripts> = std::sync::LazyLock::new(|| {
    let record = |body: &str| Lua::new(format!("{PRELUDE}{body}"));
    Scripts {
        check: record(&format!("{CHECK_HEAD}{CHECK}")),
        check_with_budget: record(&format!("{TAKE_FN}{CHECK_WITH_BUDGET_HEAD}{CHECK}")),
        rotate: record(ROTATE),
        cancel: record(CANCEL),
        update_delivery: record(UPDATE_DELIVERY),
        take_budget: Lua::new(format!("{TAKE_FN}{TAKE_BUDGET}")),
        add_to_budget: Lua::new(ADD_TO_BUDGET.to_owned()),
        refund_budget: Lua::new(REFUND_BUDGET.to_owned()),
        enqueue_send: Lua::new(ENQUEUE_SEND.to_owned()),
        claim: Lua::new(CLAIM.to_owned()),
        outbox_push: Lua::new(OUTBOX_PUSH.to_owned()),
        lease_put: Lua::new(LEASE_PUT.to_owned()),
        lease_renew: Lua::new(LEASE_RENEW.to_owned()),
        lease_release: Lua::new(LEASE_RELEASE.to_owned()),
        lease_take: Lua::new(LEASE_TAKE.to_owned()),
    }
});

impl RedisStore {
    /// Connects to one server at `url` (`redis://[user:password@]host:port[/db]`, or
    /// `rediss://` for TLS with the system's roots) with default timeouts; every key
    /// starts with `key_prefix` (several deployments can share one Redis).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the URL is invalid, the prefix is empty or holds
    /// `{`/`}` (they would break the hash tags), or Redis does not answer.
    pub async fn connect(url: &str, key_prefix: &str) -> Result<Self, StoreError> {
        Self::connect_with(url, key_prefix, RedisOptions::default()).await
    }

    /// As [`RedisStore::connect`], with explicit timeouts.
    ///
    /// # Errors
    /// As [`RedisStore::connect`].
    pub async fn connect_with(
        url: &str,
        key_prefix: &str,
        opts: RedisOptions,
    ) -> Result<Self, StoreError> {
        Self::connect_to(&RedisTarget::single(url), key_prefix, opts).await
    }

    /// Connects to `target` in its mode (see [`RedisMode`]), then writes the readiness
    /// probe once: a store that cannot take writes (a replica, a Cluster without a primary
    /// for the probe's slot) is refused.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when a URL is invalid, the URLs do not fit the mode
    /// (single: exactly one), the TLS material does not parse, the prefix is empty or
    /// holds `{`/`}`, or Redis does not answer within [`RedisOptions::op_timeout`]. No
    /// message carries a password.
    pub async fn connect_to(
        target: &RedisTarget,
        key_prefix: &str,
        opts: RedisOptions,
    ) -> Result<Self, StoreError> {
        if key_prefix.is_empty() || key_prefix.contains(['{', '}']) {
            return Err(unavailable(
                "key prefix must be non-empty and contain no '{' or '}'",
            ));
        }
        let infos = target.infos()?;
        if target.uses_tls() {
            // One provider in the build (aws-lc-rs); installing it makes the choice explicit
            // for the redis crate's `ClientConfig::builder()`. Already installed is fine.
            let _ = tokio_rustls::rustls::crypto::aws_lc_rs::default_provider().install_default();
        }
        let connect = Self::open(target, infos, &opts);
        let con = tokio::time::timeout(opts.op_timeout.max(opts.connect_timeout), connect)
            .await
            .map_err(|_| unavailable("connect timed out"))??;
        let mut store = Self {
            con,
            prefix: key_prefix.to_owned(),
            op_timeout: opts.op_timeout,
            single_node: false,
            mode: target.mode.as_str(),
            // The first probe does not wait for replicas: an issuer starts while they are
            // away (and reports not ready, since every write then fails).
            wait_replicas: 0,
            wait_timeout: opts.wait_timeout,
        };
        store.ping().await?;
        store.wait_replicas = opts.wait_replicas;
        store.single_node = !opts.one_slot_per_script
            && target.mode != RedisMode::Cluster
            && store.is_single_node().await;
        Ok(store)
    }

    async fn open(
        target: &RedisTarget,
        infos: Vec<ConnectionInfo>,
        opts: &RedisOptions,
    ) -> Result<Conn, StoreError> {
        let tls = target.uses_tls();
        match &target.mode {
            RedisMode::Single => {
                let [info] = <[ConnectionInfo; 1]>::try_from(infos)
                    .map_err(|_| unavailable("mode single takes exactly one URL"))?;
                let client = if tls {
                    redis::Client::build_with_tls(info, target.tls.certificates())
                } else {
                    redis::Client::open(info)
                }
                .map_err(|e| unavailable(format!("bad connection settings ({:?})", e.kind())))?;
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(opts.connect_timeout))
                    .set_response_timeout(Some(opts.op_timeout))
                    .set_number_of_retries(2)
                    .set_min_delay(Duration::from_millis(50))
                    .set_max_delay(Duration::from_millis(500));
                let con = ConnectionManager::new_with_config(client, config)
                    .await
                    .map_err(unavailable)?;
                Ok(Conn::Single(con))
            }
            RedisMode::Cluster => {
                let mut builder = ClusterClientBuilder::new(infos)
                    .connection_timeout(opts.connect_timeout)
                    .response_timeout(opts.op_timeout)
                    .retries(3)
                    .min_retry_wait(50)
                    .max_retry_wait(500);
                if tls {
                    builder = builder
                        .tls(TlsMode::Secure)
                        .certs(target.tls.certificates());
                }
                let client = builder.build().map_err(|e| {
                    unavailable(format!(
                        "bad cluster settings ({:?}: {})",
                        e.kind(),
                        e.category()
                    ))
                })?;
                let con = client.get_async_connection().await.map_err(unavailable)?;
                Ok(Conn::Cluster(con))
            }
            RedisMode::Sentinel { service_name } => {
                let addrs: Vec<ConnectionAddr> = infos.iter().map(|i| i.addr().clone()).collect();
                let mut builder =
                    SentinelClientBuilder::new(addrs, service_name, SentinelServerType::Master)
                        .map_err(unavailable)?;
                if let Some(u) = &target.username {
                    builder = builder.set_client_to_redis_username(u);
                }
                if let Some(p) = &target.password {
                    builder = builder.set_client_to_redis_password(p.as_str());
                }
                if let Some(p) = &target.sentinel_password {
                    builder = builder.set_client_to_sentinel_password(p.as_str());
                }
                if tls {
                    builder = builder
                        .set_client_to_sentinel_tls_mode(TlsMode::Secure)
                        .set_client_to_sentinel_certificates(target.tls.certificates())
                        .set_client_to_redis_tls_mode(TlsMode::Secure)
                        .set_client_to_redis_certificates(target.tls.certificates());
                }
                let client = builder
                    .build()
                    .map_err(|e| unavailable(format!("bad sentinel settings ({:?})", e.kind())))?;
                // The layer's own timeout stays below the operation's, so that a primary
                // that hangs is seen failing (and forgotten) before the call gives up.
                let config = AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(opts.connect_timeout))
                    .set_response_timeout(Some(opts.op_timeout.mul_f32(0.75)));
                let layer = Arc::new(SentinelConn {
                    client: tokio::sync::Mutex::new(client),
                    current: std::sync::Mutex::new(None),
                    generation: AtomicU64::new(0),
                    config,
                });
                layer.connection().await.map_err(unavailable)?;
                Ok(Conn::Sentinel(layer))
            }
        }
    }

    /// The mode it was connected in: `single`, `cluster` or `sentinel`.
    pub fn mode(&self) -> &'static str {
        self.mode
    }

    /// Whether a check and its budget run as one script (one round trip): on a single
    /// server, unless [`RedisOptions::one_slot_per_script`].
    pub fn checks_in_one_script(&self) -> bool {
        self.single_node
    }

    /// Whether the server is a single node (`cluster_enabled:0`); a refused or unreadable
    /// `INFO` counts as a Cluster (the one-slot-per-script path works on both).
    async fn is_single_node(&self) -> bool {
        let mut con = self.con.clone();
        let mut cmd = redis::cmd("INFO");
        cmd.arg("cluster");
        let info: Result<String, _> = self.bounded(cmd.query_async(&mut con)).await;
        info.is_ok_and(|text| text.lines().any(|l| l.trim() == "cluster_enabled:0"))
    }

    fn record_key(&self, id: &str) -> String {
        format!("{}:v:{{{id}}}", self.prefix)
    }

    fn budget_key(&self, key: &str, window_ms: i64, now_ms: i64) -> String {
        self.budget_slot(key, window_ms, now_ms).key
    }

    /// The counter of budget `key` for the window holding `now_ms`.
    fn budget_slot(&self, key: &str, window_ms: i64, now_ms: i64) -> BudgetSlot {
        let w = Window::of(now_ms, window_ms);
        BudgetSlot {
            key: format!("{}:b:{{{key}}}:{}:{}", self.prefix, w.len, w.start),
            ttl_ms: (w.purge_at() - now_ms).max(1),
            retry_after_ms: w.retry_after(now_ms),
        }
    }

    /// A claimed or stored value ([`Store::claim`], [`Store::put`]).
    fn kv_key(&self, key: &str) -> String {
        format!("{}:k:{{{key}}}", self.prefix)
    }

    /// The send queue: one sorted set (one hash slot).
    fn queue_key(&self) -> String {
        format!("{}:q:{{sends}}", self.prefix)
    }

    /// An outbox and its remembered ids (one hash slot: the outbox name, hex).
    fn outbox_keys(&self, outbox: &str) -> [String; 2] {
        let tag = hex::encode(outbox);
        [
            format!("{}:mo:{{{tag}}}:q", self.prefix),
            format!("{}:mo:{{{tag}}}:seen", self.prefix),
        ]
    }

    /// The leases: bodies, owners, times (one hash slot).
    fn lease_keys(&self) -> [String; 3] {
        ["b", "o", "t"].map(|k| format!("{}:l:{{leases}}:{k}", self.prefix))
    }

    fn once_key(&self, key: &str) -> String {
        format!("{}:o:{{{key}}}", self.prefix)
    }

    /// Runs one request under the operation timeout.
    async fn bounded<T>(
        &self,
        fut: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.op_timeout, fut).await {
            Ok(r) => r.map_err(unavailable),
            Err(_) => Err(unavailable("timed out")),
        }
    }

    async fn eval(&self, script: &Lua, key: String, args: &[String]) -> Result<Value, StoreError> {
        self.eval_keys(script, &[key], args).await
    }

    /// Runs a script (a write): `EVALSHA`, `EVAL` when the server lacks it; with
    /// `wait_replicas`, followed by `WAIT` (see [`RedisStore::write`]).
    async fn eval_keys(
        &self,
        script: &Lua,
        keys: &[String],
        args: &[String],
    ) -> Result<Value, StoreError> {
        if self.wait_replicas == 0 {
            let mut con = self.con.clone();
            let mut inv = script.script.prepare_invoke();
            for k in keys {
                inv.key(k);
            }
            for a in args {
                inv.arg(a);
            }
            return self.bounded(inv.invoke_async(&mut con)).await;
        }
        let call = |verb: &str, what: &str| {
            let mut cmd = redis::cmd(verb);
            cmd.arg(what).arg(keys.len()).arg(keys).arg(args);
            cmd
        };
        match self
            .replicated(&call("EVALSHA", script.script.get_hash()))
            .await
        {
            Err(Failed::Redis(e))
                if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) =>
            {
                self.write(&call("EVAL", &script.body)).await
            }
            other => other.map_err(StoreError::from),
        }
    }

    /// Runs a write. With `wait_replicas` above 0, the write and `WAIT N timeout` go out as
    /// one pipeline on one connection (the replication offset `WAIT` waits for is that
    /// connection's; on a Cluster the pipeline goes to the master of the write's key, so
    /// `WAIT` asks that master only): fewer replicas than N within the timeout is
    /// [`StoreError::Unavailable`], even though the write may stand on the primary.
    async fn write(&self, cmd: &Cmd) -> Result<Value, StoreError> {
        if self.wait_replicas == 0 {
            let mut con = self.con.clone();
            return self.bounded(cmd.query_async(&mut con)).await;
        }
        self.replicated(cmd).await.map_err(StoreError::from)
    }

    /// `cmd` then `WAIT`, one pipeline, bounded by the operation and `WAIT` timeouts.
    async fn replicated(&self, cmd: &Cmd) -> Result<Value, Failed> {
        let mut con = self.con.clone();
        let wait_ms = u64::try_from(self.wait_timeout.as_millis()).unwrap_or(u64::MAX);
        let mut pipe = redis::pipe();
        pipe.add_command(cmd.clone())
            .cmd("WAIT")
            .arg(self.wait_replicas)
            .arg(wait_ms);
        let answer: Vec<Value> = match tokio::time::timeout(
            self.op_timeout + self.wait_timeout,
            pipe.query_async(&mut con),
        )
        .await
        {
            Ok(r) => r.map_err(Failed::Redis)?,
            Err(_) => return Err(Failed::Store(unavailable("timed out"))),
        };
        let mut it = answer.into_iter();
        let (Some(value), Some(Value::Int(acked))) = (it.next(), it.next()) else {
            return Err(Failed::Store(StoreError::Corrupt(
                "redis: unexpected WAIT answer".into(),
            )));
        };
        if acked < i64::from(self.wait_replicas) {
            return Err(Failed::Store(unavailable(format!(
                "WAIT: {acked} of {} replicas acknowledged the write within {wait_ms} ms",
                self.wait_replicas
            ))));
        }
        Ok(value)
    }

    /// Replicas every write waits for (0: none).
    pub fn wait_replicas(&self) -> u32 {
        self.wait_replicas
    }
}

/// A failed write: Redis's own error (to tell `NOSCRIPT`), or the store's.
enum Failed {
    Redis(redis::RedisError),
    Store(StoreError),
}

impl From<Failed> for StoreError {
    fn from(f: Failed) -> Self {
        match f {
            Failed::Redis(e) => unavailable(e),
            Failed::Store(e) => e,
        }
    }
}

/// Reads a script's `{kind, payload...}` answer.
fn parts(v: Value) -> Result<(String, Vec<Value>), StoreError> {
    let mut items = match v {
        Value::Array(items) => items.into_iter(),
        other => {
            return Err(StoreError::Corrupt(format!(
                "redis: unexpected answer {other:?}"
            )));
        }
    };
    let kind = match items.next() {
        Some(Value::BulkString(b)) => String::from_utf8_lossy(&b).into_owned(),
        Some(Value::SimpleString(s)) => s,
        other => {
            return Err(StoreError::Corrupt(format!(
                "redis: unexpected answer kind {other:?}"
            )));
        }
    };
    Ok((kind, items.collect()))
}

fn record_of(v: Option<&Value>) -> Result<Record, StoreError> {
    match v {
        Some(Value::BulkString(b)) => codec::decode(b),
        other => Err(StoreError::Corrupt(format!(
            "redis: expected a record, got {other:?}"
        ))),
    }
}

/// A write's answer as `T`.
fn decode<T: redis::FromRedisValue>(v: Value) -> Result<T, StoreError> {
    redis::from_redis_value(v).map_err(|e| StoreError::Corrupt(format!("redis: {e}")))
}

fn int_of(v: &Value) -> Result<i64, StoreError> {
    match v {
        Value::Int(n) => Ok(*n),
        other => Err(StoreError::Corrupt(format!(
            "redis: expected an integer, got {other:?}"
        ))),
    }
}

#[async_trait]
impl Store for RedisStore {
    async fn create(&self, record: &Record) -> Result<(), StoreError> {
        let ttl = logic::purge_at(record)
            .saturating_sub(record.created_at_ms)
            .max(1);
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.record_key(&record.id))
            .arg(codec::encode(record))
            .arg("NX")
            .arg("PX")
            .arg(ttl);
        let set: Option<String> = decode(self.write(&cmd).await?)?;
        match set {
            Some(_) => Ok(()),
            None => Err(StoreError::Duplicate),
        }
    }

    async fn get(&self, id: &str) -> Result<Option<Record>, StoreError> {
        let mut con = self.con.clone();
        let mut cmd = redis::cmd("GET");
        cmd.arg(self.record_key(id));
        let raw: Option<Vec<u8>> = self.bounded(cmd.query_async(&mut con)).await?;
        raw.map(|b| codec::decode(&b)).transpose()
    }

    async fn check(
        &self,
        id: &str,
        guess: &Guess,
        budget: Option<BudgetRequest<'_>>,
        now_ms: i64,
    ) -> Result<CheckOutcome, StoreError> {
        let mut args = Vec::with_capacity(3 + 2 * guess.digests.len());
        args.push(now_ms.to_string());
        for (key_id, digest) in &guess.digests {
            args.push(key_id.clone());
            args.push(hex::encode(digest));
        }
        let (kind, rest) = match budget {
            // One script over the record and the budget key (another hash slot).
            Some(b) if self.single_node => {
                let slot = self.budget_slot(b.key, b.window_ms, now_ms);
                args.push(b.limit.to_string());
                args.push(slot.ttl_ms.to_string());
                let keys = [self.record_key(id), slot.key];
                let answer = self
                    .eval_keys(&SCRIPTS.check_with_budget, &keys, &args)
                    .await?;
                let (kind, rest) = parts(answer)?;
                if kind == "rate_limited" {
                    return Ok(CheckOutcome::RateLimited {
                        retry_after_ms: slot.retry_after_ms,
                    });
                }
                (kind, rest)
            }
            // A Cluster: the budget is its own step first.
            _ => {
                if let Some(b) = budget
                    && let Budget::Exhausted { retry_after_ms } = self
                        .take_budget(b.key, b.limit, b.window_ms, now_ms)
                        .await?
                {
                    return Ok(CheckOutcome::RateLimited { retry_after_ms });
                }
                parts(
                    self.eval(&SCRIPTS.check, self.record_key(id), &args)
                        .await?,
                )?
            }
        };
        Ok(match kind.as_str() {
            "approved" => CheckOutcome::Approved(Box::new(record_of(rest.first())?)),
            "wrong" => {
                let (Some(left), Some(version)) = (rest.first(), rest.get(1)) else {
                    return Err(StoreError::Corrupt("redis: wrong without counts".into()));
                };
                CheckOutcome::Wrong {
                    attempts_left: u32::try_from(int_of(left)?).unwrap_or(0),
                    code_version: u32::try_from(int_of(version)?).unwrap_or(0),
                }
            }
            "not_found" => CheckOutcome::NotFound,
            "already_used" => CheckOutcome::AlreadyUsed,
            "cancelled" => CheckOutcome::Cancelled,
            "expired" => CheckOutcome::Expired,
            "no_attempts_left" => CheckOutcome::NoAttemptsLeft,
            other => {
                return Err(StoreError::Corrupt(format!(
                    "redis: unknown check answer {other}"
                )));
            }
        })
    }

    async fn rotate(
        &self,
        id: &str,
        rotation: &Rotation,
        now_ms: i64,
    ) -> Result<RotateOutcome, StoreError> {
        let args = [
            now_ms.to_string(),
            rotation.code.version.to_string(),
            hex::encode(&rotation.code.digest),
            rotation.code.key_id.clone(),
            rotation.expires_at_ms.to_string(),
            rotation.resend_at_ms.to_string(),
            rotation.max_sends.to_string(),
            RETENTION_GRACE_MS.to_string(),
        ];
        let (kind, rest) = parts(
            self.eval(&SCRIPTS.rotate, self.record_key(id), &args)
                .await?,
        )?;
        Ok(match kind.as_str() {
            "rotated" => RotateOutcome::Rotated(Box::new(record_of(rest.first())?)),
            "not_found" => RotateOutcome::NotFound,
            "conflict" => RotateOutcome::Conflict,
            "too_many_sends" => RotateOutcome::TooManySends,
            "cooling_down" => {
                let at = rest
                    .first()
                    .ok_or_else(|| StoreError::Corrupt("redis: cooldown without time".into()))?;
                RotateOutcome::CoolingDown {
                    retry_at_ms: int_of(at)?,
                }
            }
            "not_pending" => {
                let status = match rest.first() {
                    Some(Value::BulkString(b)) if b == b"approved" => Status::Approved,
                    Some(Value::BulkString(b)) if b == b"cancelled" => Status::Cancelled,
                    _ => Status::MaxAttemptsReached,
                };
                RotateOutcome::NotPending(status)
            }
            other => {
                return Err(StoreError::Corrupt(format!(
                    "redis: unknown rotate answer {other}"
                )));
            }
        })
    }

    async fn cancel(&self, id: &str, _now_ms: i64) -> Result<Option<Record>, StoreError> {
        match self.eval(&SCRIPTS.cancel, self.record_key(id), &[]).await? {
            Value::Nil => Ok(None),
            v @ Value::BulkString(_) => record_of(Some(&v)).map(Some),
            other => Err(StoreError::Corrupt(format!(
                "redis: unexpected cancel answer {other:?}"
            ))),
        }
    }

    async fn update_delivery(
        &self,
        id: &str,
        version: u32,
        delivery: &DeliveryRecord,
    ) -> Result<bool, StoreError> {
        let d = serde_json::json!({
            "d_state": delivery.state,
            "d_gateway": delivery.gateway,
            "d_message_id": delivery.message_id,
            "d_updated_at_ms": delivery.updated_at_ms,
            "d_detail": delivery.detail,
        });
        let v = self
            .eval(
                &SCRIPTS.update_delivery,
                self.record_key(id),
                &[version.to_string(), d.to_string()],
            )
            .await?;
        Ok(int_of(&v)? == 1)
    }

    async fn take_budget(
        &self,
        key: &str,
        limit: u32,
        window_ms: i64,
        now_ms: i64,
    ) -> Result<Budget, StoreError> {
        let slot = self.budget_slot(key, window_ms, now_ms);
        let args = [limit.to_string(), slot.ttl_ms.to_string()];
        let left = int_of(&self.eval(&SCRIPTS.take_budget, slot.key, &args).await?)?;
        Ok(match u32::try_from(left) {
            Ok(remaining) => Budget::Allowed { remaining },
            Err(_) => Budget::Exhausted {
                retry_after_ms: slot.retry_after_ms,
            },
        })
    }

    async fn add_to_budget(
        &self,
        key: &str,
        n: u32,
        window_ms: i64,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let slot = self.budget_slot(key, window_ms, now_ms);
        let args = [n.to_string(), slot.ttl_ms.to_string()];
        self.eval(&SCRIPTS.add_to_budget, slot.key, &args).await?;
        Ok(())
    }

    async fn refund_budget(
        &self,
        key: &str,
        window_ms: i64,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        self.eval(
            &SCRIPTS.refund_budget,
            self.budget_key(key, window_ms, now_ms),
            &[],
        )
        .await?;
        Ok(())
    }

    async fn budget_used(&self, key: &str, window_ms: i64, now_ms: i64) -> Result<u32, StoreError> {
        let mut con = self.con.clone();
        let mut cmd = redis::cmd("GET");
        cmd.arg(self.budget_key(key, window_ms, now_ms));
        let n: Option<i64> = self.bounded(cmd.query_async(&mut con)).await?;
        Ok(n.map_or(0, |n| u32::try_from(n).unwrap_or(0)))
    }

    async fn once(&self, key: &str, ttl_ms: i64, _now_ms: i64) -> Result<bool, StoreError> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.once_key(key))
            .arg(1)
            .arg("NX")
            .arg("PX")
            .arg(ttl_ms.max(1));
        let set: Option<String> = decode(self.write(&cmd).await?)?;
        Ok(set.is_some())
    }

    async fn enqueue_send(&self, send: &QueuedSend, max: u32) -> Result<bool, StoreError> {
        let entry = serde_json::to_string(send)
            .map_err(|e| StoreError::Corrupt(format!("queued send: {e}")))?;
        let ttl = send
            .deadline_ms
            .saturating_sub(send.queued_at_ms)
            .saturating_add(QUEUE_GRACE_MS)
            .max(1);
        let args = [
            max.to_string(),
            queue_score(send).to_string(),
            entry,
            ttl.to_string(),
        ];
        let v = self
            .eval(&SCRIPTS.enqueue_send, self.queue_key(), &args)
            .await?;
        Ok(matches!(v, Value::Int(1)))
    }

    async fn dequeue_sends(&self, max: u32) -> Result<Vec<QueuedSend>, StoreError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let mut cmd = redis::cmd("ZPOPMIN");
        cmd.arg(self.queue_key()).arg(max);
        let popped: Vec<(String, f64)> = decode(self.write(&cmd).await?)?;
        let mut sends = Vec::with_capacity(popped.len());
        for (entry, _) in popped {
            match serde_json::from_str(&entry) {
                Ok(send) => sends.push(send),
                // Not ours to read (written by something else): dropped, said once.
                Err(e) => tracing::warn!(error = %e, "redis: unreadable queued send dropped"),
            }
        }
        Ok(sends)
    }

    async fn queued_sends(&self) -> Result<u32, StoreError> {
        let mut con = self.con.clone();
        let mut cmd = redis::cmd("ZCARD");
        cmd.arg(self.queue_key());
        let n: i64 = self.bounded(cmd.query_async(&mut con)).await?;
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }

    async fn claim(
        &self,
        key: &str,
        value: &str,
        ttl_ms: i64,
        _now_ms: i64,
    ) -> Result<Option<String>, StoreError> {
        let args = [value.to_owned(), ttl_ms.max(1).to_string()];
        match self.eval(&SCRIPTS.claim, self.kv_key(key), &args).await? {
            Value::Nil => Ok(None),
            Value::BulkString(b) => Ok(Some(String::from_utf8_lossy(&b).into_owned())),
            other => Err(StoreError::Corrupt(format!(
                "redis: unexpected claim answer {other:?}"
            ))),
        }
    }

    async fn put(
        &self,
        key: &str,
        value: &str,
        ttl_ms: i64,
        _now_ms: i64,
    ) -> Result<(), StoreError> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.kv_key(key))
            .arg(value)
            .arg("PX")
            .arg(ttl_ms.max(1));
        let _: Option<String> = decode(self.write(&cmd).await?)?;
        Ok(())
    }

    async fn forget(&self, key: &str) -> Result<(), StoreError> {
        let mut cmd = redis::cmd("DEL");
        cmd.arg(self.kv_key(key));
        let _: i64 = decode(self.write(&cmd).await?)?;
        Ok(())
    }

    async fn outbox_push(
        &self,
        outbox: &str,
        message: &OutboxMessage,
        max: u32,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let entry = serde_json::to_string(message)
            .map_err(|e| StoreError::Corrupt(format!("outbox message: {e}")))?;
        let until = message.expires_at_ms.saturating_add(OUTBOX_GRACE_MS);
        let args = [
            message.id.clone(),
            message.queued_at_ms.to_string(),
            entry,
            max.to_string(),
            until.to_string(),
            now_ms.to_string(),
            (until - now_ms).max(1).to_string(),
        ];
        let v = self
            .eval_keys(&SCRIPTS.outbox_push, &self.outbox_keys(outbox), &args)
            .await?;
        Ok(matches!(v, Value::Int(1)))
    }

    async fn outbox_take(
        &self,
        outbox: &str,
        max: u32,
        _now_ms: i64,
    ) -> Result<Vec<OutboxMessage>, StoreError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let [queue, _] = self.outbox_keys(outbox);
        let mut cmd = redis::cmd("ZPOPMIN");
        cmd.arg(queue).arg(max);
        let popped: Vec<(String, f64)> = decode(self.write(&cmd).await?)?;
        let mut out = Vec::with_capacity(popped.len());
        for (entry, _) in popped {
            match serde_json::from_str(&entry) {
                Ok(m) => out.push(m),
                Err(e) => tracing::warn!(error = %e, "redis: unreadable outbox message dropped"),
            }
        }
        Ok(out)
    }

    async fn lease_put(&self, lease: &SendLease, now_ms: i64) -> Result<bool, StoreError> {
        let body = serde_json::to_string(&LeaseBody {
            key: lease.key.clone(),
            deadline_ms: lease.deadline_ms,
            body: lease.body.clone(),
        })
        .map_err(|e| StoreError::Corrupt(format!("send lease: {e}")))?;
        let args = [
            lease.key.clone(),
            lease.owner.clone(),
            lease.until_ms.to_string(),
            body,
            now_ms.to_string(),
            (lease.deadline_ms.max(lease.until_ms) - now_ms)
                .saturating_add(QUEUE_GRACE_MS)
                .max(1)
                .to_string(),
        ];
        let v = self
            .eval_keys(&SCRIPTS.lease_put, &self.lease_keys(), &args)
            .await?;
        Ok(matches!(v, Value::Int(1)))
    }

    async fn lease_renew(
        &self,
        owner: &str,
        keys: &[String],
        until_ms: i64,
        _now_ms: i64,
    ) -> Result<Vec<String>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut args = vec![owner.to_owned(), until_ms.to_string()];
        args.extend(keys.iter().cloned());
        let v = self
            .eval_keys(&SCRIPTS.lease_renew, &self.lease_keys(), &args)
            .await?;
        decode(v)
    }

    async fn lease_release(&self, key: &str, owner: &str) -> Result<(), StoreError> {
        let args = [key.to_owned(), owner.to_owned()];
        self.eval_keys(&SCRIPTS.lease_release, &self.lease_keys(), &args)
            .await?;
        Ok(())
    }

    async fn lease_take_expired(
        &self,
        owner: &str,
        until_ms: i64,
        max: u32,
        now_ms: i64,
    ) -> Result<Vec<SendLease>, StoreError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let args = [
            owner.to_owned(),
            until_ms.to_string(),
            max.to_string(),
            now_ms.to_string(),
        ];
        let bodies: Vec<String> = decode(
            self.eval_keys(&SCRIPTS.lease_take, &self.lease_keys(), &args)
                .await?,
        )?;
        bodies
            .iter()
            .map(|b| {
                let l: LeaseBody = serde_json::from_str(b)
                    .map_err(|e| StoreError::Corrupt(format!("redis: send lease: {e}")))?;
                Ok(SendLease {
                    key: l.key,
                    owner: owner.to_owned(),
                    until_ms,
                    deadline_ms: l.deadline_ms,
                    body: l.body,
                })
            })
            .collect()
    }

    /// Writes the readiness probe (`SET <prefix>:ready:{probe} 1 PX 10000`): fails while
    /// the store cannot take writes (down, a replica, a Cluster refusing the probe's slot).
    async fn ping(&self) -> Result<(), StoreError> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(format!("{}:ready:{{probe}}", self.prefix))
            .arg(1)
            .arg("PX")
            .arg(10_000);
        let ok: String = decode(self.write(&cmd).await?)?;
        if ok == "OK" {
            Ok(())
        } else {
            Err(unavailable(format!("unexpected SET answer {ok}")))
        }
    }
}
