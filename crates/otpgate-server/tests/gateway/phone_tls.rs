//! A local phone's HTTPS with a self-signed certificate (issue 20 item 2): trusted through a
//! pinned public key (`cert_pin`) or a private CA (`ca_file`), never through the system roots,
//! and refused when the pin or the CA does not match. An emulated phone serves its API over
//! TLS; the real binary's `otpgate gateways check` judges each configuration.
#![allow(clippy::unwrap_used, missing_docs)]

use std::process::Command;

use base64::Engine as _;
use otpgate_server::emulator::{Emulator, EmulatorConfig};
use otpgate_server::gateway::tls::Pin;
use otpgate_server::serve::{TlsListener, tls_acceptor};
use otpgate_test_support::process::{ServeToml, otpgate_bin};
use rcgen::{CertificateParams, IsCa, Issuer, KeyPair, SanType};

/// A CA and a phone certificate it signed for 127.0.0.1, as PEM files in `dir`; the phone's
/// certificate DER too.
fn certificates(dir: &std::path::Path, tag: &str) -> (std::path::PathBuf, Vec<u8>) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::new(Vec::<String>::new()).unwrap();
    leaf.subject_alt_names = vec![SanType::IpAddress("127.0.0.1".parse().unwrap())];
    let cert = leaf.signed_by(&key, &issuer).unwrap();
    std::fs::write(dir.join(format!("{tag}-ca.pem")), ca_cert.pem()).unwrap();
    std::fs::write(dir.join(format!("{tag}-phone.pem")), cert.pem()).unwrap();
    std::fs::write(dir.join(format!("{tag}-phone.key")), key.serialize_pem()).unwrap();
    (dir.join(format!("{tag}-ca.pem")), cert.der().to_vec())
}

async fn serve_phone_tls(dir: &std::path::Path, tag: &str) -> String {
    let emu = Emulator::new(EmulatorConfig::new(
        "sms",
        Some("pw-0123456789".into()),
        None,
    ));
    let acceptor = tls_acceptor(
        &dir.join(format!("{tag}-phone.pem")),
        &dir.join(format!("{tag}-phone.key")),
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let router = emu.router();
    tokio::spawn(async move { axum::serve(TlsListener::new(listener, acceptor), router).await });
    format!("https://127.0.0.1:{port}")
}

fn device(name: &str, url: &str, trust: &str) -> String {
    format!(
        "[[gateways.devices]]\nname = \"{name}\"\nkind = \"sms-gate\"\nurl = \"{url}\"\n\
         username = \"sms\"\npassword_env = \"PW\"\n{trust}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_self_signed_phone_is_trusted_by_its_pin_or_its_ca_only() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, der) = certificates(dir.path(), "a");
    let (other_ca, other_der) = certificates(dir.path(), "b");
    let url = serve_phone_tls(dir.path(), "a").await;
    let pin = |der: &[u8]| {
        format!(
            "sha256/{}",
            base64::engine::general_purpose::STANDARD.encode(Pin::of_certificate(der).unwrap().0)
        )
    };
    let config = ServeToml {
        tail: format!(
            "[gateways]\nwebhook_signing_key_env = \"KEY\"\n{}{}{}{}{}",
            device("pinned", &url, &format!("cert_pin = \"{}\"", pin(&der))),
            device("ca", &url, &format!("ca_file = \"{}\"", ca.display())),
            device(
                "wrong-pin",
                &url,
                &format!("cert_pin = \"{}\"", pin(&other_der))
            ),
            device(
                "wrong-ca",
                &url,
                &format!("ca_file = \"{}\"", other_ca.display())
            ),
            device("system-roots", &url, ""),
        ),
        ..ServeToml::new("https://otp.example.com")
    }
    .write(dir.path());
    let out = Command::new(otpgate_bin())
        .args(["gateways", "check", "--config"])
        .arg(&config)
        .env("PW", "pw-0123456789")
        .env("KEY", "a-strong-signing-key-0123456789")
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{text}");
    let verdict = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("{name}: ")))
            .unwrap_or_else(|| panic!("{name} not reported:\n{text}"))
            .to_owned()
    };
    // Trusted: reachable, credentials accepted (webhooks are not registered: a warning).
    assert_eq!(verdict("pinned"), "pinned: WARN", "{text}");
    assert_eq!(verdict("ca"), "ca: WARN", "{text}");
    // Not trusted: the TLS handshake fails, the phone is unusable.
    for name in ["wrong-pin", "wrong-ca", "system-roots"] {
        assert_eq!(verdict(name), format!("{name}: UNUSABLE"), "{text}");
    }
    assert!(text.contains("3 of 5 phones unusable"), "{text}");
}

#[test]
fn a_bad_pin_or_ca_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    for (trust, why) in [
        ("cert_pin = \"sha256/AAAA\"", "32 bytes"),
        ("ca_file = \"/nonexistent/ca.pem\"", "cannot read"),
        (
            "cert_pin = \"sha256/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\"\nca_file = \"/x\"",
            "not both",
        ),
    ] {
        let config = ServeToml {
            tail: format!(
                "[gateways]\nwebhook_signing_key_env = \"KEY\"\n{}",
                device("p", "https://127.0.0.1:9", trust)
            ),
            ..ServeToml::new("https://otp.example.com")
        }
        .write(dir.path());
        let out = Command::new(otpgate_bin())
            .args(["gateways", "check", "--config"])
            .arg(&config)
            .env("PW", "x")
            .env("KEY", "a-strong-signing-key-0123456789")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(
            err.contains(why) && err.contains("gateways.devices"),
            "{trust}: {err}"
        );
    }
    // An http:// url with a pin makes no sense.
    let config = ServeToml {
        tail: format!(
            "[gateways]\nwebhook_signing_key_env = \"KEY\"\n{}",
            device(
                "p",
                "http://127.0.0.1:9",
                "cert_pin = \"sha256/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\""
            )
        ),
        ..ServeToml::new("https://otp.example.com")
    }
    .write(dir.path());
    let out = Command::new(otpgate_bin())
        .args(["gateways", "check", "--config"])
        .arg(&config)
        .env("PW", "x")
        .env("KEY", "a-strong-signing-key-0123456789")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("https://"));
}
