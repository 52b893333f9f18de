//! Destination classes through the real `otpgate serve` (dev mode: the default policy and
//! one emulated phone): each number's answer, and what reached the phone (nothing for a
//! refused number, the normalised number for an accepted one).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use otpgate_test_support::http::{get_json, post_json};
use otpgate_test_support::process::{Server, free_port};
use serde_json::json;

/// What the issuer answers a start to a number.
#[derive(Clone, Copy, Debug)]
enum Want {
    /// 201, and the SMS reaches the phone at this normalised number.
    Sent(&'static str),
    /// 403 `destination_not_allowed`, nothing sent.
    NotAllowed,
    /// 400 `invalid_phone`, nothing sent.
    Invalid,
}

/// (class, number as typed, answer) under the default policy: regions US, CA, GB, FR, DE, PT;
/// types mobile and fixed_line_or_mobile; the default blocked ranges.
const TABLE: &[(&str, &str, Want)] = &[
    // Valid mobile or fixed-or-mobile numbers of each default region.
    (
        "US fixed-or-mobile",
        "+1 415 555 0123",
        Want::Sent("+14155550123"),
    ),
    (
        "CA fixed-or-mobile",
        "+1 604 555 0123",
        Want::Sent("+16045550123"),
    ),
    ("GB mobile", "+44 7400 123456", Want::Sent("+447400123456")),
    ("FR mobile", "+33 6 12 34 56 78", Want::Sent("+33612345678")),
    (
        "DE mobile",
        "+49 151 23456789",
        Want::Sent("+4915123456789"),
    ),
    ("PT mobile", "+351 912 345 678", Want::Sent("+351912345678")),
    // A trunk zero after the country code is dropped; the rest is judged like any number.
    (
        "GB trunk zero",
        "+44 (0)7400 123457",
        Want::Sent("+447400123457"),
    ),
    (
        "FR trunk zero",
        "+33 (0)6 12 34 56 79",
        Want::Sent("+33612345679"),
    ),
    (
        "DE trunk zero",
        "+49 (0)151 23456780",
        Want::Sent("+4915123456780"),
    ),
    (
        "GB trunk zero, premium",
        "+44 (0)909 8790123",
        Want::NotAllowed,
    ),
    // Valid numbers of types that are not allowed.
    ("GB fixed line", "+44 20 7946 0123", Want::NotAllowed),
    ("FR fixed line", "+33 1 42 68 53 00", Want::NotAllowed),
    ("US premium rate", "+1 900 555 0123", Want::NotAllowed),
    ("DE premium rate", "+49 900 1234567", Want::NotAllowed),
    ("FR premium rate", "+33 8 99 12 34 56", Want::NotAllowed),
    ("GB premium rate", "+44 909 8790123", Want::NotAllowed),
    ("DE shared cost", "+49 180 1234567", Want::NotAllowed),
    ("FR shared cost", "+33 810 12 34 56", Want::NotAllowed),
    ("US toll free", "+1 800 555 0123", Want::NotAllowed),
    ("GB toll free", "+44 800 123 4567", Want::NotAllowed),
    ("GB VoIP", "+44 56 1234 5678", Want::NotAllowed),
    ("GB personal number", "+44 70 1234 5678", Want::NotAllowed),
    // Regions inside allowed calling codes that are not allowed regions.
    (
        "Caribbean NANP (Jamaica)",
        "+1 876 210 1234",
        Want::NotAllowed,
    ),
    ("Jersey mobile", "+44 7797 123456", Want::NotAllowed),
    ("Guernsey mobile", "+44 7781 123456", Want::NotAllowed),
    ("Isle of Man mobile", "+44 7624 123456", Want::NotAllowed),
    // Regions not allowed at all.
    ("ES mobile", "+34 612 345 678", Want::NotAllowed),
    ("RU mobile", "+7 916 123 4567", Want::NotAllowed),
    // Not valid numbers.
    (
        "country code twice (+1 1 900)",
        "+1 1 900 555 0123",
        Want::Invalid,
    ),
    (
        "country code twice (+1 1 415)",
        "+1 1 415 555 0123",
        Want::Invalid,
    ),
    (
        "country code twice (+44 44)",
        "+44 44 7400 123456",
        Want::Invalid,
    ),
    ("too short", "+44 7400 123", Want::Invalid),
    ("US area code 555", "+1 555 555 0100", Want::Invalid),
    ("UK drama range", "+44 7700 900123", Want::Invalid),
    ("not E.164", "07400 123456", Want::Invalid),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destination_classes_reach_the_phone_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), None, free_port(), &[]);
    let http = reqwest::Client::new();
    let base = server.base.clone();
    let mut expected = BTreeSet::new();
    for (class, typed, want) in TABLE {
        // A start the phone has no room for is queued (201); one that could not leave within
        // the queue's bound is answered 503 with `Retry-After`, and retried as a client would.
        let deadline = Instant::now() + Duration::from_secs(90);
        let (status, body) = loop {
            let (status, body) = post_json(
                &http,
                &format!("{base}/v1/verifications"),
                &json!({"phone": typed}),
            )
            .await;
            if status != 503 || Instant::now() > deadline {
                break (status, body);
            }
            let wait = body["error"]["retry_after"].as_u64().unwrap_or(1).min(15);
            tokio::time::sleep(Duration::from_secs(wait)).await;
        };
        let code = body["error"]["code"].as_str().unwrap_or_default();
        match want {
            Want::Sent(e164) => {
                assert_eq!(status, 201, "{class} ({typed}): {body}");
                expected.insert((*e164).to_owned());
            }
            Want::NotAllowed => {
                assert_eq!(
                    (status, code),
                    (403, "destination_not_allowed"),
                    "{class} ({typed}): {body}"
                );
                // One answer for every refused class: the class is the log's, not the
                // caller's.
                assert_eq!(
                    body["error"]["message"], "destination not allowed",
                    "{class}"
                );
            }
            Want::Invalid => {
                assert_eq!(
                    (status, code),
                    (400, "invalid_phone"),
                    "{class} ({typed}): {body}"
                );
            }
        }
    }
    // Every accepted start reaches the emulated phone at its normalised number, and
    // nothing else does. The phone spreads its budget over the minute (a first
    // verification takes three quarters of it): what it had no room for waits in the queue
    // and leaves within the queue's minute.
    let deadline = Instant::now() + Duration::from_secs(75);
    let reached = loop {
        let outbox = get_json(&http, &format!("{base}/_emulator/messages")).await;
        let reached: BTreeSet<String> = outbox
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|m| m["phone"].as_str().map(str::to_owned))
            .collect();
        if reached.len() >= expected.len() || Instant::now() > deadline {
            break reached;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(reached, expected);
    // The refusals are counted by class.
    let metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for reason in ["region", "number_type", "not_valid", "double_country_code"] {
        assert!(
            metrics.contains(&format!(
                "otpgate_destination_refused_total{{reason=\"{reason}\"}}"
            )),
            "{reason} counted: {metrics}"
        );
    }
}
