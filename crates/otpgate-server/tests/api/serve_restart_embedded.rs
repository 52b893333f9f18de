//! The embedded store survives a crash: start a verification, SIGKILL the process, start it
//! again on the same data dir, and the pending verification is still there and checkable.
#![allow(clippy::unwrap_used, missing_docs)]

use otpgate_test_support::fault::verify_receipt;
use otpgate_test_support::http::{check, get_json, jwks, start};
use otpgate_test_support::process::{ServeToml, Server, free_port};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_verification_survives_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let config = ServeToml {
        store: r#"kind = "embedded""#.to_owned(),
        policy: r#"test_numbers = { "+14155550100" = "424242" }"#.to_owned(),
        ..ServeToml::new("https://issuer.test")
    }
    .write(dir.path());
    let env = vec![(
        "OTPGATE_DATA_DIR",
        dir.path().join("data").display().to_string(),
    )];
    let port = free_port();
    let client = reqwest::Client::new();
    let server = Server::start(dir.path(), Some(&config), port, &env);
    let (status, body) = start(&client, &server.base, "+14155550100").await;
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_str().unwrap().to_owned();
    // A wrong code first: the spent attempt must survive too.
    let (status, body) = check(&client, &server.base, &id, "000000").await;
    assert_eq!(status, 422, "{body}");
    server.kill();

    let server = Server::start(dir.path(), Some(&config), port, &env);
    let view = get_json(&client, &format!("{}/v1/verifications/{id}", server.base)).await;
    assert_eq!(view["status"], "pending", "{view}");
    assert_eq!(view["attempts_left"], 4, "{view}");
    let (status, body) = check(&client, &server.base, &id, "424242").await;
    assert_eq!(status, 200, "{body}");
    // Keys were kept in the data dir: the receipt verifies with the restarted JWKS.
    let receipt = body["receipt"].as_str().unwrap().to_owned();
    let jwks = jwks(&client, &server.base).await;
    verify_receipt(&receipt, &jwks, "shop", "https://issuer.test");
}
