//! The fuzz oracles: each function takes arbitrary bytes, runs one otpgate-core entry point on
//! them and panics if a property does not hold. The libFuzzer targets (`fuzz_targets/`) and
//! the stable smoke driver (`src/bin/smoke.rs`) both call these.

use otpgate_core::sms::{self, ComposeRequest, Encoding, Layout, Template};
use otpgate_core::webhook;

/// The ASCII whitespace of the WHATWG/WICG algorithms.
fn is_ws(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\u{c}' | '\r' | ' ')
}

/// `sms::parse`: never panics; the origin-bound result is the last line's `@host #code`, with
/// a valid host and a non-empty code without whitespace; `code` agrees with it; the borrowed
/// and owned parsers agree; the JSON has every key.
pub fn sms_parse(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let p = sms::parse(text);
    assert!(
        sms::parse_ref(text).to_owned() == p,
        "parse_ref and parse disagree"
    );
    if let Some(w) = &p.webotp {
        assert!(sms::parse::is_valid_host(&w.host));
        assert!(!w.code.is_empty() && !w.code.chars().any(is_ws));
        assert_eq!(p.code.as_deref(), Some(w.code.as_str()));
        let last = text.rsplit(['\n', '\r']).next().unwrap_or(text);
        assert!(
            last.starts_with(&format!("@{} #{}", w.host, w.code)),
            "not the last line"
        );
        if let Some(f) = &w.iframe_host {
            assert!(sms::parse::is_valid_host(f));
            assert!(last.starts_with(&format!("@{} #{} @{f}", w.host, w.code)));
        }
    } else if let Some(c) = &p.code {
        assert!((4..=10).contains(&c.len()));
        assert!(c.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert!(c.bytes().any(|b| b.is_ascii_digit()));
    }
    if let Some(h) = &p.app_hash {
        assert_eq!(h.len(), 11);
        assert_eq!(text.split(is_ws).rfind(|t| !t.is_empty()), Some(h.as_str()));
    }
    let json: serde_json::Value = serde_json::to_value(&p).expect("serialises");
    for key in ["code", "webotp", "app_hash"] {
        assert!(json.get(key).is_some(), "missing {key}");
    }
}

/// `sms::segments`: never panics; units and encoding match a naive recount; one segment
/// exactly when the units fit one SMS; parts hold the units.
pub fn sms_segments(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let s = sms::segments(text);
    let gsm = text.chars().all(|c| sms::segments::gsm7_width(c) != 0);
    assert_eq!(s.encoding == Encoding::Gsm7, gsm);
    let units: usize = if gsm {
        text.chars()
            .map(|c| sms::segments::gsm7_width(c) as usize)
            .sum()
    } else {
        text.encode_utf16().count()
    };
    assert_eq!(s.units as usize, units);
    assert!(s.segments >= 1);
    assert_eq!(s.segments == 1, s.units <= s.encoding.single_limit());
    if s.segments > 1 {
        let part = s.encoding.part_limit();
        assert!(s.units <= s.segments * part);
        // Greedy packing loses at most one unit per part (a pair that did not fit).
        assert!(s.units > (s.segments - 1) * (part - 1));
    }
}

/// `sms::compose` with fields cut from the input at NUL bytes (app, code, origin, iframe
/// origin, app hash, locale, template; the first byte picks the layout and which options are
/// present): never panics; a composed message fits one SMS, carries no trailing newline and
/// parses back to its origin, code, iframe origin and app hash; without an origin it has no
/// origin-bound line.
pub fn sms_compose(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let mut f = text.split('\0');
    let mut next = || f.next().unwrap_or("");
    let (app, code, origin, iframe, hash, locale, template) =
        (next(), next(), next(), next(), next(), next(), next());
    // A template is checked when it is made: arbitrary text either becomes one or is refused.
    let template = (flags & 0x20 != 0)
        .then(|| Template::new(template).ok())
        .flatten();
    let req = ComposeRequest {
        app,
        code,
        origin: (flags & 0x01 != 0).then_some(origin),
        iframe_origin: (flags & 0x02 != 0).then_some(iframe),
        app_hash: (flags & 0x04 != 0).then_some(hash),
        locale: (flags & 0x08 != 0).then_some(locale),
        template: template.as_ref(),
        templates: None,
        layout: if flags & 0x10 != 0 {
            Layout::HashLine
        } else {
            Layout::Combined
        },
    };
    let Ok(c) = sms::compose(req) else { return };
    assert_eq!(c.segments.segments, 1);
    assert_eq!(c.segments, sms::segments(&c.text));
    assert!(!c.text.ends_with(['\n', '\r']));
    let p = sms::parse(&c.text);
    match req.origin {
        Some(o) => {
            let w = p.webotp.expect("origin-bound line");
            assert_eq!(w.host, o.to_ascii_lowercase());
            assert_eq!(w.code, code);
            assert_eq!(
                w.iframe_host,
                req.iframe_origin.map(str::to_ascii_lowercase)
            );
        }
        None => assert!(p.webotp.is_none(), "fake origin line"),
    }
    if let Some(h) = req.app_hash {
        assert!(sms::verify_app_hash(&c.text, h));
    }
}

/// `webhook::verify` under every scheme: never panic on any headers; a signature
/// made with `sign_smsgate` / `sign_otpgate` verifies inside the window, and fails once the
/// body, the key, the time or the scheme changes.
pub fn webhook_verify(data: &[u8]) {
    if data.len() < 2 {
        return;
    }
    let split = usize::from(data[0]) % data.len();
    let (head, body) = data[1..].split_at(split.min(data.len() - 1));
    let head = String::from_utf8_lossy(head);
    let mut parts = head.splitn(3, '\n');
    let key = parts.next().unwrap_or("");
    let ts_header = parts.next();
    let sig = parts.next();
    let _ = webhook::verify_smsgate(key, body, ts_header, sig, 1_700_000_000, 300);
    let headers = |timestamp, signature| webhook::Signed {
        timestamp,
        signature,
    };
    let _ = webhook::verify(
        webhook::Scheme::TextBee,
        [key],
        body,
        headers(None, sig),
        0,
        0,
    );

    let now = 1_700_000_000i64;
    let ts = "1700000100";
    let good = webhook::sign_smsgate(key, body, ts);
    assert_eq!(
        webhook::verify_smsgate(key, body, Some(ts), Some(&good), now, 300),
        Ok(())
    );
    assert!(webhook::verify_smsgate(key, body, Some(ts), Some(&good), now + 1000, 300).is_err());
    let mut tampered = body.to_vec();
    tampered.push(b'x');
    assert!(webhook::verify_smsgate(key, &tampered, Some(ts), Some(&good), now, 300).is_err());
    let other_key = format!("{key}x");
    assert!(webhook::verify_smsgate(&other_key, body, Some(ts), Some(&good), now, 300).is_err());
    let t = webhook::sign_textbee(key, body);
    assert_eq!(
        webhook::verify(
            webhook::Scheme::TextBee,
            [key],
            body,
            headers(None, Some(&t)),
            0,
            0
        ),
        Ok(())
    );
    // otpgate's own generic webhook follows the same rules.
    let otpgate = |ts, sig, now| {
        webhook::verify(
            webhook::Scheme::Otpgate,
            [key],
            body,
            headers(ts, sig),
            now,
            300,
        )
    };
    let _ = otpgate(ts_header, sig, now);
    let o = webhook::sign_otpgate(key, ts, body);
    assert_eq!(otpgate(Some(ts), Some(&o), now), Ok(()));
    assert!(otpgate(Some(ts), Some(&good), now).is_err());
    assert!(otpgate(Some(ts), Some(&o), now + 1000).is_err());
}
