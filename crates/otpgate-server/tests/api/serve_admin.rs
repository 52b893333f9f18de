//! The operator console (`[admin]`) of the real binary, over HTTP: off unless configured,
//! refused at start without a token or with a short one (never echoing it), the token
//! required on every API call and a wrong one refused, the login form's session cookie
//! (HttpOnly, SameSite=Strict, no Secure over plain HTTP), logout, and dev mode's `/admin`
//! with its owner-only token file.
#![allow(clippy::unwrap_used, missing_docs)]

use std::process::Command;
use std::time::Duration;

use otpgate_test_support::process::{ServeToml, Server, free_port};
use serde_json::Value;

const TOKEN: &str = "an-admin-token-of-forty-characters-00000";

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

fn config(admin_port: u16, public: &str) -> String {
    ServeToml {
        tail: format!(
            "[admin]\nlisten = \"127.0.0.1:{admin_port}\"\ntoken_env = \"TEST_ADMIN_TOKEN\"\n"
        ),
        ..ServeToml::new(public)
    }
    .render()
}

fn start_refused(toml: &str, env: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("otpgate.toml");
    std::fs::write(&path, toml).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_otpgate"));
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&path)
        .env_remove("OTPGATE_CONFIG")
        .env_remove("TEST_ADMIN_TOKEN")
        .env("OTPGATE_DATA_DIR", dir.path().join("data"))
        .current_dir(dir.path());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    assert!(!out.status.success(), "it started");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_console_without_a_usable_token_does_not_start() {
    let toml = config(free_port(), "http://127.0.0.1:1");
    let err = start_refused(&toml, &[]);
    assert!(
        err.contains("admin.token_env") && err.contains("TEST_ADMIN_TOKEN"),
        "{err}"
    );
    let err = start_refused(&toml, &[("TEST_ADMIN_TOKEN", "short-secret-1234")]);
    assert!(err.contains("shorter than 32"), "{err}");
    assert!(
        !err.contains("short-secret-1234"),
        "the token was echoed: {err}"
    );
    // The token may come from a file (TEST_ADMIN_TOKEN_FILE), like every secret.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, "too-short\n").unwrap();
    let err = start_refused(&toml, &[("TEST_ADMIN_TOKEN_FILE", file.to_str().unwrap())]);
    assert!(err.contains("shorter than 32"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_token_is_required_and_a_wrong_one_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (port, admin_port) = (free_port(), free_port());
    let base = format!("http://127.0.0.1:{port}");
    let admin = format!("http://127.0.0.1:{admin_port}");
    std::fs::write(dir.path().join("token"), format!("{TOKEN}\n")).unwrap();
    let path = dir.path().join("otpgate.toml");
    std::fs::write(&path, config(admin_port, &base)).unwrap();
    let _server = Server::start(
        dir.path(),
        Some(&path),
        port,
        &[
            (
                "OTPGATE_DATA_DIR",
                dir.path().join("data").display().to_string(),
            ),
            (
                "TEST_ADMIN_TOKEN_FILE",
                dir.path().join("token").display().to_string(),
            ),
        ],
    );
    let http = http();
    let mut up = false;
    for _ in 0..100 {
        if http
            .get(format!("{admin}/api/openapi.json"))
            .send()
            .await
            .is_ok()
        {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(up, "the admin listener never answered");

    for api in ["fleet", "series", "verifications", "audit"] {
        let url = format!("{admin}/api/{api}");
        let none = http.get(&url).send().await.unwrap();
        assert_eq!(none.status(), 401, "{api} without a token");
        assert!(
            none.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .starts_with("Bearer")
        );
        let body: Value = none.json().await.unwrap();
        assert_eq!(body["error"]["code"], "unauthorized");
        for wrong in [format!("{TOKEN}0"), TOKEN[..39].to_owned(), String::new()] {
            let res = http.get(&url).bearer_auth(&wrong).send().await.unwrap();
            assert_eq!(res.status(), 401, "{api} with a wrong token");
        }
        let cookie = http
            .get(&url)
            .header("cookie", format!("otpgate_admin={}", "0".repeat(64)))
            .send()
            .await
            .unwrap();
        assert_eq!(cookie.status(), 401, "{api} with a made-up session");
        let ok = http.get(&url).bearer_auth(TOKEN).send().await.unwrap();
        assert_eq!(ok.status(), 200, "{api} with the token");
        assert_eq!(ok.headers()["cache-control"], "no-store");
    }
    // Bad query parameters are a 400 with the one error shape, never a 500.
    for q in [
        "series?minutes=0",
        "series?minutes=61",
        "series?minutes=x",
        "series?zoom=1",
        "verifications?limit=51",
    ] {
        let res = http
            .get(format!("{admin}/api/{q}"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 400, "{q}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"]["code"], "invalid_request", "{q}");
    }

    // The page without a session is the login form, and never carries the token.
    let page = http.get(format!("{admin}/")).send().await.unwrap();
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    let html = page.text().await.unwrap();
    assert!(html.contains("name=\"token\"") && !html.contains(TOKEN));

    // A wrong login: 401, the form again, no cookie.
    let wrong = http
        .post(format!("{admin}/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("token=not-the-token")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    assert!(wrong.headers().get("set-cookie").is_none());
    // The right one: 303 to the console with a strict session cookie.
    let ok = http
        .post(format!("{admin}/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 303);
    assert_eq!(ok.headers()["location"], "/");
    let set = ok.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict") && set.contains("Path=/;"),
        "{set}"
    );
    assert!(!set.contains("Secure"), "plain HTTP: {set}");
    assert!(!set.contains(TOKEN), "the cookie is not the token");
    let session = set.split(';').next().unwrap().to_owned();
    let page = http
        .get(format!("{admin}/"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    let html = page.text().await.unwrap();
    assert!(html.contains("otpgate console") && html.contains("/assets/uPlot.iife.min.js"));
    assert!(!html.contains(TOKEN));
    let fleet = http
        .get(format!("{admin}/api/fleet"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(fleet.status(), 200);
    // Logout ends the session on the server, not only in the browser.
    let out = http
        .post(format!("{admin}/logout"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 303);
    assert!(
        out.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    let after = http
        .get(format!("{admin}/api/fleet"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), 401);

    // Not on the main listener outside dev mode.
    let main = http
        .get(format!("{base}/admin/api/fleet"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(main.status(), 404);
    // The admin API documents itself.
    let doc: Value = http
        .get(format!("{admin}/api/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for p in [
        "/api/fleet",
        "/api/series",
        "/api/verifications",
        "/api/audit",
        "/login",
        "/logout",
    ] {
        assert!(doc["paths"].get(p).is_some(), "{p} is documented");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_mode_serves_the_console_at_admin_with_an_owner_only_token_file() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let _server = Server::start(
        dir.path(),
        None,
        port,
        &[(
            "OTPGATE_DATA_DIR",
            dir.path().join("data").display().to_string(),
        )],
    );
    let file = dir.path().join("data/dev-admin-token");
    let mut token = String::new();
    for _ in 0..100 {
        token = std::fs::read_to_string(&file)
            .unwrap_or_default()
            .trim()
            .to_owned();
        if !token.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(token.len() >= 32);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    let http = http();
    let mut fleet = None;
    for _ in 0..100 {
        if let Ok(r) = http
            .get(format!("{base}/admin/api/fleet"))
            .bearer_auth(&token)
            .send()
            .await
        {
            fleet = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let fleet = fleet.unwrap();
    assert_eq!(fleet.status(), 200);
    let body: Value = fleet.json().await.unwrap();
    assert_eq!(body["devices"][0]["name"], "emulator");
    let none = http
        .get(format!("{base}/admin/api/fleet"))
        .send()
        .await
        .unwrap();
    assert_eq!(none.status(), 401);
    let ok = http
        .post(format!("{base}/admin/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 303);
    assert_eq!(ok.headers()["location"], "/admin/");
    assert!(
        ok.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Path=/admin;")
    );
    for path in ["/admin", "/admin/"] {
        let page = http.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(page.status(), 200, "{path}");
        assert!(
            page.text()
                .await
                .unwrap()
                .contains("action=\"/admin/login\""),
            "{path}"
        );
    }
}
