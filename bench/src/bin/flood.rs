//! SMS-pumping flood against a running `otpgate serve` whose gateway is a real
//! `otpgate emulator` (see `scripts/bench.sh flood`, which starts both with the default policy:
//! proof of work on, default budgets, only the country allow-list narrowed).
//!
//! ```text
//! cargo run --release -p otpgate-bench --bin flood -- \
//!     --base http://127.0.0.1:8080 --emulator http://127.0.0.1:8081 --allowed GB,US,CA \
//!     --duration-secs 30 [--json out.json]
//! ```
//!
//! Two populations, each from its own loopback source addresses (`127.0.0.0/8` is all
//! loopback on Linux: every client socket is bound to a distinct `127.x.y.z`, so the issuer
//! sees distinct peers; `X-Forwarded-For` is not used):
//! - **attackers** (`--attackers` addresses, `--attack-concurrency` requests in flight, no
//!   pause): starts towards blocked countries, premium-rate ranges of allowed countries and
//!   sequential numbers on one range. They solve a proof-of-work challenge only when its
//!   difficulty is at most `--attacker-pow-bits` (cheap ones), otherwise move on.
//! - **legitimate users** (`--legit-per-sec`, each from a fresh address, to a random mobile
//!   number of an allowed country): start, solve whatever challenge comes with
//!   `otpgate_core::pow::solve`, read the SMS from the emulator's outbox
//!   (`GET /_emulator/messages?phone=`), parse it with `otpgate_core::sms::parse` and check
//!   the code. One try each (a real user facing an error gives up or waits).
//!
//! Meanwhile `/metrics` is sampled every second (`otpgate_pow_difficulty`, gateway
//! counters). At the end the emulator's whole outbox is read: sends to blocked countries (must
//! be 0), sends to attacker numbers, sends to legitimate users.

#[path = "../shared.rs"]
mod shared;

use shared::Rng;
use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use otpgate_core::phone::PhoneNumber;
use otpgate_core::wire::{CheckRequest, ErrorBody, PowSolution, StartRequest, VerificationView};
use otpgate_server::destination;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::Mutex;

/// Options.
#[derive(Debug, Parser)]
#[command(about = "SMS-pumping flood against otpgate serve + otpgate emulator")]
struct Args {
    /// The issuer's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    base: String,
    /// The emulator's base URL (its outbox: `/_emulator/messages`).
    #[arg(long, default_value = "http://127.0.0.1:8081")]
    emulator: String,
    /// The app name sent with starts.
    #[arg(long, default_value = "shop")]
    app: String,
    /// The allowed regions (ISO 3166-1 alpha-2), as configured on the issuer.
    #[arg(long, default_value = "GB,US,CA", value_delimiter = ',')]
    allowed: Vec<String>,
    /// Length of the flood, seconds.
    #[arg(long, default_value_t = 30)]
    duration_secs: u64,
    /// Distinct attacker source addresses (127.2.x.y).
    #[arg(long, default_value_t = 1000)]
    attackers: usize,
    /// Attacker requests in flight.
    #[arg(long, default_value_t = 64)]
    attack_concurrency: usize,
    /// Attackers solve challenges up to this difficulty (bits; 0 = never).
    #[arg(long, default_value_t = 8)]
    attacker_pow_bits: u8,
    /// Legitimate users arriving per second (each from a fresh 127.3.x.y address).
    #[arg(long, default_value_t = 0.5)]
    legit_per_sec: f64,
    /// How long a legitimate user waits for the SMS, seconds.
    #[arg(long, default_value_t = 30)]
    sms_wait_secs: u64,
    /// Also write the figures as JSON to this file (`-` = stdout).
    #[arg(long)]
    json: Option<String>,
}

/// Answers counted by status code (`io` for transport errors).
type Mix = BTreeMap<String, u64>;

fn bump(mix: &mut Mix, key: impl Into<String>) {
    *mix.entry(key.into()).or_default() += 1;
}

/// What one legitimate user went through.
#[derive(Debug)]
struct LegitOutcome {
    /// Start → approved, ms (only when approved).
    approved_ms: Option<f64>,
    /// Where it stopped: `approved`, `start_<status>_<error code>`, `no_sms`,
    /// `check_<status>`, `start_io`, `check_io`.
    result: String,
    /// Difficulty of the challenge solved (0 = none asked).
    pow_bits: u8,
    /// Time spent solving, ms.
    pow_ms: f64,
}

#[derive(Default, Serialize)]
struct AttackTally {
    requests: u64,
    solved: u64,
    by_kind: BTreeMap<&'static str, Mix>,
}

/// The whole report (also the JSON output).
#[derive(Serialize)]
struct Report {
    duration_s: f64,
    allowed_regions: Vec<String>,
    attacker_addresses: usize,
    attack_concurrency: usize,
    attacker_pow_bits: u8,
    legit: LegitReport,
    attack: AttackReport,
    outbox: OutboxReport,
    gateway: BTreeMap<String, f64>,
    verifications: BTreeMap<String, f64>,
    /// `otpgate_pow_difficulty`, one sample per second from the start of the flood.
    pow_series: Vec<i64>,
    pow_max: i64,
}

#[derive(Serialize)]
struct LegitReport {
    users: usize,
    approved: usize,
    success_rate: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    results: Mix,
    /// Difficulty (bits) of the challenges legitimate users solved → count.
    pow_bits: BTreeMap<u8, u64>,
    pow_p50_ms: f64,
    pow_max_ms: f64,
}

#[derive(Serialize)]
struct AttackReport {
    requests: u64,
    requests_per_s: f64,
    solved_challenges: u64,
    answers: Mix,
    by_kind: BTreeMap<&'static str, Mix>,
}

#[derive(Serialize)]
struct OutboxReport {
    /// Messages the phone sent in total.
    total: usize,
    /// To legitimate users.
    legit: usize,
    /// To attacker numbers in allowed countries (premium-rate, sequential).
    attack_allowed_countries: usize,
    /// Of those, premium-rate / personal-number ranges.
    attack_premium_rate: usize,
    /// Of those, sequential numbers on one range.
    attack_sequential: usize,
    /// To countries outside the allow-list (must be 0).
    blocked_countries: usize,
    /// To numbers neither population used (must be 0).
    unknown: usize,
}

/// The value at `p` of `sorted` milliseconds, 0 when there are none.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    shared::percentile(sorted, p).unwrap_or(0.0)
}

impl Rng {
    fn digits(&mut self, n: u32) -> String {
        format!("{:0width$}", self.next() % 10u64.pow(n), width = n as usize)
    }
}

/// Blocked-region ranges (outside a `GB,US,CA` allow-list): international networks, and
/// countries pumping campaigns often target.
const BLOCKED: &[(&str, u32)] = &[
    ("+88216", 8),  // international satellite networks
    ("+7916", 7),   // Russia, mobile
    ("+234803", 7), // Nigeria, mobile
    ("+99890", 7),  // Uzbekistan, mobile
    ("+880171", 7), // Bangladesh, mobile
    ("+2519", 8),   // Ethiopia, mobile
    ("+963944", 6), // Syria
    ("+2376", 8),   // Cameroon
];

/// Premium-rate and personal-number ranges inside the allowed regions.
const PREMIUM: &[(&str, u32)] = &[
    ("+44909", 7), // UK premium rate (09)
    ("+44871", 7), // UK service numbers (087)
    ("+4470", 8),  // UK personal numbers (070), a classic pumping range
    ("+1900", 7),  // NANP premium rate (900)
    ("+1976", 7),  // NANP, 976 pay-per-call exchanges
];

/// Sequential numbers on one mobile range.
const SEQUENTIAL_RANGE: &str = "+4474009";

fn client_for(ip: IpAddr, timeout: Duration) -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .local_address(ip)
        // Plain HTTP on loopback: no root store to load (a thousand clients are built).
        .tls_certs_only(Vec::<reqwest::Certificate>::new())
        .pool_max_idle_per_host(4)
        .tcp_nodelay(true)
        .timeout(timeout)
        .build()
        .context("http client")
}

/// The n-th address of the 127.`second`.0.0/16 block (never .0 or .255 in the last octet).
fn loopback(second: u8, n: usize) -> IpAddr {
    let n = n % (254 * 256);
    IpAddr::V4(Ipv4Addr::new(
        127,
        second,
        u8::try_from(n / 254).unwrap_or(0),
        u8::try_from(n % 254 + 1).unwrap_or(1),
    ))
}

async fn post_start(
    client: &reqwest::Client,
    base: &str,
    req: &StartRequest,
) -> Result<(u16, Vec<u8>), reqwest::Error> {
    let resp = client
        .post(format!("{base}/v1/verifications"))
        .json(req)
        .send()
        .await?;
    let status = resp.status().as_u16();
    Ok((status, resp.bytes().await?.to_vec()))
}

fn challenge_of(body: &[u8]) -> Option<String> {
    serde_json::from_slice::<ErrorBody>(body)
        .ok()
        .and_then(|e| e.error.challenge)
}

struct Shared {
    args: Args,
    stop: AtomicBool,
    seq: AtomicU64,
    attack_numbers: Mutex<HashSet<String>>,
}

async fn attacker(
    shared: Arc<Shared>,
    worker: usize,
    clients: Arc<Vec<reqwest::Client>>,
) -> AttackTally {
    let mut tally = AttackTally::default();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ ((worker as u64 + 1) << 20));
    let mut numbers = Vec::new();
    let mut i = worker;
    let n_workers = shared.args.attack_concurrency;
    while !shared.stop.load(Ordering::Relaxed) {
        let client = &clients[i % clients.len()];
        i += n_workers;
        let (kind, phone) = match tally.requests % 3 {
            0 => {
                let (p, n) = BLOCKED[(rng.next() % BLOCKED.len() as u64) as usize];
                ("blocked_country", format!("{p}{}", rng.digits(n)))
            }
            1 => {
                let (p, n) = PREMIUM[(rng.next() % PREMIUM.len() as u64) as usize];
                ("premium_rate", format!("{p}{}", rng.digits(n)))
            }
            _ => {
                let s = shared.seq.fetch_add(1, Ordering::Relaxed) % 100_000;
                ("sequential", format!("{SEQUENTIAL_RANGE}{s:05}"))
            }
        };
        numbers.push(phone.clone());
        let mut req = StartRequest {
            phone,
            app: Some(shared.args.app.clone()),
            locale: None,
            pow: None,
        };
        // At most one solved retry per target.
        for attempt in 0..2 {
            tally.requests += 1;
            let answer = post_start(client, &shared.args.base, &req).await;
            let mix = tally.by_kind.entry(kind).or_default();
            match answer {
                Ok((status, body)) => {
                    bump(mix, status.to_string());
                    if status != 428 || attempt == 1 {
                        break;
                    }
                    let Some(challenge) = challenge_of(&body) else {
                        break;
                    };
                    let bits = otpgate_core::pow::describe(&challenge).map_or(255, |d| d.0);
                    if shared.args.attacker_pow_bits == 0 || bits > shared.args.attacker_pow_bits {
                        break;
                    }
                    let Ok(Some(nonce)) = otpgate_core::pow::solve(&challenge, 1 << 16) else {
                        break;
                    };
                    tally.solved += 1;
                    req.pow = Some(PowSolution { challenge, nonce });
                }
                Err(_) => {
                    bump(mix, "io");
                    break;
                }
            }
        }
        if numbers.len() >= 256 {
            shared.attack_numbers.lock().await.extend(numbers.drain(..));
        }
    }
    shared.attack_numbers.lock().await.extend(numbers);
    tally
}

async fn legit_user(shared: Arc<Shared>, n: usize, phone: String) -> LegitOutcome {
    let args = &shared.args;
    let mut out = LegitOutcome {
        approved_ms: None,
        result: String::new(),
        pow_bits: 0,
        pow_ms: 0.0,
    };
    let Ok(client) = client_for(loopback(3, n), Duration::from_secs(30)) else {
        out.result = "client".into();
        return out;
    };
    let started = Instant::now();
    let mut req = StartRequest {
        phone: phone.clone(),
        app: Some(args.app.clone()),
        locale: None,
        pow: None,
    };
    let mut id = None;
    for _ in 0..3 {
        match post_start(&client, &args.base, &req).await {
            Ok((201, body)) => {
                id = serde_json::from_slice::<VerificationView>(&body)
                    .ok()
                    .map(|v| v.id);
                break;
            }
            Ok((428, body)) => {
                let Some(challenge) = challenge_of(&body) else {
                    out.result = "start_428_no_challenge".into();
                    return out;
                };
                out.pow_bits = otpgate_core::pow::describe(&challenge).map_or(0, |d| d.0);
                let t = Instant::now();
                let c = challenge.clone();
                let solved =
                    tokio::task::spawn_blocking(move || otpgate_core::pow::solve(&c, 1 << 28))
                        .await;
                out.pow_ms += t.elapsed().as_secs_f64() * 1000.0;
                let Ok(Ok(Some(nonce))) = solved else {
                    out.result = "pow_unsolved".into();
                    return out;
                };
                req.pow = Some(PowSolution { challenge, nonce });
            }
            Ok((status, body)) => {
                let code = serde_json::from_slice::<ErrorBody>(&body)
                    .map(|e| e.error.code)
                    .unwrap_or_default();
                out.result = format!("start_{status}_{code}");
                return out;
            }
            Err(_) => {
                out.result = "start_io".into();
                return out;
            }
        }
    }
    let Some(id) = id else {
        out.result = "start_no_id".into();
        return out;
    };
    // Read the SMS from the phone's outbox.
    let deadline = Instant::now() + Duration::from_secs(args.sms_wait_secs);
    let code = loop {
        let listed = client
            .get(format!(
                "{}/_emulator/messages?phone={}",
                args.emulator,
                phone.replace('+', "%2B")
            ))
            .send()
            .await;
        if let Ok(resp) = listed
            && let Ok(list) = resp.json::<Vec<Value>>().await
            && let Some(text) = list.last().and_then(|m| m["text"].as_str())
            && let Some(code) = otpgate_core::sms::parse(text).code
        {
            break code;
        }
        if Instant::now() > deadline {
            out.result = "no_sms".into();
            return out;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let checked = client
        .post(format!("{}/v1/verifications/{id}/check", args.base))
        .json(&CheckRequest { code })
        .send()
        .await;
    match checked.map(|r| r.status().as_u16()) {
        Ok(200) => {
            out.approved_ms = Some(started.elapsed().as_secs_f64() * 1000.0);
            out.result = "approved".into();
        }
        Ok(s) => out.result = format!("check_{s}"),
        Err(_) => out.result = "check_io".into(),
    }
    out
}

/// Values of the samples named `name` (any labels), summed.
fn metric(text: &str, name: &str) -> Option<f64> {
    let mut found = None;
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        if !(rest.starts_with(' ') || rest.starts_with('{')) {
            continue;
        }
        if let Some(v) = rest.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) {
            *found.get_or_insert(0.0) += v;
        }
    }
    found
}

/// Every sample of the family `name` as `labels → value`.
fn metric_family(text: &str, name: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        if let Some(labels) = rest.strip_prefix('{')
            && let Some((labels, value)) = labels.split_once("} ")
            && let Ok(v) = value.trim().parse::<f64>()
        {
            out.insert(labels.to_owned(), v);
        }
    }
    out
}

/// A random number the issuer holds a valid mobile (or fixed-or-mobile) of an allowed
/// region: candidates are drawn from each region's mobile ranges and kept when the same
/// libphonenumber metadata the issuer uses agrees.
fn random_mobile(rng: &mut Rng, allowed: &[String]) -> String {
    loop {
        let region = &allowed[(rng.next() % allowed.len() as u64) as usize];
        let candidate = match region.as_str() {
            "GB" => format!("+447{}{}", 4 + rng.next() % 6, rng.digits(8)),
            "US" => format!(
                "+1{}{}{}",
                US_AREAS[(rng.next() % 6) as usize],
                2 + rng.next() % 8,
                rng.digits(6)
            ),
            "CA" => format!(
                "+1{}{}{}",
                CA_AREAS[(rng.next() % 4) as usize],
                2 + rng.next() % 8,
                rng.digits(6)
            ),
            "FR" => format!("+336{}", rng.digits(8)),
            "DE" => format!("+49151{}", rng.digits(8)),
            "PT" => format!("+3519{}{}", 1 + rng.next() % 3, rng.digits(7)),
            _ => continue,
        };
        if in_regions(&candidate, allowed) {
            return candidate;
        }
    }
}

/// Area codes the legitimate users' numbers are drawn from.
const US_AREAS: [u32; 6] = [415, 212, 646, 312, 617, 206];
const CA_AREAS: [u32; 4] = [604, 416, 514, 403];

/// Whether libphonenumber's metadata puts `phone` in one of `regions`.
fn in_regions(phone: &str, regions: &[String]) -> bool {
    PhoneNumber::parse(phone)
        .ok()
        .and_then(|p| destination::region_of(&p))
        .is_some_and(|r| regions.iter().any(|a| *a == r.to_string()))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        args.attackers > 0 && args.attack_concurrency > 0 && !args.allowed.is_empty(),
        "need attackers, workers and an allow-list"
    );
    let probe = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    for url in [
        format!("{}/healthz", args.base),
        format!("{}/_emulator/messages?phone=%2B10000000000", args.emulator),
    ] {
        let mut ok = false;
        for _ in 0..100 {
            if probe
                .get(&url)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                ok = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        anyhow::ensure!(ok, "{url} does not answer");
    }
    // Loopback addresses other than 127.0.0.1 must be bindable (Linux: all of 127/8).
    client_for(loopback(2, 0), Duration::from_secs(5))?
        .get(format!("{}/healthz", args.base))
        .send()
        .await
        .context(
            "cannot connect from 127.2.0.1: this needs the whole 127.0.0.0/8 on loopback (Linux)",
        )?;

    let t = Instant::now();
    let clients: Vec<reqwest::Client> = (0..args.attackers)
        .map(|i| client_for(loopback(2, i), Duration::from_secs(10)))
        .collect::<anyhow::Result<_>>()?;
    let clients = Arc::new(clients);
    eprintln!(
        "flood: {} attacker addresses ({} ms to set up), {} in flight, attackers solve <= {} bits; {} legitimate users/s; {} s",
        args.attackers,
        t.elapsed().as_millis(),
        args.attack_concurrency,
        args.attacker_pow_bits,
        args.legit_per_sec,
        args.duration_secs
    );

    let shared = Arc::new(Shared {
        args,
        stop: AtomicBool::new(false),
        seq: AtomicU64::new(0),
        attack_numbers: Mutex::new(HashSet::new()),
    });
    let duration = Duration::from_secs(shared.args.duration_secs);
    let started = Instant::now();

    // /metrics once a second.
    let sampler = {
        let shared = Arc::clone(&shared);
        let probe = probe.clone();
        tokio::spawn(async move {
            let mut series = Vec::new();
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            while !shared.stop.load(Ordering::Relaxed) {
                tick.tick().await;
                let text = match probe
                    .get(format!("{}/metrics", shared.args.base))
                    .send()
                    .await
                {
                    Ok(r) => r.text().await.unwrap_or_default(),
                    Err(_) => String::new(),
                };
                series.push(metric(&text, "otpgate_pow_difficulty").map_or(-1, |v| v as i64));
            }
            series
        })
    };

    let attackers: Vec<_> = (0..shared.args.attack_concurrency)
        .map(|w| tokio::spawn(attacker(Arc::clone(&shared), w, Arc::clone(&clients))))
        .collect();

    // Legitimate users at a steady rate.
    let mut users = Vec::new();
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let gap = Duration::from_secs_f64(1.0 / shared.args.legit_per_sec.max(0.01));
    let mut next = started;
    let mut legit_numbers = HashSet::new();
    while started.elapsed() < duration {
        let phone = random_mobile(&mut rng, &shared.args.allowed);
        legit_numbers.insert(phone.clone());
        users.push(tokio::spawn(legit_user(
            Arc::clone(&shared),
            users.len(),
            phone,
        )));
        next += gap;
        tokio::time::sleep_until(next.into()).await;
    }
    shared.stop.store(true, Ordering::Relaxed);
    let attack_elapsed = started.elapsed();
    let mut tally = AttackTally::default();
    for a in attackers {
        if let Ok(t) = a.await {
            tally.requests += t.requests;
            tally.solved += t.solved;
            for (k, mix) in t.by_kind {
                let into = tally.by_kind.entry(k).or_default();
                for (s, n) in mix {
                    *into.entry(s).or_default() += n;
                }
            }
        }
    }
    // The legitimate users still in flight finish (each bounded by its SMS wait).
    let mut outcomes = Vec::new();
    for u in users {
        if let Ok(o) = u.await {
            outcomes.push(o);
        }
    }
    let pow_series = sampler.await.unwrap_or_default();
    // Let the phone finish what it accepted.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let outbox: Vec<Value> = probe
        .get(format!("{}/_emulator/messages", shared.args.emulator))
        .send()
        .await?
        .json()
        .await
        .context("the emulator's outbox")?;
    let attack_numbers = shared.attack_numbers.lock().await.clone();
    let mut ob = OutboxReport {
        total: outbox.len(),
        legit: 0,
        attack_allowed_countries: 0,
        attack_premium_rate: 0,
        attack_sequential: 0,
        blocked_countries: 0,
        unknown: 0,
    };
    for m in &outbox {
        let phone = m["phone"].as_str().unwrap_or_default();
        let allowed = in_regions(phone, &shared.args.allowed);
        if !allowed {
            ob.blocked_countries += 1;
        } else if legit_numbers.contains(phone) {
            ob.legit += 1;
        } else if attack_numbers.contains(phone) {
            ob.attack_allowed_countries += 1;
            if PREMIUM.iter().any(|(p, _)| phone.starts_with(p)) {
                ob.attack_premium_rate += 1;
            } else if phone.starts_with(SEQUENTIAL_RANGE) {
                ob.attack_sequential += 1;
            }
        } else {
            ob.unknown += 1;
        }
    }
    let metrics_text = probe
        .get(format!("{}/metrics", shared.args.base))
        .send()
        .await?
        .text()
        .await?;
    let gateway = metric_family(&metrics_text, "otpgate_gateway_messages_total")
        .into_iter()
        .map(|(k, v)| (k.replace("event=", "").replace('"', ""), v))
        .collect();
    let verifications = metric_family(&metrics_text, "otpgate_verifications_total")
        .into_iter()
        .map(|(k, v)| (k.replace("outcome=", "").replace('"', ""), v))
        .collect();

    let mut lat: Vec<f64> = outcomes.iter().filter_map(|o| o.approved_ms).collect();
    lat.sort_by(f64::total_cmp);
    let mut pow_ms: Vec<f64> = outcomes
        .iter()
        .filter(|o| o.pow_bits > 0)
        .map(|o| o.pow_ms)
        .collect();
    pow_ms.sort_by(f64::total_cmp);
    let mut results = Mix::new();
    let mut pow_bits = BTreeMap::new();
    for o in &outcomes {
        bump(&mut results, o.result.clone());
        *pow_bits.entry(o.pow_bits).or_insert(0u64) += 1;
    }
    let mut answers = Mix::new();
    for mix in tally.by_kind.values() {
        for (s, n) in mix {
            *answers.entry(s.clone()).or_default() += n;
        }
    }
    let report = Report {
        duration_s: attack_elapsed.as_secs_f64(),
        allowed_regions: shared.args.allowed.clone(),
        attacker_addresses: shared.args.attackers,
        attack_concurrency: shared.args.attack_concurrency,
        attacker_pow_bits: shared.args.attacker_pow_bits,
        legit: LegitReport {
            users: outcomes.len(),
            approved: lat.len(),
            success_rate: lat.len() as f64 / outcomes.len().max(1) as f64,
            p50_ms: percentile(&lat, 0.5),
            p99_ms: percentile(&lat, 0.99),
            max_ms: lat.last().copied().unwrap_or(0.0),
            results,
            pow_bits,
            pow_p50_ms: percentile(&pow_ms, 0.5),
            pow_max_ms: pow_ms.last().copied().unwrap_or(0.0),
        },
        attack: AttackReport {
            requests: tally.requests,
            requests_per_s: tally.requests as f64 / attack_elapsed.as_secs_f64().max(1e-9),
            solved_challenges: tally.solved,
            answers,
            by_kind: tally.by_kind,
        },
        outbox: ob,
        gateway,
        verifications,
        pow_max: pow_series.iter().copied().max().unwrap_or(-1),
        pow_series,
    };
    print_report(&report);
    if let Some(path) = &shared.args.json {
        shared::write_json(path, &report)?;
    }
    Ok(())
}

/// `key=value` pairs, space separated.
fn key_values(m: &BTreeMap<String, f64>) -> String {
    m.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn mix_text(mix: &Mix) -> String {
    mix.iter()
        .map(|(k, v)| format!("{k}x{v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn print_report(r: &Report) {
    let l = &r.legit;
    println!(
        "flood: {:.0} s, {} attacker addresses ({} in flight, solve <= {} bits), allow-list {:?}",
        r.duration_s,
        r.attacker_addresses,
        r.attack_concurrency,
        r.attacker_pow_bits,
        r.allowed_regions
    );
    println!(
        "  legitimate: {} users, {} approved ({:.1}%), start->approved p50 {:.0} ms p99 {:.0} ms max {:.0} ms; results {}",
        l.users,
        l.approved,
        l.success_rate * 100.0,
        l.p50_ms,
        l.p99_ms,
        l.max_ms,
        mix_text(&l.results)
    );
    println!(
        "    PoW solved by legitimate users (bits x users): {}; solve p50 {:.0} ms max {:.0} ms",
        l.pow_bits
            .iter()
            .map(|(b, n)| format!("{b}x{n}"))
            .collect::<Vec<_>>()
            .join(" "),
        l.pow_p50_ms,
        l.pow_max_ms
    );
    let a = &r.attack;
    println!(
        "  attack: {} requests ({:.0}/s), {} challenges solved; answers {}",
        a.requests,
        a.requests_per_s,
        a.solved_challenges,
        mix_text(&a.answers)
    );
    for (k, mix) in &a.by_kind {
        println!("    {k:<16} {}", mix_text(mix));
    }
    let o = &r.outbox;
    println!(
        "  phone outbox: {} sent = {} legitimate + {} attacker numbers in allowed countries ({} premium-rate, {} sequential) + {} blocked countries (must be 0) + {} unknown",
        o.total,
        o.legit,
        o.attack_allowed_countries,
        o.attack_premium_rate,
        o.attack_sequential,
        o.blocked_countries,
        o.unknown
    );
    println!("  gateway messages: {}", key_values(&r.gateway));
    println!("  verifications: {}", key_values(&r.verifications));
    println!(
        "  pow difficulty per second: {}",
        r.pow_series
            .iter()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(" ")
    );
}
