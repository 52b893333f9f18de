//! Two real `otpgate serve` processes on one Redis with the same keys (from the
//! environment): a verification started on A is checked on B, the receipt verifies with
//! either instance's JWKS, single use holds across them, and budgets are shared.
#![allow(clippy::unwrap_used, missing_docs)]

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::pkcs8::EncodePrivateKey as _;
use otpgate_test_support::fault::verify_receipt;
use otpgate_test_support::http::{check, get_json, jwks, post_json, start};
use otpgate_test_support::process::{ServeToml, Server, free_port};
use otpgate_test_support::redis::TestRedis;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_on_a_check_on_b_with_shared_limits() {
    let redis = TestRedis::start();
    let dir = tempfile::tempdir().unwrap();
    let prefix = format!("two{}:", otpgate_server::random::id("").unwrap());
    let config = ServeToml {
        store: format!(
            r#"kind = "redis"
key_prefix = "{prefix}""#
        ),
        policy: r#"test_numbers = { "+14155550100" = "424242" }

[policy.budgets.phone]
limit = 2
window_secs = 600

[policy.pow]
enabled = false"#
            .to_owned(),
        ..ServeToml::new("https://issuer.test")
    }
    .write(dir.path());
    let pem = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32])
        .to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
        .unwrap()
        .to_string();
    let env = |data: &str| {
        vec![
            ("OTPGATE_STORE", redis.url.clone()),
            (
                "OTPGATE_DATA_DIR",
                dir.path().join(data).display().to_string(),
            ),
            ("OTPGATE_RECEIPT_KEY", pem.clone()),
            ("OTPGATE_CODE_KEY", STANDARD.encode([1u8; 32])),
            ("OTPGATE_POW_KEY", STANDARD.encode([2u8; 32])),
            ("OTPGATE_PSEUDONYM_KEY", STANDARD.encode([3u8; 32])),
        ]
    };
    let a = Server::start(dir.path(), Some(&config), free_port(), &env("a"));
    let b = Server::start(dir.path(), Some(&config), free_port(), &env("b"));
    let client = reqwest::Client::new();

    // Start on A, check on B.
    let (status, body) = start(&client, &a.base, "+14155550100").await;
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_str().unwrap().to_owned();
    let view = get_json(&client, &format!("{}/v1/verifications/{id}", b.base)).await;
    assert_eq!(view["status"], "pending", "B sees A's verification");
    let (status, body) = check(&client, &b.base, &id, "424242").await;
    assert_eq!(status, 200, "{body}");
    let receipt = body["receipt"].as_str().unwrap().to_owned();
    // Single use across instances.
    let (status, body) = check(&client, &a.base, &id, "424242").await;
    assert_eq!(status, 409, "{body}");
    // Both publish the same key; the receipt verifies against either.
    let jwks_a = jwks(&client, &a.base).await;
    let jwks_b = jwks(&client, &b.base).await;
    assert_eq!(jwks_a, jwks_b);
    let claims = verify_receipt(&receipt, &jwks_a, "shop", "https://issuer.test");
    assert_eq!(claims.sub, id);
    assert_eq!(claims.phone_number, "+14155550100");

    // The per-phone budget (2) holds across A and B.
    let phone = json!({"phone": "+447400900777"});
    for base in [&a.base, &b.base] {
        let url = format!("{base}/v1/verifications");
        assert_eq!(post_json(&client, &url, &phone).await.0, 201);
    }
    let res = client
        .post(format!("{}/v1/verifications", a.base))
        .json(&phone)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 429);
    assert!(res.headers().get("retry-after").is_some());
    let (status, body) = post_json(&client, &format!("{}/v1/verifications", b.base), &phone).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["code"], "rate_limited");
    drop(a);
    drop(b);
}
