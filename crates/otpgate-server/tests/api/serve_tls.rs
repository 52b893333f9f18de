//! `otpgate serve` with `[server.tls]`: HTTPS with a self-signed certificate made by the
//! test, a client that trusts only that certificate, and a bad key file refused at start.
#![allow(clippy::unwrap_used, missing_docs)]

use std::process::Command;

use otpgate_test_support::http::{check, start};
use otpgate_test_support::process::{ServeToml, Server, free_port};

fn write_config(
    dir: &std::path::Path,
    cert: &std::path::Path,
    key: &std::path::Path,
) -> std::path::PathBuf {
    ServeToml {
        server: format!(
            r#"
[server.tls]
cert = "{}"
key = "{}""#,
            cert.display(),
            key.display()
        ),
        store: r#"kind = "memory""#.to_owned(),
        policy: r#"test_numbers = { "+14155550100" = "424242" }"#.to_owned(),
        ..ServeToml::new("https://localhost")
    }
    .write(dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_https_with_the_configured_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert_pem = certified.cert.pem();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&cert, &cert_pem).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    let config = write_config(dir.path(), &cert, &key);
    let port = free_port();
    let env = vec![(
        "OTPGATE_DATA_DIR",
        dir.path().join("data").display().to_string(),
    )];
    let _server = Server::start(dir.path(), Some(&config), port, &env);

    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(cert_pem.as_bytes()).unwrap()])
        .build()
        .unwrap();
    let base = format!("https://localhost:{port}");
    let (status, body) = start(&client, &base, "+14155550100").await;
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_str().unwrap().to_owned();
    let (status, body) = check(&client, &base, &id, "424242").await;
    assert_eq!(status, 200, "{body}");
    // Plain HTTP on the TLS port gets nowhere.
    let plain = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/healthz"))
        .send()
        .await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());
    // A client that does not trust the certificate refuses it.
    let untrusting = reqwest::Client::new();
    assert!(
        untrusting
            .get(format!("{base}/healthz"))
            .send()
            .await
            .is_err()
    );
}

#[test]
fn a_key_that_is_not_a_key_stops_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, "not a key").unwrap();
    let config = write_config(dir.path(), &cert, &key);
    let out = Command::new(env!("CARGO_BIN_EXE_otpgate"))
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{}", free_port()),
            "--config",
        ])
        .arg(&config)
        .env("OTPGATE_DATA_DIR", dir.path().join("data"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("key.pem"), "{err}");
}
