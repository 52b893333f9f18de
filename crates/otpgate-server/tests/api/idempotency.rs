//! `Idempotency-Key` over HTTP, on every store: a retried start or resend sends nothing more,
//! a reused key with another request is refused, a refusal keeps nothing, and racing
//! duplicates send one SMS.

use serde_json::{Value, json};

use crate::harness::{Backend, Harness, open_policy};

async fn post_keyed(
    h: &Harness,
    path: &str,
    key: &str,
    body: Value,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let res = h
        .client
        .post(h.url(path))
        .header("idempotency-key", key)
        .json(&body)
        .send()
        .await
        .unwrap();
    crate::harness::split(res).await
}

async fn retries_send_once(backend: Backend) {
    let h = Harness::new(backend).await;
    let body = json!({"phone": "+447400123470"});
    let (s1, h1, v1) = post_keyed(&h, "/v1/verifications", "key-1", body.clone()).await;
    assert_eq!(s1, 201, "{v1}");
    assert!(h1.get("idempotent-replayed").is_none());
    let (s2, h2, v2) = post_keyed(&h, "/v1/verifications", "key-1", body.clone()).await;
    assert_eq!(s2, 201, "{v2}");
    assert_eq!(h2["idempotent-replayed"], "true");
    assert_eq!(v1["id"], v2["id"], "the first answer again");
    assert_eq!(h1["location"], h2["location"]);
    assert_eq!(h.sends(), 1, "one SMS");
    // The same key with another request.
    let (s3, _, v3) = post_keyed(
        &h,
        "/v1/verifications",
        "key-1",
        json!({"phone": "+447400123471"}),
    )
    .await;
    assert_eq!(
        (s3, v3["error"]["code"].as_str()),
        (422, Some("idempotency_key_reused"))
    );
    assert_eq!(h.sends(), 1);
    // A resend, retried: one more SMS, not two. Its key is scoped to the verification.
    let id = v1["id"].as_str().unwrap();
    h.clock.advance(31_000);
    let path = format!("/v1/verifications/{id}/resend");
    let (r1, _, b1) = post_keyed(&h, &path, "key-1", json!(null)).await;
    assert_eq!(r1, 200, "{b1}");
    let (r2, rh2, b2) = post_keyed(&h, &path, "key-1", json!(null)).await;
    assert_eq!(r2, 200, "{b2}");
    assert_eq!(rh2["idempotent-replayed"], "true");
    assert_eq!(b1["sends"], b2["sends"]);
    assert_eq!(h.sends(), 2);
    // Without a key, each request is its own.
    h.start("+447400123472").await;
    h.start("+447400123472").await;
    assert_eq!(h.sends(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_send_once_on_the_memory_store() {
    retries_send_once(Backend::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_send_once_on_the_embedded_store() {
    retries_send_once(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_send_once_on_redis() {
    retries_send_once(Backend::Redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_keeps_nothing_so_the_retry_with_the_solution_goes_through() {
    let mut p = open_policy();
    p.pow.enabled = true;
    p.pow.base_difficulty = 8;
    let h = Harness::with_policy(Backend::Memory, p).await;
    let (status, _, body) = post_keyed(
        &h,
        "/v1/verifications",
        "key-pow",
        json!({"phone": "+447400123473"}),
    )
    .await;
    assert_eq!(status, 428, "{body}");
    let challenge = body["error"]["challenge"].as_str().unwrap().to_owned();
    let nonce = otpgate_core::pow::solve(&challenge, 1 << 20)
        .unwrap()
        .unwrap();
    let solved = json!({"phone": "+447400123473", "pow": {"challenge": challenge, "nonce": nonce}});
    let (status, _, first) = post_keyed(&h, "/v1/verifications", "key-pow", solved.clone()).await;
    assert_eq!(status, 201, "{first}");
    let (status, headers, again) = post_keyed(&h, "/v1/verifications", "key-pow", solved).await;
    assert_eq!(status, 201, "{again}");
    assert_eq!(headers["idempotent-replayed"], "true");
    assert_eq!(first["id"], again["id"]);
    assert_eq!(h.sends(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_duplicates_send_one_sms() {
    let h = std::sync::Arc::new(Harness::new(Backend::Memory).await);
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let h = h.clone();
        tasks.push(tokio::spawn(async move {
            post_keyed(
                &h,
                "/v1/verifications",
                "key-race",
                json!({"phone": "+447400123474"}),
            )
            .await
        }));
    }
    let mut ids = std::collections::BTreeSet::new();
    for t in tasks {
        let (status, headers, body) = t.await.unwrap();
        match status {
            201 => {
                ids.insert(body["id"].as_str().unwrap().to_owned());
            }
            409 => {
                assert_eq!(body["error"]["code"], "conflict");
                assert!(headers.contains_key("retry-after"));
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert_eq!(h.sends(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_key_is_refused_and_sends_nothing() {
    let h = Harness::new(Backend::Memory).await;
    let long = "k".repeat(256);
    for bad in ["", long.as_str(), "two words"] {
        let (status, _, body) = post_keyed(
            &h,
            "/v1/verifications",
            bad,
            json!({"phone": "+447400123475"}),
        )
        .await;
        assert_eq!(status, 400, "{bad:?}: {body}");
        assert_eq!(body["error"]["code"], "invalid_request");
    }
    assert_eq!(h.sends(), 0);
}
