//! Gateway pool benchmark: ten emulated phones at their budgets under a sustained burst; phone
//! 0 has two SIMs that share its budget (Android counts per app on the phone).
//!
//! Every phone gets a budget of `BUDGET` segments per `WINDOW` seconds (Android's limit in the
//! emulator is set a little above it); codes are offered at twice the pool's capacity for
//! `--windows` budget windows. Reported: delivered SMS as a share of the sum of budgets
//! (bar: ≥ 95 %), sends of an expired code (must be 0) and duplicate sends (must be 0).
//!
//! `cargo run -p otpgate-bench --bin gateway -- [--windows N] [--phones N] [--json FILE]`
//!
//! `--json FILE` (`-` = stdout) also writes the figures as one JSON object.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use otpgate_core::wire::DeliveryState;
use otpgate_server::audit::AuditLog;
use otpgate_server::clock::{Clock, SystemClock};
use otpgate_server::emulator::{Emulator, EmulatorConfig, Knobs, parse_time};
use otpgate_server::gateway::{
    DispatchError, Dispatched, Dispatcher, GatewaysConfig, Outgoing, Pool, Priority, SendJob,
    SimConfig, TRUSTED_WORK,
};
use otpgate_server::keys::KeyRing;
use otpgate_server::store::{DeliveryRecord, MemoryStore, Outcome, Record, Store, StoredCode};
use otpgate_test_support::rig::emulated_device;

const KEY: &str = "bench-signing-key";
const BUDGET: u32 = 10;
const WINDOW_SECS: u64 = 10;
const LIFETIME_MS: i64 = 300_000;

fn arg_str(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let windows = arg("--windows", 3).clamp(1, 60);
    let phones = usize::try_from(arg("--phones", 10))
        .unwrap_or(10)
        .clamp(1, 50);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let hook = format!(
        "http://{}/v1/gateways/sms-gate/webhook",
        listener.local_addr()?
    );
    let mut emus = Vec::new();
    let mut devices = Vec::new();
    for i in 0..phones {
        let mut cfg = EmulatorConfig::new("sms", Some(format!("pw-{i}")), Some(KEY.into()));
        cfg.knobs = Knobs {
            delay_ms: 20,
            limit: BUDGET + 2,
            limit_window_ms: WINDOW_SECS * 1000,
            webhook_retry_base_ms: 200,
            ..Knobs::default()
        };
        cfg.webhooks = vec![hook.clone()];
        let emu = Emulator::new(cfg);
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", l.local_addr()?);
        let e = emu.clone();
        tokio::spawn(async move { e.serve(l).await });
        devices.push(emulated_device(i, url, BUDGET, BUDGET + 2));
        emus.push(emu);
    }
    // Phone 0 has two SIMs: both send through it, and Android's limit (the emulator's) counts
    // both, so the pool must hold the two to the phone's one budget.
    devices[0].sims = vec![
        SimConfig {
            sim: 1,
            daily_cap: 0,
            weight: 1,
        },
        SimConfig {
            sim: 2,
            daily_cap: 0,
            weight: 1,
        },
    ];
    let mut cfg = GatewaysConfig::default().with_signing_key(KEY);
    cfg.devices = devices;
    cfg.budget_window_secs = WINDOW_SECS;
    // What is measured is the pool's budget discipline at twice its capacity: offers it
    // cannot take now are refused, not queued (the queue is the flood bench's subject).
    cfg.queue_max_wait_secs = 0;
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let clock = SystemClock;
    let pool = Pool::new(
        cfg,
        store.clone(),
        Arc::new(AuditLog::disabled()),
        Arc::new(clock),
        &KeyRing::ephemeral(),
    )?;
    let app = pool.routes();
    tokio::spawn(async move { axum::serve(listener, app).await });

    // Start on a window boundary so the run covers exactly `windows` budget windows.
    let window_ms = i64::try_from(WINDOW_SECS * 1000)?;
    let now = clock.now_ms();
    let start = (now / window_ms + 1) * window_ms;
    tokio::time::sleep(Duration::from_millis(u64::try_from(start - now)?)).await;
    let end = start + window_ms * i64::try_from(windows)?;
    let capacity_per_sec = phones as f64 * f64::from(BUDGET) / WINDOW_SECS as f64;
    let tick = Duration::from_secs_f64(1.0 / (2.0 * capacity_per_sec));
    let mut jobs: HashMap<String, (String, i64)> = HashMap::new();
    let (mut offered, mut accepted, mut refused, mut other) = (0u64, 0u64, 0u64, 0u64);
    let mut n = 0u64;
    while clock.now_ms() < end {
        n += 1;
        let vid = format!("v_{n:0>22}");
        let phone = format!("+447400{:06}", n % 1_000_000);
        let t = clock.now_ms();
        let rec = Record {
            id: vid.clone(),
            app: "bench".into(),
            phone: phone.clone(),
            locale: None,
            outcome: Outcome::Open,
            code: StoredCode {
                digest: vec![0; 32],
                key_id: "k".into(),
                version: 1,
            },
            created_at_ms: t,
            expires_at_ms: t + LIFETIME_MS,
            attempts: 0,
            max_attempts: 5,
            sends: 1,
            resend_at_ms: t,
            delivery: DeliveryRecord {
                state: DeliveryState::Queued,
                gateway: None,
                message_id: None,
                updated_at_ms: t,
                detail: None,
            },
            test_number: false,
            trusted: false,
        };
        store.create(&rec).await?;
        let text = format!("{:06} is your bench code. #{n}", n % 1_000_000);
        let job = SendJob {
            verification_id: vid.clone(),
            code_version: 1,
            message: Outgoing {
                message_id: String::new(),
                phone,
                text: text.clone(),
                ttl_secs: 0,
                segments: 1,
            },
            expires_at_ms: t + LIFETIME_MS,
            priority: Priority::Paid,
            work: TRUSTED_WORK,
        };
        offered += 1;
        match pool.dispatch(job).await {
            Ok(Dispatched::Sending) => {
                accepted += 1;
                jobs.insert(text, (vid, t + LIFETIME_MS));
            }
            Ok(_) | Err(DispatchError::NoCapacity { .. }) => refused += 1,
            Err(_) => other += 1,
        }
        tokio::time::sleep(tick).await;
    }
    // Let the last messages finish.
    let drain_until = clock.now_ms() + 15_000;
    loop {
        let mut pending = 0;
        for (vid, _) in jobs.values() {
            let s = store.get(vid).await?.map(|r| r.delivery.state);
            if !s.is_some_and(DeliveryState::is_terminal) {
                pending += 1;
            }
        }
        if pending == 0 || clock.now_ms() > drain_until {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let mut sends: HashMap<String, u32> = HashMap::new();
    let (mut delivered, mut expired_sends, mut over_budget) = (0u64, 0u64, 0u64);
    for emu in &emus {
        let out = emu.sent(None);
        // Per fixed window, how many went out (must never pass the budget).
        let mut per_window: HashMap<i64, u32> = HashMap::new();
        for s in &out {
            *sends.entry(s.text.clone()).or_insert(0) += 1;
            if s.state == "Delivered" {
                delivered += 1;
            }
            let sent_ms = parse_time(&s.sent_at).unwrap_or(0);
            if jobs.get(&s.text).is_some_and(|(_, exp)| sent_ms >= *exp) {
                expired_sends += 1;
            }
            let created = parse_time(&s.created_at).unwrap_or(0);
            *per_window.entry(created / window_ms).or_insert(0) += 1;
        }
        over_budget += per_window.values().filter(|&&c| c > BUDGET).count() as u64;
    }
    let dual = emus[0].sent(None);
    let (sim1, sim2) = (
        dual.iter().filter(|m| m.sim_number == 1).count(),
        dual.iter().filter(|m| m.sim_number == 2).count(),
    );
    let duplicates: u64 = sends
        .values()
        .map(|&c| u64::from(c.saturating_sub(1)))
        .sum();
    let budget_sum = phones as u64 * u64::from(BUDGET) * windows;
    let share = delivered as f64 / budget_sum as f64 * 100.0;
    let m = pool.metrics();
    println!(
        "gateway bench: {phones} phones x {BUDGET} segments / {WINDOW_SECS} s, {windows} windows, offered at 2x capacity"
    );
    println!(
        "  offered {offered}, accepted {accepted}, refused (no capacity, fail fast) {refused}, other errors {other}"
    );
    println!("  sum of budgets {budget_sum}, delivered {delivered} = {share:.1}% (bar >= 95%)");
    println!(
        "  expired sends {expired_sends} (must be 0), duplicate sends {duplicates} (must be 0), windows over budget {over_budget} (must be 0)"
    );
    println!(
        "  dual-SIM phone-0: SIM 1 sent {sim1}, SIM 2 sent {sim2}, windows over the phone's budget counted above (both SIMs together)"
    );
    println!(
        "  pool: submitted {} sent {} delivered {} failed {} failovers {} webhooks {} (dup {})",
        m.submitted,
        m.sent,
        m.delivered,
        m.failed,
        m.failovers,
        m.webhooks_accepted,
        m.webhooks_duplicate
    );
    let pass = share >= 95.0
        && expired_sends == 0
        && duplicates == 0
        && over_budget == 0
        && sim1 > 0
        && sim2 > 0;
    println!("{}", if pass { "PASS" } else { "FAIL" });
    if let Some(path) = arg_str("--json") {
        let json = serde_json::to_string_pretty(&serde_json::json!({
            "phones": phones,
            "budget_per_window": BUDGET,
            "window_secs": WINDOW_SECS,
            "windows": windows,
            "offered": offered,
            "accepted": accepted,
            "refused_no_capacity": refused,
            "other_errors": other,
            "budget_sum": budget_sum,
            "delivered": delivered,
            "delivered_share_pct": share,
            "expired_sends": expired_sends,
            "duplicates": duplicates,
            "windows_over_budget": over_budget,
            "dual_sim": {"sim1_sent": sim1, "sim2_sent": sim2},
            "pool": {
                "submitted": m.submitted,
                "sent": m.sent,
                "delivered": m.delivered,
                "failed": m.failed,
                "failovers": m.failovers,
                "webhooks_accepted": m.webhooks_accepted,
                "webhooks_duplicate": m.webhooks_duplicate,
            },
            "pass": pass,
        }))?;
        if path == "-" {
            println!("{json}");
        } else {
            std::fs::write(&path, json)?;
        }
    }
    if pass {
        Ok(())
    } else {
        anyhow::bail!("gateway bench below the bar")
    }
}
