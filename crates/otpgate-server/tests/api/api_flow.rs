//! The verification flow over real HTTP, on the memory, embedded and Redis stores: the
//! happy path with a receipt verified offline against the JWKS, wrong codes, attempts,
//! expiry, resend rotation and cooldown, cancel, single use, and 200 concurrent checks.
#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::Arc;

use crate::harness::{Backend, Harness, ISSUER, assert_error, open_policy, retry_after_header};
use otpgate_core::receipt::{Expectations, Jwks, verify};
use otpgate_server::clock::Clock;
use serde_json::json;

const PHONE: &str = "+447400900123";

async fn happy_path_receipt_verifies_with_the_jwks(backend: Backend) {
    let h = Harness::new(backend).await;
    let (status, headers, body) = h
        .post(
            "/v1/verifications",
            json!({"phone": "+44 7400 900123", "app": "shop"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert!(headers.get("x-request-id").is_some());
    let id = body["id"].as_str().unwrap().to_owned();
    assert_eq!(body["status"], "pending");
    assert_eq!(body["attempts_left"], 5);
    assert_eq!(body["delivery"]["state"], "queued");
    assert!(body["expires_at"].as_str().unwrap().ends_with('Z'));
    assert!(body["resend_at"].is_string());
    // The SMS: code first, WebOTP line last, sent once, with the code's remaining life.
    let code = h.code(&id);
    {
        let jobs = h.capture.jobs.lock().unwrap();
        assert_eq!(jobs.len(), 1);
        let job = &jobs[0];
        assert_eq!(job.message.phone, PHONE);
        assert!(
            job.message
                .text
                .ends_with(&format!("@shop.example.com #{}", code)),
            "{}",
            job.message.text.len()
        );
        let parsed = otpgate_core::sms::parse(&job.message.text);
        assert_eq!(
            parsed.webotp.map(|w| w.host),
            Some("shop.example.com".to_owned())
        );
        assert_eq!(job.message.segments, 1);
        assert!(job.message.ttl_secs > 290 && job.message.ttl_secs <= 300);
        assert_eq!(job.message.message_id, format!("{id}.1.0"));
    }
    let (status, _, view) = h.get(&format!("/v1/verifications/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(view["id"], id.as_str());

    let (status, _, body) = h.check(&id, &code).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "approved");
    let receipt = body["receipt"].as_str().unwrap();

    let (status, headers, jwks) = h.get("/.well-known/jwks.json").await;
    assert_eq!(status, 200);
    assert!(headers.get("cache-control").is_some());
    let jwks: Jwks = serde_json::from_value(jwks).unwrap();
    let expect = Expectations {
        audience: "shop",
        issuer: ISSUER,
        now: h.clock.now_secs(),
        leeway: 0,
    };
    let claims = verify(receipt, &jwks, &expect).expect("the receipt verifies");
    assert_eq!(claims.sub, id);
    assert_eq!(claims.jti, id);
    assert_eq!(claims.phone_number, PHONE);
    assert!(claims.phone_number_verified);
    assert_eq!(claims.exp - claims.iat, 600);
    // For another audience it does not.
    let other = Expectations {
        audience: "bank",
        ..expect
    };
    assert!(verify(receipt, &jwks, &other).is_err());

    // Single use: the same right code again is 409.
    let (status, headers, body) = h.check(&id, &code).await;
    assert_error(status, &headers, &body, 409, "already_used");
    let (_, _, view) = h.get(&format!("/v1/verifications/{id}")).await;
    assert_eq!(view["status"], "approved");
}

async fn wrong_codes_count_down_then_no_attempts(backend: Backend) {
    let h = Harness::new(backend).await;
    let id = h.start(PHONE).await;
    let right = h.code(&id);
    let wrong = if right == "000000" {
        "111111"
    } else {
        "000000"
    };
    for left in (0..5).rev() {
        let (status, headers, body) = h.check(&id, wrong).await;
        assert_error(status, &headers, &body, 422, "wrong_code");
        assert_eq!(body["error"]["attempts_left"], left, "{body}");
    }
    // Even the right code is refused once every attempt is spent.
    let (status, headers, body) = h.check(&id, &right).await;
    assert_error(status, &headers, &body, 429, "no_attempts_left");
    let (_, _, view) = h.get(&format!("/v1/verifications/{id}")).await;
    assert_eq!(view["status"], "max_attempts_reached");
    assert_eq!(view["attempts_left"], 0);
    // A garbage code costs an attempt too, it is never a free probe.
    let id = h.start("+447400900124").await;
    let (status, _, body) = h.check(&id, "not a code").await;
    assert_eq!(status, 422);
    assert_eq!(body["error"]["attempts_left"], 4);
}

async fn expired_codes_are_gone(backend: Backend) {
    let h = Harness::new(backend).await;
    let id = h.start(PHONE).await;
    let code = h.code(&id);
    h.clock.advance(300_000);
    let (status, headers, body) = h.check(&id, &code).await;
    assert_error(status, &headers, &body, 410, "expired");
    let (_, _, view) = h.get(&format!("/v1/verifications/{id}")).await;
    assert_eq!(view["status"], "expired");
    // A resend of an expired verification is refused too.
    let (status, headers, body) = h.resend(&id, true).await;
    assert_error(status, &headers, &body, 410, "expired");
}

async fn resend_rotates_the_code_after_the_cooldown(backend: Backend) {
    let h = Harness::new(backend).await;
    let id = h.start(PHONE).await;
    let old = h.code(&id);
    let (wrong_first, _, _) = h
        .check(&id, if old == "000000" { "111111" } else { "000000" })
        .await;
    assert_eq!(wrong_first, 422);
    // Inside the cooldown: 429 with Retry-After, nothing sent.
    let (status, headers, body) = h.resend(&id, false).await;
    assert_error(status, &headers, &body, 429, "resend_cooldown");
    let retry = retry_after_header(&headers);
    assert!((1..=30).contains(&retry), "{retry}");
    assert_eq!(h.sends(), 1);

    h.clock.advance(30_000);
    let (status, _, view) = h.resend(&id, false).await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["attempts_left"], 5, "attempts reset on a new code");
    assert_eq!(h.sends(), 2);
    let new = h.code(&id);
    {
        let jobs = h.capture.jobs.lock().unwrap();
        assert_eq!(jobs[1].code_version, 2);
        assert_eq!(jobs[1].message.message_id, format!("{id}.2.0"));
    }
    if new != old {
        let (status, _, body) = h.check(&id, &old).await;
        assert_eq!(status, 422, "the old code is dead: {body}");
    }
    // The next resend waits longer (back-off).
    h.clock.advance(30_000);
    let (status, headers, _) = h.resend(&id, true).await;
    assert_eq!(status, 429);
    assert!(headers.get("retry-after").is_some());
    let (status, _, body) = h.check(&id, &new).await;
    assert_eq!(status, 200, "{body}");
    let (status, headers, body) = h.resend(&id, true).await;
    assert_error(status, &headers, &body, 409, "already_used");
}

async fn cancel_ends_the_verification(backend: Backend) {
    let h = Harness::new(backend).await;
    let id = h.start(PHONE).await;
    let code = h.code(&id);
    let (status, _, view) = h.delete(&format!("/v1/verifications/{id}")).await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["status"], "cancelled");
    let (status, headers, body) = h.check(&id, &code).await;
    assert_error(status, &headers, &body, 410, "cancelled");
    // Unknown and malformed ids answer the same 404.
    for bad in [
        "v_AAAAAAAAAAAAAAAAAAAAAA",
        "nope",
        "v_%2F..%2F",
        &"x".repeat(3000),
    ] {
        let (status, headers, body) = h.delete(&format!("/v1/verifications/{bad}")).await;
        assert_error(status, &headers, &body, 404, "not_found");
        let (status, headers, body) = h.check(bad, "123456").await;
        assert_error(status, &headers, &body, 404, "not_found");
        let (status, headers, body) = h.get(&format!("/v1/verifications/{bad}")).await;
        assert_error(status, &headers, &body, 404, "not_found");
    }
}

async fn concurrent_right_codes_approve_exactly_once(backend: Backend) {
    let mut policy = open_policy();
    policy.max_attempts = 10;
    let h = Arc::new(Harness::with_policy(backend, policy).await);
    let id = h.start(PHONE).await;
    let code = h.code(&id);
    let mut tasks = Vec::new();
    for _ in 0..200 {
        let h = h.clone();
        let id = id.clone();
        let code = code.clone();
        tasks.push(tokio::spawn(async move { h.check(&id, &code).await }));
    }
    let mut approved = 0;
    let mut receipts = 0;
    for t in tasks {
        let (status, _, body) = t.await.unwrap();
        assert!(matches!(status, 200 | 409 | 429), "{status} {body}");
        if status == 200 {
            approved += 1;
            receipts += usize::from(body["receipt"].is_string());
        }
    }
    assert_eq!(approved, 1, "exactly one check wins");
    assert_eq!(receipts, 1);
}

async fn test_numbers_use_their_fixed_code_and_never_send(backend: Backend) {
    let mut policy = open_policy();
    policy
        .test_numbers
        .insert("+14155550100".into(), "424242".into());
    let h = Harness::with_policy(backend, policy).await;
    let (status, _, body) = h
        .post("/v1/verifications", json!({"phone": "+14155550100"}))
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["delivery"]["state"], "skipped");
    assert_eq!(h.sends(), 0);
    let id = body["id"].as_str().unwrap();
    let (status, _, body) = h.check(id, "424242").await;
    assert_eq!(status, 200, "{body}");
}

async fn no_gateway_capacity_is_503_with_retry_after(backend: Backend) {
    let h = Harness::new(backend).await;
    *h.capture.no_capacity.lock().unwrap() = true;
    let (status, headers, body) = h.post("/v1/verifications", json!({"phone": PHONE})).await;
    assert_error(status, &headers, &body, 503, "no_gateway_capacity");
    assert_eq!(headers.get("retry-after").unwrap(), "7");
    // A send that never left gives its budgets back: more refused starts than the
    // per-phone budget (5 per 10 min) still end in 503, never 429, and once a gateway has
    // capacity again the number can still get a code.
    for _ in 0..7 {
        let (status, headers, body) = h.post("/v1/verifications", json!({"phone": PHONE})).await;
        assert_error(status, &headers, &body, 503, "no_gateway_capacity");
    }
    *h.capture.no_capacity.lock().unwrap() = false;
    let (status, _, body) = h.post("/v1/verifications", json!({"phone": PHONE})).await;
    assert_eq!(status, 201, "{body}");
}

async fn the_audit_log_carries_request_ids_never_codes_or_numbers(backend: Backend) {
    let h = Harness::new(backend).await;
    let res = h
        .client
        .post(h.url("/v1/verifications"))
        .header("x-request-id", "audit-start-1")
        .json(&json!({"phone": PHONE}))
        .send()
        .await
        .unwrap();
    let start_rid = res.headers()["x-request-id"].to_str().unwrap().to_owned();
    let id = res.json::<serde_json::Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let code = h.code(&id);
    let wrong = if code == "000000" { "111111" } else { "000000" };
    assert_eq!(h.check(&id, wrong).await.0, 422);
    let res = h
        .client
        .post(h.url(&format!("/v1/verifications/{id}/check")))
        .header("x-request-id", "audit-check-2")
        .json(&json!({"code": code}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let check_rid = res.headers()["x-request-id"].to_str().unwrap().to_owned();
    let log = std::fs::read_to_string(&h.audit_path).unwrap();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let kinds: Vec<&str> = lines.iter().map(|l| l["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        ["verification.started", "check.rejected", "check.approved"],
        "{log}"
    );
    // The server's own request id (the one it answered with); the client's kept apart.
    assert!(start_rid.starts_with("req_"), "{start_rid}");
    assert_eq!(lines[0]["request_id"], start_rid.as_str());
    assert_eq!(lines[0]["client_request_id"], "audit-start-1");
    assert_eq!(lines[2]["request_id"], check_rid.as_str());
    assert_eq!(lines[2]["client_request_id"], "audit-check-2");
    assert_eq!(lines[1]["client_request_id"], serde_json::Value::Null);
    // The client's address, pseudonymised: the same client, the same pseudonym.
    let client = lines[0]["client"].as_str().unwrap();
    assert!(client.starts_with("c:") && client.len() == 18, "{client}");
    assert!(lines.iter().all(|l| l["client"] == client), "{log}");
    assert!(
        !log.contains("127.0.0.1"),
        "a client address in clear: {log}"
    );
    assert!(lines.iter().all(|l| l["verification_id"] == id.as_str()));
    assert!(
        lines[0]["phone"].as_str().unwrap().ends_with(":23"),
        "pseudonym with the last two digits"
    );
    assert!(
        !log.contains("7400900123"),
        "a full number reached the audit log: {log}"
    );
    assert!(
        !log.contains(&format!("\"{code}\"")),
        "the code reached the audit log: {log}"
    );
    assert!(
        !log.contains(&format!("\"{wrong}\"")),
        "a typed code reached the audit log: {log}"
    );
    assert_eq!(
        otpgate_server::audit::verify_file(&h.audit_path, &h.audit_keys)
            .ok()
            .map(|v| v.lines),
        Some(3),
        "the chain verifies"
    );
}

on_every_store!(
    the_audit_log_carries_request_ids_never_codes_or_numbers,
    happy_path_receipt_verifies_with_the_jwks,
    wrong_codes_count_down_then_no_attempts,
    expired_codes_are_gone,
    resend_rotates_the_code_after_the_cooldown,
    cancel_ends_the_verification,
    concurrent_right_codes_approve_exactly_once,
    test_numbers_use_their_fixed_code_and_never_send,
    no_gateway_capacity_is_503_with_retry_after,
);
