//! The embedded store survives a crash: start a verification, SIGKILL the process, start it
//! again on the same data dir, and the pending verification is still there and checkable.
#![allow(clippy::unwrap_used, missing_docs)]

use otpgate_test_support::http::{get_json, jwks, post_json};
use otpgate_test_support::process::{Server, free_port, write_config};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_verification_survives_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        r#"
[server]
danger_discard_sends = true
public_url = "https://issuer.test"

[store]
kind = "embedded"

[[apps]]
name = "shop"
origins = ["https://shop.example.com"]

[policy]
test_numbers = { "+14155550100" = "424242" }
"#,
    );
    let env = vec![(
        "OTPGATE_DATA_DIR",
        dir.path().join("data").display().to_string(),
    )];
    let port = free_port();
    let client = reqwest::Client::new();
    let server = Server::start(dir.path(), Some(&config), port, &env);
    let (status, body) = post_json(
        &client,
        &format!("{}/v1/verifications", server.base),
        &json!({"phone": "+14155550100"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_str().unwrap().to_owned();
    // A wrong code first: the spent attempt must survive too.
    let (status, body) = post_json(
        &client,
        &format!("{}/v1/verifications/{id}/check", server.base),
        &json!({"code": "000000"}),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    server.kill();

    let server = Server::start(dir.path(), Some(&config), port, &env);
    let view = get_json(&client, &format!("{}/v1/verifications/{id}", server.base)).await;
    assert_eq!(view["status"], "pending", "{view}");
    assert_eq!(view["attempts_left"], 4, "{view}");
    let (status, body) = post_json(
        &client,
        &format!("{}/v1/verifications/{id}/check", server.base),
        &json!({"code": "424242"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // Keys were kept in the data dir: the receipt verifies with the restarted JWKS.
    let receipt = body["receipt"].as_str().unwrap().to_owned();
    let jwks = jwks(&client, &server.base).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let expect = otpgate_core::receipt::Expectations {
        audience: "shop",
        issuer: "https://issuer.test",
        now,
        leeway: 5,
    };
    otpgate_core::receipt::verify(&receipt, &jwks, &expect).unwrap();
}
