//! Security properties of the API over real HTTP: every budget answers 429 with
//! `Retry-After`, the destination allow-list, the proof-of-work gate (required, solved,
//! replay refused), the trusted-backend API key, anti-enumeration, hostile inputs in the one
//! error shape, CORS, request ids, and the OpenAPI document. Budgets, allow-list and PoW run
//! on the memory, embedded and Redis stores.
#![allow(clippy::unwrap_used, clippy::type_complexity, missing_docs)]

use crate::harness::{Backend, Harness, assert_error, open_policy, retry_after_header};
use otpgate_test_support::http::get_text;
use serde_json::{Value, json};
use sha2::Digest as _;

async fn every_budget_is_429_with_retry_after(backend: Backend) {
    // Per phone.
    let mut p = open_policy();
    p.budgets.phone.limit = 2;
    let h = Harness::with_policy(backend, p).await;
    h.start("+447400900001").await;
    h.start("+447400900001").await;
    let (status, headers, body) = h
        .post("/v1/verifications", json!({"phone": "+447400900001"}))
        .await;
    assert_error(status, &headers, &body, 429, "rate_limited");
    let retry = retry_after_header(&headers);
    assert!((1..=600).contains(&retry), "{retry}");
    assert_eq!(body["error"]["retry_after"], retry);
    assert_eq!(h.sends(), 2, "nothing sent past the budget");
    h.start("+447400900002").await;

    // Per client IP.
    let mut p = open_policy();
    p.budgets.ip.limit = 3;
    let h = Harness::with_policy(backend, p).await;
    for n in 0..3 {
        h.start(&format!("+4474009001{n:02}")).await;
    }
    let (status, headers, body) = h
        .post("/v1/verifications", json!({"phone": "+447400900199"}))
        .await;
    assert_error(status, &headers, &body, 429, "rate_limited");
    assert!(headers.get("retry-after").is_some());

    // Per prefix and global.
    let mut p = open_policy();
    p.budgets.prefix.limit = 2;
    let h = Harness::with_policy(backend, p).await;
    h.start("+447400900201").await;
    h.start("+447400900202").await;
    let (status, headers, body) = h
        .post("/v1/verifications", json!({"phone": "+447400900203"}))
        .await;
    assert_error(status, &headers, &body, 429, "rate_limited");
    h.start("+33612345678").await;
    let mut p = open_policy();
    p.budgets.global.limit = 2;
    let h = Harness::with_policy(backend, p).await;
    h.start("+447400900301").await;
    h.start("+33612345679").await;
    let (status, headers, body) = h
        .post("/v1/verifications", json!({"phone": "+14155550123"}))
        .await;
    assert_error(status, &headers, &body, 429, "rate_limited");

    // Checks per IP, across verifications (brute force).
    let mut p = open_policy();
    p.budgets.check_ip.limit = 3;
    let h = Harness::with_policy(backend, p).await;
    let id = h.start("+447400900401").await;
    for _ in 0..3 {
        let (status, _, _) = h.check(&id, "000001").await;
        assert!(status == 422 || status == 200);
    }
    let (status, headers, body) = h.check(&id, "000001").await;
    assert_error(status, &headers, &body, 429, "rate_limited");
    assert!(headers.get("retry-after").is_some());
}

async fn destinations_outside_the_allow_list_are_403(backend: Backend) {
    let h = Harness::new(backend).await;
    for phone in ["+8613812345678", "+2348012345678", "+79161234567"] {
        let (status, headers, body) = h.post("/v1/verifications", json!({"phone": phone})).await;
        assert_error(status, &headers, &body, 403, "destination_not_allowed");
    }
    let mut p = open_policy();
    p.blocked_prefixes = vec![otpgate_core::phone::NumberPrefix::parse("+4470").expect("range")];
    let h = Harness::with_policy(backend, p).await;
    let (status, headers, body) = h
        .post("/v1/verifications", json!({"phone": "+447012345678"}))
        .await;
    assert_error(status, &headers, &body, 403, "destination_not_allowed");
    assert_eq!(h.sends(), 0);
}

async fn proof_of_work_required_solved_and_not_replayable(backend: Backend) {
    let mut p = open_policy();
    p.pow.enabled = true;
    p.pow.base_difficulty = 8;
    let h = Harness::with_policy(backend, p).await;
    let phone = "+447400900501";
    let (status, headers, body) = h.post("/v1/verifications", json!({"phone": phone})).await;
    assert_error(status, &headers, &body, 428, "pow_required");
    let challenge = body["error"]["challenge"].as_str().unwrap().to_owned();
    assert_eq!(h.sends(), 0);
    let nonce = otpgate_core::pow::solve(&challenge, 1 << 24)
        .unwrap()
        .unwrap();
    let pow = json!({"challenge": challenge, "nonce": nonce});
    // A solution bound to another number does not transfer.
    let (status, headers, body) = h
        .post(
            "/v1/verifications",
            json!({"phone": "+447400900502", "pow": pow}),
        )
        .await;
    assert_error(status, &headers, &body, 400, "pow_forged");
    let (status, _, body) = h
        .post("/v1/verifications", json!({"phone": phone, "pow": pow}))
        .await;
    assert_eq!(status, 201, "{body}");
    // One solution buys one send.
    let (status, headers, body) = h
        .post("/v1/verifications", json!({"phone": phone, "pow": pow}))
        .await;
    assert_error(status, &headers, &body, 403, "pow_replayed");
    // A wrong nonce is insufficient work.
    let (status, _, body) = h.post("/v1/verifications", json!({"phone": phone})).await;
    assert_eq!(status, 428);
    let c2 = body["error"]["challenge"].as_str().unwrap().to_owned();
    let bad = (0u64..)
        .find(|n| otpgate_core::pow::work(&c2, *n) < 8)
        .unwrap();
    let (status, headers, body) = h
        .post(
            "/v1/verifications",
            json!({"phone": phone, "pow": {"challenge": c2, "nonce": bad}}),
        )
        .await;
    assert_error(status, &headers, &body, 400, "pow_insufficient");
    assert_eq!(h.sends(), 1);
}

on_every_store!(
    every_budget_is_429_with_retry_after,
    destinations_outside_the_allow_list_are_403,
    proof_of_work_required_solved_and_not_replayable,
);

/// Store-independent properties run on the memory store only.
mod inputs {
    use super::*;

    async fn raw(
        h: &Harness,
        method: &str,
        path: &str,
        ctype: Option<&str>,
        body: Vec<u8>,
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        let mut req = h
            .client
            .request(method.parse().unwrap(), h.url(path))
            .body(body);
        if let Some(c) = ctype {
            req = req.header("content-type", c);
        }
        crate::harness::split(req.send().await.unwrap()).await
    }

    #[tokio::test]
    async fn hostile_inputs_get_clear_4xx_in_the_one_shape() {
        let h = Harness::new(Backend::Memory).await;
        let json = Some("application/json");
        let cases: Vec<(&str, &str, Option<&str>, Vec<u8>, u16, &str)> = vec![
            (
                "POST",
                "/v1/verifications",
                json,
                b"{\"phone\":".to_vec(),
                400,
                "invalid_json",
            ),
            (
                "POST",
                "/v1/verifications",
                json,
                b"not json".to_vec(),
                400,
                "invalid_json",
            ),
            (
                "POST",
                "/v1/verifications",
                json,
                b"{\"phone\":\"+447400900123\",\"evil\":1}".to_vec(),
                400,
                "invalid_request",
            ),
            (
                "POST",
                "/v1/verifications",
                json,
                b"{\"phone\":12}".to_vec(),
                400,
                "invalid_request",
            ),
            (
                "POST",
                "/v1/verifications",
                json,
                b"{}".to_vec(),
                400,
                "invalid_request",
            ),
            (
                "POST",
                "/v1/verifications",
                json,
                b"{\"phone\":\"+44\xff\xfe\"}".to_vec(),
                400,
                "invalid_json",
            ),
            (
                "POST",
                "/v1/verifications",
                None,
                b"{\"phone\":\"+447400900123\"}".to_vec(),
                415,
                "unsupported_media_type",
            ),
            (
                "POST",
                "/v1/verifications",
                Some("text/plain"),
                b"{\"phone\":\"+447400900123\"}".to_vec(),
                415,
                "unsupported_media_type",
            ),
            (
                "POST",
                "/v1/verifications",
                json,
                format!("{{\"phone\":\"+{}\"}}", "1".repeat(10_000)).into_bytes(),
                400,
                "invalid_phone",
            ),
            (
                "POST",
                "/v1/verifications",
                json,
                format!("{{\"phone\":\"+{}\"}}", "1".repeat(100_000)).into_bytes(),
                413,
                "body_too_large",
            ),
            (
                "POST",
                "/v1/verifications",
                json,
                b"{\"phone\":\"0044 7400 900123\"}".to_vec(),
                400,
                "invalid_phone",
            ),
            (
                "POST",
                "/v1/verifications",
                json,
                b"{\"phone\":\"+9991234567\"}".to_vec(),
                400,
                "unknown_country_code",
            ),
            (
                "POST",
                "/v1/verifications",
                json,
                b"{\"phone\":\"+447400900123\",\"app\":\"nope\"}".to_vec(),
                400,
                "unknown_app",
            ),
            (
                "POST",
                "/v1/verifications",
                json,
                b"{\"phone\":\"+447400900123\",\"locale\":\"<script>\"}".to_vec(),
                400,
                "invalid_locale",
            ),
            ("GET", "/v1/nothing-here", None, vec![], 404, "not_found"),
            (
                "PUT",
                "/v1/verifications",
                json,
                b"{}".to_vec(),
                405,
                "method_not_allowed",
            ),
            ("PATCH", "/healthz", None, vec![], 405, "method_not_allowed"),
        ];
        for (method, path, ctype, body, want_status, want_code) in cases {
            let (status, headers, body) = raw(&h, method, path, ctype, body).await;
            assert_error(status, &headers, &body, want_status, want_code);
        }
        // Check bodies too.
        let id = h.start("+447400900123").await;
        let path = format!("/v1/verifications/{id}/check");
        let (status, headers, body) = raw(
            &h,
            "POST",
            &path,
            json,
            format!("{{\"code\":\"{}\"}}", "9".repeat(500)).into_bytes(),
        )
        .await;
        assert_error(status, &headers, &body, 400, "invalid_code");
        let (status, headers, body) =
            raw(&h, "POST", &path, json, b"{\"code\":123456}".to_vec()).await;
        assert_error(status, &headers, &body, 400, "invalid_request");
        let (status, headers, body) = raw(
            &h,
            "POST",
            &format!("/v1/verifications/{id}/resend"),
            json,
            b"{\"x\":1}".to_vec(),
        )
        .await;
        assert_error(status, &headers, &body, 400, "invalid_request");
        assert_eq!(h.sends(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_store_outage_is_503_without_internals_and_not_ready() {
        let mut h = Harness::new(Backend::RedisPrivate).await;
        let id = h.start("+447400900950").await;
        h.redis.as_mut().unwrap().stop();
        let (status, headers, body) = h
            .post("/v1/verifications", json!({"phone": "+447400900951"}))
            .await;
        assert_error(status, &headers, &body, 503, "store_unavailable");
        assert!(headers.get("retry-after").is_some());
        let text = body.to_string();
        for leak in ["127.0.0.1", "redis", "Redis", "refused", "os error"] {
            assert!(!text.contains(leak), "{leak} leaked: {text}");
        }
        let (status, headers, body) = h.check(&id, "123456").await;
        assert_error(status, &headers, &body, 503, "store_unavailable");
        let (status, headers, body) = h.get("/readyz").await;
        assert_error(status, &headers, &body, 503, "not_ready");
        assert!(!body.to_string().contains("127.0.0.1"), "{body}");
        let (status, _, _) = h.get("/healthz").await;
        assert_eq!(status, 200, "liveness does not depend on the store");
        // Back up (an empty Redis: this test server keeps no data): ready again.
        h.redis.as_mut().unwrap().restart();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let (status, _, _) = h.get("/readyz").await;
            if status == 200 {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "not ready again after Redis came back"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    #[tokio::test]
    async fn request_ids_are_the_servers_own() {
        // A client's id never becomes the server's (the audit log keeps it apart).
        let h = Harness::new(Backend::Memory).await;
        let res = h
            .client
            .get(h.url("/healthz"))
            .header("x-request-id", "abc-123_x.y")
            .send()
            .await
            .unwrap();
        let rid = res.headers()["x-request-id"].to_str().unwrap().to_owned();
        assert!(rid.starts_with("req_"), "{rid}");
        let res = h
            .client
            .get(h.url("/healthz"))
            .header("x-request-id", "bad id\twith spaces")
            .send()
            .await
            .unwrap();
        let rid = res.headers()["x-request-id"].to_str().unwrap().to_owned();
        assert!(rid.starts_with("req_"), "{rid}");
        let res = h
            .client
            .get(h.url("/healthz"))
            .header("x-request-id", "a".repeat(200))
            .send()
            .await
            .unwrap();
        assert!(
            res.headers()["x-request-id"]
                .to_str()
                .unwrap()
                .starts_with("req_")
        );
    }

    #[tokio::test]
    async fn starts_look_the_same_for_new_and_known_numbers() {
        let h = Harness::new(Backend::Memory).await;
        let (s1, _, a) = h
            .post("/v1/verifications", json!({"phone": "+447400900601"}))
            .await;
        let (s2, _, b) = h
            .post("/v1/verifications", json!({"phone": "+447400900601"}))
            .await;
        let (s3, _, c) = h
            .post("/v1/verifications", json!({"phone": "+447400900602"}))
            .await;
        assert_eq!((s1, s2, s3), (201, 201, 201));
        let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
        assert_eq!(keys(&a), keys(&b));
        assert_eq!(keys(&a), keys(&c));
        assert_eq!(b["status"], c["status"]);
        assert_eq!(b["attempts_left"], c["attempts_left"]);
        assert_eq!(b["delivery"], c["delivery"]);
        assert_ne!(a["id"], b["id"]);
    }

    #[tokio::test]
    async fn api_keys_are_checked_and_trusted_callers_skip_the_ip_budget() {
        let key = "a-backend-key-of-some-length-123";
        let mut p = open_policy();
        p.budgets.ip.limit = 1;
        p.api_keys = vec![format!(
            "sha256:{}",
            hex::encode(sha2::Sha256::digest(key.as_bytes()))
        )];
        let h = Harness::with_policy(Backend::Memory, p).await;
        let res = h
            .client
            .post(h.url("/v1/verifications"))
            .bearer_auth("wrong-key-wrong-key-wrong")
            .json(&json!({"phone": "+447400900701"}))
            .send()
            .await
            .unwrap();
        let (status, headers, body) = crate::harness::split(res).await;
        assert_error(status, &headers, &body, 401, "invalid_api_key");
        for n in 0..3 {
            let res = h
                .client
                .post(h.url("/v1/verifications"))
                .bearer_auth(key)
                .json(&json!({"phone": format!("+4474009007{n:02}")}))
                .send()
                .await
                .unwrap();
            assert_eq!(res.status().as_u16(), 201);
        }
        h.start("+447400900799").await;
        let (status, _, _) = h
            .post("/v1/verifications", json!({"phone": "+447400900798"}))
            .await;
        assert_eq!(status, 429, "an anonymous caller still has the IP budget");
    }

    #[tokio::test]
    async fn cors_allows_configured_origins_only() {
        let h = Harness::new(Backend::Memory).await;
        let preflight = |origin: &'static str| {
            h.client
                .request(reqwest::Method::OPTIONS, h.url("/v1/verifications"))
                .header("origin", origin)
                .header("access-control-request-method", "POST")
                .header("access-control-request-headers", "content-type")
                .send()
        };
        let res = preflight("https://shop.example.com").await.unwrap();
        assert!(res.status().is_success());
        assert_eq!(
            res.headers()["access-control-allow-origin"],
            "https://shop.example.com"
        );
        let methods = res.headers()["access-control-allow-methods"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(methods.contains("POST"), "{methods}");
        for evil in [
            "https://evil.example",
            "https://shop.example.com.evil.example",
            "http://shop.example.com",
            "null",
        ] {
            let res = preflight(evil).await.unwrap();
            assert!(
                res.headers().get("access-control-allow-origin").is_none(),
                "{evil}"
            );
        }
        let res = h
            .client
            .post(h.url("/v1/verifications"))
            .header("origin", "https://bank.example.com")
            .json(&json!({"phone": "+447400900801"}))
            .send()
            .await
            .unwrap();
        assert_eq!(
            res.headers()["access-control-allow-origin"],
            "https://bank.example.com"
        );
        let exposed = res.headers()["access-control-expose-headers"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            exposed.contains("x-request-id") && exposed.contains("retry-after"),
            "{exposed}"
        );
    }

    #[tokio::test]
    async fn openapi_lists_every_route_and_operations_answer() {
        let h = Harness::new(Backend::Memory).await;
        let (status, _, doc) = h.get("/openapi.json").await;
        assert_eq!(status, 200);
        assert!(
            doc["openapi"].as_str().unwrap().starts_with("3.1"),
            "{}",
            doc["openapi"]
        );
        let paths = doc["paths"].as_object().unwrap();
        for (path, method) in [
            ("/v1/verifications", "post"),
            ("/v1/verifications/{id}", "get"),
            ("/v1/verifications/{id}", "delete"),
            ("/v1/verifications/{id}/check", "post"),
            ("/v1/verifications/{id}/resend", "post"),
            ("/.well-known/jwks.json", "get"),
            ("/healthz", "get"),
            ("/readyz", "get"),
            ("/metrics", "get"),
            ("/openapi.json", "get"),
            ("/v1/gateways/sms-gate/webhook", "post"),
            ("/v1/gateways/multiotp/{device}", "get"),
            ("/v1/messages", "post"),
            ("/v1/messages/{id}", "get"),
            ("/v1/hooks/supabase/send-sms", "post"),
            ("/v2/Services/{ServiceSid}/Verifications", "post"),
            ("/v2/Services/{ServiceSid}/VerificationCheck", "post"),
            ("/v2/Services/{ServiceSid}/Verifications/{Sid}", "get"),
            ("/v2/Services/{ServiceSid}/Verifications/{Sid}", "post"),
        ] {
            assert!(
                paths.get(path).and_then(|p| p.get(method)).is_some(),
                "{method} {path} missing"
            );
        }
        // Operation ids are unique (clients and fuzzers key on them).
        let mut ids = std::collections::BTreeSet::new();
        for (path, ops) in paths {
            for (method, op) in ops.as_object().unwrap() {
                let id = op["operationId"].as_str().unwrap_or_default();
                assert!(
                    ids.insert(id.to_owned()),
                    "{method} {path}: operationId {id} twice"
                );
            }
        }
        // The integrations' answers are documented in their peers' shapes, and their
        // credentials as security schemes.
        let schemes = &doc["components"]["securitySchemes"];
        assert_eq!(schemes["twilio_basic"]["scheme"], "basic", "{schemes}");
        assert_eq!(schemes["api_key"]["scheme"], "bearer", "{schemes}");
        let twilio = &paths["/v2/Services/{ServiceSid}/Verifications"]["post"];
        assert_eq!(
            twilio["responses"]["404"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/TwilioErrorDoc"
        );
        assert_eq!(
            twilio["requestBody"]["content"]["application/x-www-form-urlencoded"]["schema"]["$ref"],
            "#/components/schemas/TwilioCreateFormDoc"
        );
        let hook = &paths["/v1/hooks/supabase/send-sms"]["post"]["responses"];
        for code in ["200", "400", "401", "403", "404", "429", "503"] {
            assert!(
                hook[code]["content"]["application/json"]["schema"]["$ref"]
                    .as_str()
                    .is_some_and(|r| r.contains("Supabase")),
                "supabase hook {code}: {}",
                hook[code]
            );
        }
        let check = &paths["/v1/verifications/{id}/check"]["post"]["responses"];
        for code in ["200", "404", "409", "410", "422", "429"] {
            assert!(check.get(code).is_some(), "check response {code}");
        }
        assert!(doc["components"]["schemas"]["ErrorDoc"].is_object());
        // The destination refusals are listed with their statuses.
        let start = &paths["/v1/verifications"]["post"]["responses"];
        for (status, code) in [("400", "invalid_phone"), ("403", "destination_not_allowed")] {
            let text = start[status]["description"].as_str().unwrap_or_default();
            assert!(text.contains(code), "{status} lists {code}: {text}");
        }

        let (status, _, body) = h.get("/healthz").await;
        assert_eq!((status, body["status"].as_str()), (200, Some("ok")));
        let (status, _, body) = h.get("/readyz").await;
        assert_eq!(status, 200, "{body}");
        let id = h.start("+447400900901").await;
        h.check(&id, "000000").await;
        let text = get_text(&h.client, &h.url("/metrics")).await;
        assert!(
            text.contains("otpgate_verifications_total{outcome=\"started\"} 1"),
            "{text}"
        );
        assert!(text.contains("otpgate_checks_total"), "{text}");
        assert!(
            text.contains("route=\"/v1/verifications/{id}/check\""),
            "{text}"
        );
        assert!(!text.contains(&id), "no ids in metrics");
        assert!(!text.contains("447400900901"), "no numbers in metrics");
        // Dev-only routes do not exist here.
        let (status, headers, body) = h.get("/_emulator/messages?phone=%2B447400900901").await;
        assert_error(status, &headers, &body, 404, "not_found");
    }
}
