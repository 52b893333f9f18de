//! The gates in front of every SMS: destination allow-list, blocked prefixes, test numbers,
//! an adaptive proof of work, and send budgets per phone, per IP, per number prefix and
//! globally (anti SMS-pumping, NIST SP 800-63B §5.2.2 throttling, ASVS 2.4.1).
//!
//! # Order of the gates ([`Policy::admit_start`])
//! 1. A configured test number is admitted with its fixed code: no budget, no SMS, no
//!    judgement of its region or type (it never reaches a phone).
//! 2. The destination, judged as a phone number ([`crate::destination`]): valid for its
//!    region, its region in `allowed_regions` (unless `danger_allow_all_regions`), its type
//!    in `allowed_number_types`, outside `blocked_prefixes`. The normalised number is what
//!    the rest of the gates, the store and the phone see.
//! 3. The proof of work, unless the caller presented a valid API key. Its difficulty rises
//!    with abuse signals: the global send rate against its budget, a low approval ratio
//!    (codes sent that are never entered are the mark of pumping), and bursts on one prefix.
//!    Only anonymous traffic feeds the signals: test numbers and API-key callers neither
//!    lower nor raise the difficulty.
//! 4. The budgets, taken in turn; when one refuses, those already taken are given back.
//!
//! # Security
//! API keys are kept as SHA-256 digests and compared in constant time. A proof-of-work
//! solution buys one send: it is spent in the store, so a replay is refused even on another
//! instance sharing the store.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU8, AtomicU32, Ordering};

use otpgate_core::code::ct_eq;
use otpgate_core::phone::{CallingCode, NumberPrefix, PhoneNumber};
use otpgate_core::pow::{self, PowError};
use otpgate_core::wire::{ErrorCode, PowSolution};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

use crate::destination::{self, Destination, NumberType, Refusal, Region};
use crate::gateway::{Pressure, Priority, TRUSTED_WORK};
use crate::random::OsRandom;
use crate::store::{Budget, BudgetRequest, Budgets as TakenBudgets, Store, StoreError};

/// One budget: at most `limit` events per fixed window of `window_secs`.
#[derive(Clone, Copy, Debug, Eq, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limit {
    /// Events allowed per window.
    pub limit: u32,
    /// The window, seconds.
    pub window_secs: u64,
}

impl Limit {
    const fn new(limit: u32, window_secs: u64) -> Self {
        Self { limit, window_secs }
    }

    fn window_ms(&self) -> i64 {
        i64::try_from(self.window_secs.saturating_mul(1000)).unwrap_or(i64::MAX)
    }
}

/// The budgets (`[policy.budgets]`).
#[derive(Clone, Debug, Eq, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Budgets {
    /// SMS to one number (default 5 per 10 min).
    pub phone: Limit,
    /// SMS to one number per day (default 10 per 24 h).
    pub phone_daily: Limit,
    /// Starts from one client IP (IPv6: per /64), unless the caller has an API key
    /// (default 20 per 10 min).
    pub ip: Limit,
    /// SMS to one number prefix (the first `prefix_digits` digits; default 30 per 10 min).
    pub prefix: Limit,
    /// SMS in total (default 600 per minute).
    pub global: Limit,
    /// Code checks from one client IP, across verifications (default 100 per 10 min).
    pub check_ip: Limit,
    /// Starts to one number from one client IP, unless the caller has an API key (default 3
    /// per hour): one address cannot bomb a number, nor spend its `phone` budget alone.
    pub phone_ip: Limit,
    /// Wrong codes entered for one number across its verifications (default 20 per 24 h,
    /// NIST SP 800-63B 5.2.2): past it, new verifications for that number need a caller with
    /// an API key, or the window's end (429 `number_locked`).
    pub failed_checks: Limit,
}

impl Default for Budgets {
    fn default() -> Self {
        Self {
            phone: Limit::new(5, 600),
            phone_daily: Limit::new(10, 86_400),
            ip: Limit::new(20, 600),
            prefix: Limit::new(30, 600),
            global: Limit::new(600, 60),
            check_ip: Limit::new(100, 600),
            phone_ip: Limit::new(3, 3_600),
            failed_checks: Limit::new(20, 86_400),
        }
    }
}

/// The proof-of-work gate (`[policy.pow]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PowConfig {
    /// Ask for proof of work when the difficulty is above zero (default on).
    pub enabled: bool,
    /// Difficulty (leading zero bits) asked for when nothing looks wrong (default 0: none).
    pub base_difficulty: u8,
    /// The most ever asked for (default 22, at most 24).
    pub max_difficulty: u8,
    /// Bits added per abuse signal (default 6).
    pub step: u8,
    /// Lifetime of a challenge, seconds (default 120).
    pub challenge_ttl_secs: u64,
    /// The window over which sends and approvals are counted, seconds (default 600).
    pub signal_window_secs: u64,
    /// Sends in the window before the approval ratio counts (default 20).
    pub min_samples: u32,
    /// Below this share of sends that end approved, the difficulty rises (default 0.5);
    /// below half of it, it rises twice.
    pub min_approval_ratio: f64,
    /// Once raised, the difficulty stays at least that high for this long, seconds (default
    /// 60; 0: it follows the signals at once). Proof of work that works lowers the signals
    /// (fewer sends get through): without a hold the difficulty would fall back while the
    /// flood goes on, and let it through again.
    pub hold_secs: u64,
}

impl Default for PowConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            base_difficulty: 0,
            max_difficulty: 22,
            step: 6,
            challenge_ttl_secs: 120,
            signal_window_secs: 600,
            min_samples: 20,
            min_approval_ratio: 0.5,
            hold_secs: 60,
        }
    }
}

/// Number prefixes refused by default, on top of the region and type checks (which already
/// refuse most of them): ranges where a sent SMS earns its recipient money (toll fraud): UK
/// premium rate (09), revenue-sharing 087 and personal numbering (070); NANP premium rate
/// (900, and 976); the international premium-rate code (+979) and the global networks (+870
/// Inmarsat, +881 satellite, +882/+883 international networks) that pumping favours.
pub const DEFAULT_BLOCKED_PREFIXES: &[&str] = &[
    "449", "4487", "4470", "1900", "1976", "979", "870", "881", "882", "883",
];

/// The regions allowed by default (ISO 3166-1 alpha-2).
pub const DEFAULT_ALLOWED_REGIONS: &[&str] = &["US", "CA", "GB", "FR", "DE", "PT"];

/// The number types allowed by default: mobiles, and the type every US and Canadian
/// number has.
pub const DEFAULT_ALLOWED_NUMBER_TYPES: &[NumberType] =
    &[NumberType::Mobile, NumberType::FixedLineOrMobile];

/// The `[policy]` section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// Code lifetime, seconds (default 300; 60–600).
    pub lifetime_secs: u64,
    /// Checks per code (default 5; 1–10).
    pub max_attempts: u32,
    /// Wait before the first resend, seconds (default 30; at least 10); doubles per resend.
    pub cooldown_secs: u64,
    /// The longest resend wait, seconds (default 3600).
    pub max_cooldown_secs: u64,
    /// SMS per verification, the first included (default 3; 1–10).
    pub max_sends: u32,
    /// Digits after `+` that make a prefix for the prefix budget (default 6).
    pub prefix_digits: usize,
    /// The budgets.
    pub budgets: Budgets,
    /// Allowed regions, ISO 3166-1 alpha-2 (default [`DEFAULT_ALLOWED_REGIONS`]). A number
    /// is in the region libphonenumber's metadata gives it: `+1 876…` is Jamaica, not the
    /// US; `+44 7797…` is Jersey, not GB.
    pub allowed_regions: Vec<Region>,
    /// Allowed number types (default [`DEFAULT_ALLOWED_NUMBER_TYPES`]).
    pub allowed_number_types: Vec<NumberType>,
    /// Lifts the region allow-list entirely (SMS pumping risk); types and ranges still apply.
    pub danger_allow_all_regions: bool,
    /// Number ranges never sent to, on the normalised E.164, e.g. `"+4470"` (default
    /// [`DEFAULT_BLOCKED_PREFIXES`]; setting the key replaces the whole list).
    pub blocked_prefixes: Vec<NumberPrefix>,
    /// No longer accepted (calling codes admitted whole regions such as the Caribbean
    /// under `1`): a config that sets it is refused, naming `allowed_regions`.
    #[serde(rename = "allowed_countries", skip_serializing_if = "Option::is_none")]
    pub removed_allowed_countries: Option<Vec<String>>,
    /// No longer accepted: refused, naming `danger_allow_all_regions`.
    #[serde(
        rename = "danger_allow_all_countries",
        skip_serializing_if = "Option::is_none"
    )]
    pub removed_danger_allow_all_countries: Option<bool>,
    /// API keys of trusted backends (skip the proof of work and the IP budget). Each entry
    /// is `sha256:<hex digest of the key>`, `env:VARIABLE` or `file:/path` (never the key
    /// itself in the file).
    pub api_keys: Vec<String>,
    /// Test numbers and their fixed codes: no SMS is sent, no budget is spent.
    pub test_numbers: BTreeMap<String, String>,
    /// The proof-of-work gate.
    pub pow: PowConfig,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            lifetime_secs: 300,
            max_attempts: 5,
            cooldown_secs: 30,
            max_cooldown_secs: 3600,
            max_sends: 3,
            prefix_digits: 6,
            budgets: Budgets::default(),
            allowed_regions: DEFAULT_ALLOWED_REGIONS
                .iter()
                .filter_map(|r| Region::parse(r).ok())
                .collect(),
            allowed_number_types: DEFAULT_ALLOWED_NUMBER_TYPES.to_vec(),
            danger_allow_all_regions: false,
            removed_allowed_countries: None,
            removed_danger_allow_all_countries: None,
            blocked_prefixes: DEFAULT_BLOCKED_PREFIXES
                .iter()
                .filter_map(|p| NumberPrefix::parse(p).ok())
                .collect(),
            api_keys: Vec::new(),
            test_numbers: BTreeMap::new(),
            pow: PowConfig::default(),
        }
    }
}

/// Resolves one `api_keys` entry to the SHA-256 of the key.
fn resolve_api_key(entry: &str) -> Result<[u8; 32], String> {
    let digest = |key: &str| -> Result<[u8; 32], String> {
        let key = key.trim();
        if key.len() < 16 {
            return Err("API key shorter than 16 characters".into());
        }
        Ok(Sha256::digest(key.as_bytes()).into())
    };
    if let Some(h) = entry.strip_prefix("sha256:") {
        let bytes = hex::decode(h.trim()).map_err(|_| "sha256: needs 64 hex digits".to_owned())?;
        bytes
            .try_into()
            .map_err(|_| "sha256: needs 64 hex digits".to_owned())
    } else if let Some(var) = entry.strip_prefix("env:") {
        let v = Zeroizing::new(
            std::env::var(var).map_err(|_| format!("environment variable {var} is not set"))?,
        );
        digest(&v)
    } else if let Some(path) = entry.strip_prefix("file:") {
        let v = Zeroizing::new(
            std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?,
        );
        digest(&v)
    } else {
        Err(
            "use sha256:<hex>, env:VARIABLE or file:/path (keys never go in the config file)"
                .into(),
        )
    }
}

impl PolicyConfig {
    /// Checks every value; the error is `"key: reason"` with the key relative to `[policy]`.
    ///
    /// # Errors
    /// The first value out of bounds.
    pub fn validate(&self) -> Result<(), String> {
        let bad = |k: &str, r: &str| Err(format!("{k}: {r}"));
        if !(60..=600).contains(&self.lifetime_secs) {
            return bad(
                "lifetime_secs",
                "must be between 60 and 600 (1 to 10 minutes)",
            );
        }
        if !(1..=10).contains(&self.max_attempts) {
            return bad("max_attempts", "must be between 1 and 10");
        }
        if !(10..=3600).contains(&self.cooldown_secs) {
            return bad("cooldown_secs", "must be between 10 and 3600");
        }
        if self.max_cooldown_secs < self.cooldown_secs || self.max_cooldown_secs > 86_400 {
            return bad(
                "max_cooldown_secs",
                "must be between cooldown_secs and 86400",
            );
        }
        if !(1..=10).contains(&self.max_sends) {
            return bad("max_sends", "must be between 1 and 10");
        }
        if !(2..=12).contains(&self.prefix_digits) {
            return bad("prefix_digits", "must be between 2 and 12");
        }
        let b = &self.budgets;
        for (name, l) in [
            ("phone", b.phone),
            ("phone_daily", b.phone_daily),
            ("ip", b.ip),
            ("prefix", b.prefix),
            ("global", b.global),
            ("check_ip", b.check_ip),
            ("phone_ip", b.phone_ip),
            ("failed_checks", b.failed_checks),
        ] {
            if l.limit == 0 {
                return Err(format!("budgets.{name}.limit: must be at least 1"));
            }
            if !(1..=7 * 86_400).contains(&l.window_secs) {
                return Err(format!(
                    "budgets.{name}.window_secs: must be between 1 and 604800"
                ));
            }
        }
        if let Some(codes) = &self.removed_allowed_countries {
            return Err(removed_allowed_countries(codes));
        }
        if self.removed_danger_allow_all_countries.is_some() {
            return bad(
                "danger_allow_all_countries",
                "no longer accepted: use danger_allow_all_regions",
            );
        }
        if self.allowed_regions.is_empty() && !self.danger_allow_all_regions {
            return bad(
                "allowed_regions",
                "empty: no number could be sent to (or set danger_allow_all_regions)",
            );
        }
        if self.allowed_number_types.is_empty() {
            return bad("allowed_number_types", "empty: no number could be sent to");
        }
        for (i, k) in self.api_keys.iter().enumerate() {
            resolve_api_key(k).map_err(|r| format!("api_keys[{i}]: {r}"))?;
        }
        // Test numbers never reach a phone: well-formed E.164 is enough, whatever their
        // region or type (`+1 555 …` numbers are fine here).
        for (phone, code) in &self.test_numbers {
            if PhoneNumber::parse(phone).is_err() {
                return Err(format!("test_numbers: {phone:?} is not an E.164 number"));
            }
            let ok = (4..=10).contains(&code.len())
                && code
                    .bytes()
                    .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase());
            if !ok {
                return Err(format!(
                    "test_numbers: the code of {phone:?} must be 4 to 10 digits or capital letters"
                ));
            }
        }
        let p = &self.pow;
        if p.max_difficulty > 22 {
            return bad("pow.max_difficulty", "must be at most 22");
        }
        if p.base_difficulty > p.max_difficulty {
            return bad("pow.base_difficulty", "must not exceed pow.max_difficulty");
        }
        if p.step == 0 || p.step > 22 {
            return bad("pow.step", "must be between 1 and 22");
        }
        if !(10..=600).contains(&p.challenge_ttl_secs) {
            return bad("pow.challenge_ttl_secs", "must be between 10 and 600");
        }
        if !(60..=86_400).contains(&p.signal_window_secs) {
            return bad("pow.signal_window_secs", "must be between 60 and 86400");
        }
        if !(0.0..=1.0).contains(&p.min_approval_ratio) {
            return bad("pow.min_approval_ratio", "must be between 0 and 1");
        }
        if p.hold_secs > 86_400 {
            return bad("pow.hold_secs", "must be at most 86400");
        }
        Ok(())
    }
}

/// The refusal of a config that still sets `allowed_countries`: it names `allowed_regions`
/// and what each old calling code covered, so nobody re-admits the Caribbean with `"1"`.
fn removed_allowed_countries(codes: &[String]) -> String {
    let covered: Vec<String> = codes
        .iter()
        .map(|c| match CallingCode::parse(c) {
            Ok(code) => format!("{c} = {}", destination::regions_of_code(&code).join(" ")),
            Err(_) => format!("{c} = not a calling code"),
        })
        .collect();
    format!(
        "allowed_countries: no longer accepted; set allowed_regions to ISO 3166-1 alpha-2 \
         regions (the default is [\"US\", \"CA\", \"GB\", \"FR\", \"DE\", \"PT\"]). \
         The calling codes given cover: {}. List only the regions you mean to send to.",
        covered.join("; ")
    )
}

/// What the policy needs to know about a start (or a resend).
#[derive(Clone, Debug)]
pub struct StartContext<'a> {
    /// The destination as the request gave it (plausible E.164, not yet judged).
    pub phone: &'a PhoneNumber,
    /// The app name.
    pub app: &'a str,
    /// The client's address.
    pub client_ip: IpAddr,
    /// The caller presented a valid API key.
    pub trusted: bool,
    /// The proof-of-work solution sent with the request.
    pub pow: Option<&'a PowSolution>,
    /// Now, Unix ms.
    pub now_ms: i64,
}

/// A start or resend that passed every gate that counts nothing (allow-list, test numbers,
/// proof of work), with the budgets it must still take: the service takes them together
/// with the write they guard ([`crate::store::Store::open`]), in one store step.
#[derive(Clone, Eq, PartialEq)]
pub struct Gate {
    /// The destination, normalised (a test number as configured).
    pub phone: PhoneNumber,
    /// For a test number: its fixed code (no SMS is sent, no budget taken).
    pub test_code: Option<String>,
    /// (scope, key, limit) of every budget to take, the send signal last.
    budgets: Vec<(&'static str, String, Limit)>,
    /// What the caller paid for the send: the proof of work solved (bits), [`TRUSTED_WORK`]
    /// for a trusted API key, 0 for nothing.
    work: u8,
}

impl Gate {
    /// The budgets to take, in the form the store takes them.
    pub fn requests(&self) -> Vec<BudgetRequest<'_>> {
        self.budgets
            .iter()
            .map(|(_, key, limit)| BudgetRequest {
                key,
                limit: limit.limit,
                window_ms: limit.window_ms(),
            })
            .collect()
    }
}

impl fmt::Debug for Gate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gate")
            .field("test_code", &self.test_code.as_ref().map(|_| "[redacted]"))
            .field("budgets", &self.budgets.len())
            .finish()
    }
}

/// An admitted request.
#[derive(Clone, Eq, PartialEq)]
pub struct Admission {
    /// The destination, normalised.
    pub phone: PhoneNumber,
    /// For a test number: its fixed code (no SMS is sent).
    pub test_code: Option<String>,
    /// The budgets taken (key, window), for [`Policy::refund`]; not the abuse signal of
    /// sends, which keeps a send the phones could not carry (demand is a signal too).
    taken: Vec<(String, i64)>,
    /// Where the send stands when the phones' budget is short.
    pub priority: Priority,
    /// What the caller paid: proof-of-work bits, [`TRUSTED_WORK`] for an API key.
    pub work: u8,
}

impl fmt::Debug for Admission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Admission")
            .field("test_code", &self.test_code.as_ref().map(|_| "[redacted]"))
            .field("priority", &self.priority)
            .finish()
    }
}

/// Why a request was refused.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The destination is not a valid number (400 `invalid_phone`), or is outside the
    /// allowed regions or types or in a blocked range (403 `destination_not_allowed`).
    /// The class goes to the log, audit and metrics, never to the answer.
    #[error("destination refused: {0}")]
    Destination(Refusal),
    /// A budget is spent (429 `rate_limited`, `Retry-After`).
    #[error("rate limited ({scope}), retry in {retry_after_secs} s")]
    RateLimited {
        /// Which budget: `phone`, `ip`, `prefix`, `global` or `check_ip`.
        scope: &'static str,
        /// Seconds until the window frees up.
        retry_after_secs: u64,
    },
    /// Proof of work is needed: solve `challenge` and send the solution (428 `pow_required`).
    #[error("proof of work required")]
    PowRequired {
        /// The challenge (`otpgate_core::pow` format).
        challenge: String,
    },
    /// The proof-of-work solution is invalid (400).
    #[error("invalid proof of work: {0}")]
    PowInvalid(PowError),
    /// The proof-of-work solution was already used (403 `pow_replayed`).
    #[error("proof of work already used")]
    PowReplayed,
    /// The store failed (503 `store_unavailable`).
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl PolicyError {
    /// The stable code of this refusal on the wire.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Destination(r) => r.code(),
            Self::RateLimited { scope, .. } => rate_code(scope),
            Self::PowRequired { .. } => ErrorCode::PowRequired,
            Self::PowInvalid(e) => e.code(),
            Self::PowReplayed => ErrorCode::PowReplayed,
            Self::Store(_) => ErrorCode::StoreUnavailable,
        }
    }
}

/// The code of a refusal by the budget of `scope`: the per-(number, address) budget and
/// the lock of a number have their own; every other budget is `rate_limited`.
pub fn rate_code(scope: &str) -> ErrorCode {
    match scope {
        SCOPE_PHONE_IP => ErrorCode::TooManyStarts,
        SCOPE_NUMBER_LOCKED => ErrorCode::NumberLocked,
        _ => ErrorCode::RateLimited,
    }
}

/// The scope of the per-(number, address) start budget.
const SCOPE_PHONE_IP: &str = "phone_ip";
/// The scope of a number's lock after too many wrong codes.
const SCOPE_NUMBER_LOCKED: &str = "number_locked";
/// Wrong codes per number (`{prefix}{e164}`).
const FAILED_CHECKS_PREFIX: &str = "pol:b:fc:";
/// Sends to one number (`{prefix}{e164}`): its `phone` budget.
const PHONE_PREFIX: &str = "pol:b:ph:";

/// Store keys of the signals.
const SIGNAL_SENT: &str = "pol:sig:sent";
const SIGNAL_APPROVED: &str = "pol:sig:ok";
/// Anonymous sends over the `global` budget's window: the send-rate signal.
const SIGNAL_RATE: &str = "pol:sig:rate";
/// The prefix of every signal key: signals are never refunded.
const SIGNAL_PREFIX: &str = "pol:sig:";
const GLOBAL_KEY: &str = "pol:b:g";
/// The daily budget of one number (`{prefix}{e164}`).
const PHONE_DAILY_PREFIX: &str = "pol:b:pd:";
/// How long the global part of the difficulty is reused before it is computed again (three
/// counter reads): short, so a flood meets the raised difficulty within a fraction of a
/// second.
const SIGNAL_CACHE_MS: i64 = 100;
/// The least proof of work that counts as paying for a send ([`Priority::Paid`]), unless
/// `max_difficulty` is lower: below it a challenge is a speed bump (4096 hashes take a bot
/// under a millisecond), not payment. In one flood run an attacker that solved the 6-bit
/// challenges of the first signal step took the paid share of a phone's budget.
pub const PAID_MIN_BITS: u8 = 12;
/// How long approvals are gathered before they are counted in the store in one step.
const APPROVAL_FLUSH: std::time::Duration = std::time::Duration::from_millis(100);

/// Approvals not yet counted in the store ([`Policy::record_approval_later`]).
#[derive(Default)]
struct ApprovalTally {
    pending: AtomicU32,
    /// The latest approval's time, Unix ms: the window they are counted in.
    latest_ms: AtomicI64,
    /// A flush is scheduled.
    scheduled: AtomicBool,
}

/// The policy in force.
pub struct Policy {
    cfg: PolicyConfig,
    store: Arc<dyn Store>,
    pow_key: Zeroizing<Vec<u8>>,
    api_keys: Vec<[u8; 32]>,
    /// E.164 → fixed code.
    test_numbers: BTreeMap<String, String>,
    allowed: Vec<Region>,
    types: Vec<NumberType>,
    blocked: Vec<NumberPrefix>,
    /// (computed at ms, global difficulty part).
    signal_cache: Mutex<Option<(i64, u8)>>,
    /// The highest global difficulty of late and until when it holds (Unix ms).
    held: Mutex<(i64, u8)>,
    difficulty: AtomicU8,
    /// SMS per minute the gateways can send (0: unknown), see [`Policy::set_send_capacity`].
    send_capacity: AtomicU32,
    approvals: Arc<ApprovalTally>,
}

impl fmt::Debug for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Policy")
            .field("allowed_regions", &self.allowed)
            .field("allowed_number_types", &self.types)
            .field("api_keys", &self.api_keys.len())
            .field("test_numbers", &self.test_numbers.len())
            .field("pow_key", &"[redacted]")
            .finish()
    }
}

fn retry_secs(ms: i64) -> u64 {
    u64::try_from(ms.max(0)).unwrap_or(0).div_ceil(1000).max(1)
}

/// The key of an IP: IPv4 as is, IPv6 by its /64 (one subscriber gets a whole /64).
fn ip_key(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

impl Policy {
    /// The policy for a validated configuration. `api_keys` entries that cannot be
    /// resolved are ignored ([`PolicyConfig::validate`] reports them first).
    pub fn new(cfg: PolicyConfig, store: Arc<dyn Store>, pow_key: Vec<u8>) -> Self {
        let api_keys = cfg
            .api_keys
            .iter()
            .filter_map(|k| resolve_api_key(k).ok())
            .collect();
        let test_numbers = cfg
            .test_numbers
            .iter()
            .filter_map(|(p, c)| {
                PhoneNumber::parse(p)
                    .ok()
                    .map(|p| (p.as_str().to_owned(), c.clone()))
            })
            .collect();
        let allowed = cfg.allowed_regions.clone();
        let types = cfg.allowed_number_types.clone();
        let blocked = cfg.blocked_prefixes.clone();
        let base = if cfg.pow.enabled {
            cfg.pow.base_difficulty
        } else {
            0
        };
        Self {
            cfg,
            store,
            pow_key: Zeroizing::new(pow_key),
            api_keys,
            test_numbers,
            allowed,
            types,
            blocked,
            signal_cache: Mutex::new(None),
            held: Mutex::new((i64::MIN, 0)),
            send_capacity: AtomicU32::new(0),
            difficulty: AtomicU8::new(base),
            approvals: Arc::default(),
        }
    }

    /// Tells the policy how many SMS per minute the gateways can send in all (the sum of
    /// the devices' budgets): the global send signal of the proof of work then rises at half
    /// of that, not only at half of the `global` budget.
    pub fn set_send_capacity(&self, per_minute: u32) {
        self.send_capacity.store(per_minute, Ordering::Relaxed);
        if let Ok(mut guard) = self.signal_cache.lock() {
            *guard = None;
        }
    }

    /// The configuration.
    pub fn config(&self) -> &PolicyConfig {
        &self.cfg
    }

    /// Judges a destination as a phone number: valid for its region, in an allowed region
    /// and type, outside the blocked ranges. Answers the normalised number.
    ///
    /// # Errors
    /// [`PolicyError::Destination`] with the class of the refusal.
    pub fn judge(&self, phone: &PhoneNumber) -> Result<Destination, PolicyError> {
        self.admit_destination(destination::classify(phone))
    }

    /// The policy's verdict on a classified destination.
    fn admit_destination(
        &self,
        classified: Result<Destination, Refusal>,
    ) -> Result<Destination, PolicyError> {
        let d = classified.map_err(PolicyError::Destination)?;
        let region_ok = self.cfg.danger_allow_all_regions
            || d.region.is_some_and(|r| self.allowed.contains(&r));
        if !region_ok {
            return Err(PolicyError::Destination(Refusal::Region));
        }
        if !self.types.contains(&d.kind) {
            return Err(PolicyError::Destination(Refusal::NumberType));
        }
        if self.blocked.iter().any(|p| p.contains(&d.phone)) {
            return Err(PolicyError::Destination(Refusal::BlockedPrefix));
        }
        Ok(d)
    }

    /// Where a start or resend goes: a test number (as given, or as normalised when written
    /// with a trunk zero) with its code, else the judged number. The number is classified
    /// with the metadata once.
    fn route(&self, phone: &PhoneNumber) -> Result<(PhoneNumber, Option<String>), PolicyError> {
        if let Some(code) = self.test_code(phone) {
            return Ok((phone.clone(), Some(code.to_owned())));
        }
        let classified = destination::classify(phone);
        if let Ok(d) = &classified
            && let Some(code) = self.test_code(&d.phone)
        {
            return Ok((d.phone.clone(), Some(code.to_owned())));
        }
        Ok((self.admit_destination(classified)?.phone, None))
    }

    fn send_budgets(
        &self,
        ctx: &StartContext<'_>,
        phone: &PhoneNumber,
        with_ip: bool,
    ) -> Vec<(&'static str, String, Limit)> {
        let b = &self.cfg.budgets;
        let e164 = phone.as_str();
        let mut v = vec![
            ("phone", format!("{PHONE_PREFIX}{e164}"), b.phone),
            (
                "phone",
                format!("{PHONE_DAILY_PREFIX}{e164}"),
                b.phone_daily,
            ),
        ];
        if with_ip && !ctx.trusted {
            let ip = ip_key(ctx.client_ip);
            v.push(("ip", format!("pol:b:ip:{ip}"), b.ip));
            v.push((SCOPE_PHONE_IP, format!("pol:b:pi:{e164}|{ip}"), b.phone_ip));
        }
        v.push(("prefix", self.prefix_key(phone), b.prefix));
        v.push(("global", GLOBAL_KEY.to_owned(), b.global));
        // The abuse signals (send rate, sends in the window): never refuse, counted with the
        // budgets, and only for anonymous callers: a trusted backend's sends (and their
        // approvals) must neither hide a flood nor raise the difficulty for everyone.
        if !ctx.trusted {
            v.push((
                "prefix",
                self.prefix_signal_key(phone),
                Limit::new(u32::MAX, b.prefix.window_secs),
            ));
            v.push((
                "global",
                SIGNAL_RATE.to_owned(),
                Limit::new(u32::MAX, b.global.window_secs),
            ));
            v.push((
                "global",
                SIGNAL_SENT.to_owned(),
                Limit::new(u32::MAX, self.cfg.pow.signal_window_secs),
            ));
        }
        v
    }

    fn prefix_key(&self, phone: &PhoneNumber) -> String {
        format!("pol:b:px:{}", phone.prefix(self.cfg.prefix_digits))
    }

    /// Anonymous sends on a prefix over the prefix budget's window: the burst signal.
    fn prefix_signal_key(&self, phone: &PhoneNumber) -> String {
        format!("{SIGNAL_PREFIX}px:{}", phone.prefix(self.cfg.prefix_digits))
    }

    /// What the store answered for a [`Gate`]'s budgets: the admission, or the refusal
    /// naming the budget that was spent.
    ///
    /// # Errors
    /// [`PolicyError::RateLimited`] with the spent budget's scope.
    pub fn settle(&self, gate: Gate, taken: &TakenBudgets) -> Result<Admission, PolicyError> {
        match taken {
            TakenBudgets::Allowed { remaining } => Ok(Admission {
                work: gate.work,
                priority: if gate.work > 0
                    && gate.work >= PAID_MIN_BITS.min(self.cfg.pow.max_difficulty)
                {
                    Priority::Paid
                } else if self.first_today(&gate, remaining) {
                    Priority::First
                } else {
                    Priority::Repeat
                },
                phone: gate.phone,
                test_code: gate.test_code,
                taken: gate
                    .budgets
                    .iter()
                    .filter(|(_, key, _)| !key.starts_with(SIGNAL_PREFIX))
                    .map(|(_, key, limit)| (key.clone(), limit.window_ms()))
                    .collect(),
            }),
            TakenBudgets::Exhausted {
                index,
                retry_after_ms,
            } => Err(PolicyError::RateLimited {
                scope: gate.budgets.get(*index).map_or("global", |b| b.0),
                retry_after_secs: retry_secs(*retry_after_ms),
            }),
        }
    }

    /// Whether the send just counted is the number's first of the day (its daily phone
    /// budget now holds one).
    fn first_today(&self, gate: &Gate, remaining: &[u32]) -> bool {
        let daily = self.cfg.budgets.phone_daily;
        gate.budgets
            .iter()
            .zip(remaining)
            .find(|((_, key, _), _)| key.starts_with(PHONE_DAILY_PREFIX))
            .is_some_and(|(_, left)| left.saturating_add(1) == daily.limit)
    }

    /// Takes a gate's budgets on their own (all or nothing) and settles.
    async fn take_all(&self, gate: Gate, now_ms: i64) -> Result<Admission, PolicyError> {
        let taken = self.store.take_budgets(&gate.requests(), now_ms).await?;
        self.settle(gate, &taken)
    }

    /// Gives back the send budgets an [`Admission`] took, when the send it admitted could
    /// not leave (no gateway capacity): a refused send must not eat the person's quota.
    /// It stays counted in the abuse signal: a flood that keeps the phones full and never
    /// enters a code must raise the proof of work, not hide behind the refusals.
    pub async fn refund(&self, admission: &Admission, now_ms: i64) {
        for (key, window_ms) in &admission.taken {
            // Best effort: a failed refund only makes the budget stricter.
            let _ = self.store.refund_budget(key, *window_ms, now_ms).await;
        }
    }

    fn signal_window_ms(&self) -> i64 {
        i64::try_from(self.cfg.pow.signal_window_secs.saturating_mul(1000)).unwrap_or(i64::MAX)
    }

    /// The part of the difficulty that depends on global signals (cached briefly).
    async fn global_difficulty(&self, now_ms: i64) -> Result<u8, StoreError> {
        if let Ok(guard) = self.signal_cache.lock()
            && let Some((at, d)) = *guard
            && (at..at + SIGNAL_CACHE_MS).contains(&now_ms)
        {
            return Ok(d);
        }
        let p = &self.cfg.pow;
        let g = self.cfg.budgets.global;
        let w = self.signal_window_ms();
        let (used, sent, approved) = tokio::try_join!(
            self.recent(SIGNAL_RATE, g.window_ms(), now_ms),
            self.recent(SIGNAL_SENT, w, now_ms),
            self.recent(SIGNAL_APPROVED, w, now_ms),
        )?;
        let mut d = p.base_difficulty;
        // Global send rate against its budget, or against what the gateways can send in that
        // window when that is less: a flood must not drain the phones before the proof of
        // work rises.
        let mut frac = used / f64::from(g.limit.max(1));
        let per_minute = self.send_capacity.load(Ordering::Relaxed);
        if per_minute > 0 {
            let in_window = f64::from(per_minute) * g.window_secs as f64 / 60.0;
            frac = frac.max(used / in_window.max(1.0));
        }
        if frac >= 0.5 {
            d = d.saturating_add(p.step);
        }
        if frac >= 0.8 {
            d = d.saturating_add(p.step);
        }
        // Approval ratio: pumped SMS are never entered.
        if sent >= f64::from(p.min_samples.max(1)) {
            let ratio = approved / sent;
            if ratio < p.min_approval_ratio {
                d = d.saturating_add(p.step);
            }
            if ratio < p.min_approval_ratio / 2.0 {
                d = d.saturating_add(p.step);
            }
        }
        let d = self.hold(d.min(p.max_difficulty), now_ms);
        if let Ok(mut guard) = self.signal_cache.lock() {
            *guard = Some((now_ms, d));
        }
        self.difficulty.store(d, Ordering::Relaxed);
        Ok(d)
    }

    /// The difficulty the signals give, or a higher one raised within `hold_secs`: it rises
    /// at once and falls only after holding.
    fn hold(&self, signalled: u8, now_ms: i64) -> u8 {
        let hold_ms = i64::try_from(self.cfg.pow.hold_secs.saturating_mul(1000)).unwrap_or(0);
        let mut held = self
            .held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if signalled >= held.1 || now_ms >= held.0 {
            *held = (now_ms.saturating_add(hold_ms), signalled);
            return signalled;
        }
        held.1
    }

    /// The count of `key` over the last `window_ms` (a sliding window): the current fixed
    /// window's count plus the previous one's, weighted by the share of it still inside.
    /// A signal read from the current fixed window alone falls to zero at every window
    /// boundary, and a flood would meet no proof of work until it had built the signal
    /// up again.
    async fn recent(&self, key: &str, window_ms: i64, now_ms: i64) -> Result<f64, StoreError> {
        let w = window_ms.max(1);
        let (current, previous) = tokio::try_join!(
            self.store.budget_used(key, w, now_ms),
            self.store.budget_used(key, w, now_ms - w),
        )?;
        let inside = 1.0 - now_ms.rem_euclid(w) as f64 / w as f64;
        Ok(f64::from(current) + f64::from(previous) * inside)
    }

    /// The difficulty asked of a start to `phone` now.
    async fn difficulty_for(&self, phone: &PhoneNumber, now_ms: i64) -> Result<u8, StoreError> {
        let p = &self.cfg.pow;
        if !p.enabled {
            return Ok(0);
        }
        let mut d = self.global_difficulty(now_ms).await?;
        let (px, ph) = (self.cfg.budgets.prefix, self.cfg.budgets.phone);
        let (prefix_key, phone_key) = (
            self.prefix_signal_key(phone),
            format!("{PHONE_PREFIX}{}", phone.as_str()),
        );
        let (on_prefix, to_number) = tokio::try_join!(
            self.store.budget_used(&prefix_key, px.window_ms(), now_ms),
            self.store.budget_used(&phone_key, ph.window_ms(), now_ms),
        )?;
        // A burst of anonymous sends on one prefix (adjacent numbers on one range).
        if f64::from(on_prefix) >= f64::from(px.limit) * 0.5 {
            d = d.saturating_add(p.step);
        }
        // Repeated starts to one number (bombing): a step from the second send in the
        // number's window on, another from the fourth.
        for repeats in [1, 3] {
            if to_number >= repeats {
                d = d.saturating_add(p.step);
            }
        }
        Ok(d.min(p.max_difficulty))
    }

    fn challenge(
        &self,
        binding: &str,
        difficulty: u8,
        now_ms: i64,
    ) -> Result<PolicyError, PolicyError> {
        let ttl = i64::try_from(self.cfg.pow.challenge_ttl_secs).unwrap_or(120);
        let expires = now_ms.div_euclid(1000) + ttl;
        let challenge = pow::issue(&self.pow_key, binding, difficulty, expires, &mut OsRandom)
            .map_err(|_| {
                PolicyError::Store(StoreError::Unavailable("random source failed".into()))
            })?;
        Ok(PolicyError::PowRequired { challenge })
    }

    /// `ctx.phone` is the normalised destination here. Answers whether work was asked
    /// and done: the bits the solution met (0: none asked).
    async fn check_pow(&self, ctx: &StartContext<'_>) -> Result<u8, PolicyError> {
        let difficulty = self.difficulty_for(ctx.phone, ctx.now_ms).await?;
        if difficulty == 0 {
            return Ok(0);
        }
        let binding = format!("{}|{}", ctx.app, ctx.phone.as_str());
        let Some(sol) = ctx.pow else {
            return Err(self.challenge(&binding, difficulty, ctx.now_ms)?);
        };
        let now_secs = ctx.now_ms.div_euclid(1000);
        let met = pow::verify(&self.pow_key, &binding, &sol.challenge, sol.nonce, now_secs)
            .map_err(PolicyError::PowInvalid)?;
        // A challenge issued before the difficulty rose still counts, within one step.
        if met < difficulty.saturating_sub(self.cfg.pow.step) {
            return Err(self.challenge(&binding, difficulty, ctx.now_ms)?);
        }
        let (_, expires) = pow::describe(&sol.challenge).map_err(PolicyError::PowInvalid)?;
        let ttl_ms = (expires - now_secs + 1).max(1).saturating_mul(1000);
        let digest = hex::encode(Sha256::digest(sol.challenge.as_bytes()));
        if !self
            .store
            .once(&format!("pow:{digest}"), ttl_ms, ctx.now_ms)
            .await?
        {
            return Err(PolicyError::PowReplayed);
        }
        Ok(met)
    }

    /// Refuses an anonymous send to a number locked by too many wrong codes
    /// (`budgets.failed_checks`): 429 `number_locked` until the window ends.
    async fn check_lock(&self, phone: &PhoneNumber, now_ms: i64) -> Result<(), PolicyError> {
        let l = self.cfg.budgets.failed_checks;
        let w = l.window_ms();
        let failed = self
            .store
            .budget_used(
                &format!("{FAILED_CHECKS_PREFIX}{}", phone.as_str()),
                w,
                now_ms,
            )
            .await?;
        if failed < l.limit {
            return Ok(());
        }
        Err(PolicyError::RateLimited {
            scope: SCOPE_NUMBER_LOCKED,
            retry_after_secs: retry_secs(w - now_ms.rem_euclid(w)),
        })
    }

    /// Counts a wrong code entered for `phone` (best effort: a failure to count is logged).
    pub async fn record_failed_check(&self, phone: &PhoneNumber, now_ms: i64) {
        let l = self.cfg.budgets.failed_checks;
        let key = format!("{FAILED_CHECKS_PREFIX}{}", phone.as_str());
        if let Err(e) = self
            .store
            .add_to_budget(&key, 1, l.window_ms(), now_ms)
            .await
        {
            tracing::warn!(error = %e, "could not count a wrong code");
        }
    }

    /// Every gate of a start that counts nothing: test numbers (they bypass the rest), the
    /// destination, the adaptive proof of work (API-key callers skip it). The budgets
    /// (phone, IP, prefix, global; API-key callers skip the IP budget) are left to take.
    ///
    /// # Errors
    /// [`PolicyError`] naming the gate that refused.
    pub async fn gate_start(&self, ctx: &StartContext<'_>) -> Result<Gate, PolicyError> {
        let (phone, test_code) = self.route(ctx.phone)?;
        if test_code.is_some() {
            return Ok(Gate {
                phone,
                test_code,
                budgets: Vec::new(),
                work: 0,
            });
        }
        let ctx = StartContext {
            phone: &phone,
            ..ctx.clone()
        };
        if !ctx.trusted {
            self.check_lock(&phone, ctx.now_ms).await?;
        }
        let work = if ctx.trusted {
            TRUSTED_WORK
        } else {
            self.check_pow(&ctx).await?
        };
        let budgets = self.send_budgets(&ctx, &phone, true);
        Ok(Gate {
            phone,
            test_code: None,
            budgets,
            work,
        })
    }

    /// Every gate before a send: [`Policy::gate_start`], then the budgets taken.
    ///
    /// # Errors
    /// [`PolicyError`] naming the gate that refused.
    pub async fn admit_start(&self, ctx: &StartContext<'_>) -> Result<Admission, PolicyError> {
        let gate = self.gate_start(ctx).await?;
        self.take_all(gate, ctx.now_ms).await
    }

    /// Gate before a resend: the destination again, and the phone, prefix and global
    /// budgets (the cooldown is enforced by the store's `rotate`).
    ///
    /// # Errors
    /// [`PolicyError`] naming the gate that refused.
    pub async fn admit_resend(&self, ctx: &StartContext<'_>) -> Result<Admission, PolicyError> {
        let (phone, test_code) = self.route(ctx.phone)?;
        if test_code.is_some() {
            return Ok(Admission {
                phone,
                test_code,
                taken: Vec::new(),
                priority: Priority::Repeat,
                work: 0,
            });
        }
        if !ctx.trusted {
            self.check_lock(&phone, ctx.now_ms).await?;
        }
        // A resend asks no proof of work: it is paid for only by a trusted caller, and
        // anonymous resends are repeats.
        let gate = Gate {
            budgets: self.send_budgets(ctx, &phone, false),
            phone,
            test_code: None,
            work: if ctx.trusted { TRUSTED_WORK } else { 0 },
        };
        self.take_all(gate, ctx.now_ms).await
    }

    /// The per-IP check budget of `client_ip`: (key, limit, window ms), for
    /// [`crate::store::Store::check`].
    pub fn check_budget(&self, client_ip: IpAddr) -> (String, u32, i64) {
        let l = self.cfg.budgets.check_ip;
        (
            format!("pol:b:ck:{}", ip_key(client_ip)),
            l.limit,
            l.window_ms(),
        )
    }

    /// The refusal of a spent check budget.
    pub fn check_refused(retry_after_ms: i64) -> PolicyError {
        PolicyError::RateLimited {
            scope: "check_ip",
            retry_after_secs: retry_secs(retry_after_ms),
        }
    }

    /// Per-IP limit on checks (brute force across verifications).
    ///
    /// # Errors
    /// [`PolicyError::RateLimited`] with scope `check_ip`, or [`PolicyError::Store`].
    pub async fn admit_check(&self, client_ip: IpAddr, now_ms: i64) -> Result<(), PolicyError> {
        let (key, limit, window_ms) = self.check_budget(client_ip);
        match self
            .store
            .take_budget(&key, limit, window_ms, now_ms)
            .await?
        {
            Budget::Allowed { .. } => Ok(()),
            Budget::Exhausted { retry_after_ms } => Err(Self::check_refused(retry_after_ms)),
        }
    }

    /// Feeds the abuse signals (approval ratio) after a check.
    pub async fn record_check(&self, approved: bool, now_ms: i64) {
        if approved {
            // A signal only: a failure is ignored.
            let _ = self
                .store
                .add_to_budget(SIGNAL_APPROVED, 1, self.signal_window_ms(), now_ms)
                .await;
        }
    }

    /// [`Policy::record_check`] of an approval in the background: an approval is not kept
    /// waiting for a signal. Approvals are gathered for [`APPROVAL_FLUSH`] and counted in
    /// one store step (one step per 100 ms instead of one per approval; the signal lags by
    /// that much, and a stop loses at most that much of it).
    pub fn record_approval_later(&self, now_ms: i64) {
        let tally = &self.approvals;
        tally.pending.fetch_add(1, Ordering::AcqRel);
        tally.latest_ms.fetch_max(now_ms, Ordering::AcqRel);
        if tally.scheduled.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            tally.scheduled.store(false, Ordering::Release);
            return;
        };
        let (store, window, tally) = (
            Arc::clone(&self.store),
            self.signal_window_ms(),
            Arc::clone(tally),
        );
        rt.spawn(async move {
            tokio::time::sleep(APPROVAL_FLUSH).await;
            // Cleared first: an approval counted after the swap schedules the next flush.
            tally.scheduled.store(false, Ordering::Release);
            let n = tally.pending.swap(0, Ordering::AcqRel);
            if n > 0 {
                let at = tally.latest_ms.load(Ordering::Acquire);
                // A signal only: a failure is ignored.
                let _ = store.add_to_budget(SIGNAL_APPROVED, n, window, at).await;
            }
        });
    }

    /// Code lifetime, ms.
    pub fn lifetime_ms(&self) -> i64 {
        i64::try_from(self.cfg.lifetime_secs.clamp(60, 600)).unwrap_or(300) * 1000
    }

    /// Checks per code.
    pub fn max_attempts(&self) -> u32 {
        self.cfg.max_attempts
    }

    /// SMS per verification, the first included.
    pub fn max_sends(&self) -> u32 {
        self.cfg.max_sends
    }

    /// The wait before the next resend after `sends_so_far` SMS: the cooldown, doubled for
    /// each resend already made, capped at `max_cooldown_secs`.
    pub fn cooldown_ms(&self, sends_so_far: u32) -> i64 {
        let doublings = sends_so_far.saturating_sub(1).min(20);
        let secs = self
            .cfg
            .cooldown_secs
            .saturating_mul(1u64 << doublings)
            .min(self.cfg.max_cooldown_secs);
        i64::try_from(secs).unwrap_or(3600).saturating_mul(1000)
    }

    /// The fixed code of a test number (never sent).
    pub fn test_code(&self, phone: &PhoneNumber) -> Option<&str> {
        self.test_numbers.get(phone.as_str()).map(String::as_str)
    }

    /// Whether `presented` is one of the configured API keys, in constant time.
    pub fn api_key_valid(&self, presented: &str) -> bool {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        // Compare against every key without stopping early.
        self.api_keys
            .iter()
            .fold(false, |found, k| found | ct_eq(k, &digest))
    }

    /// The difficulty asked for now, without per-prefix signals (for metrics).
    pub fn current_difficulty(&self) -> u8 {
        self.difficulty.load(Ordering::Relaxed)
    }
}

/// Proof of work above the base difficulty is the policy's verdict that anonymous traffic
/// must pay: the gateway's queue then holds back the sends that paid less than what is asked
/// now (within one step, as a challenge issued before a rise is accepted): a burst that
/// queued on cheap work before the difficulty rose does not drain afterwards.
impl Pressure for Policy {
    fn required_work(&self) -> Option<u8> {
        let d = self.current_difficulty();
        (self.cfg.pow.enabled && d > self.cfg.pow.base_difficulty)
            .then(|| d.saturating_sub(self.cfg.pow.step).max(1))
    }
}
