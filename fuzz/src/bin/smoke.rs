//! A stable-Rust stand-in for `cargo fuzz`: feeds random and dictionary-built inputs to the
//! same oracles as the libFuzzer targets, for a bounded time. No coverage feedback, so it is a
//! smoke test, not a fuzzer; it needs neither nightly nor a C++ compiler.
//!
//! `cargo run --release --no-default-features --bin smoke -- [SECONDS_PER_TARGET] [TARGET...]`

use std::time::{Duration, Instant};

/// Pieces that matter to the parsers, so random inputs reach the interesting paths.
const DICT: &[&str] = &[
    "@",
    "#",
    " ",
    "  ",
    "\n",
    "\r",
    "\r\n",
    "\t",
    "\u{c}",
    "\0",
    "<#>",
    "example.com",
    "a.b",
    "127.0.0.1",
    "256.1.1.1",
    "-",
    ".",
    "..",
    "123456",
    "12",
    "ABC123",
    "FA+9qCX9VSu",
    "kFUwfusCq/+",
    "€",
    "^",
    "{",
    "}",
    "{code}",
    "{app}",
    "{origin}",
    "{app_hash}",
    "{{",
    "}}",
    "ç",
    "’",
    "😀",
    "\u{a0}",
    "\u{200b}",
    "\u{2028}",
    "é",
    "Ä",
    "xn--",
    "pt-BR",
    "en",
    "Your code is ",
    "@example.com #123456",
    " @bank.example",
    "\u{85}",
];

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn input(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        match self.below(4) {
            // Raw bytes (mostly invalid UTF-8).
            0 => (0..self.below(64)).for_each(|_| out.push(self.next() as u8)),
            // Long runs, for the segment boundaries.
            1 => {
                let piece = DICT[self.below(DICT.len())];
                let n = self.below(400);
                (0..n).for_each(|_| out.extend_from_slice(piece.as_bytes()));
                let tail = DICT[self.below(DICT.len())];
                out.extend_from_slice(tail.as_bytes());
            }
            // Dictionary pieces mixed with printable ASCII.
            _ => {
                out.push(self.next() as u8);
                for _ in 0..self.below(24) {
                    if self.below(3) == 0 {
                        out.push(b' ' + self.below(95) as u8);
                    } else {
                        out.extend_from_slice(DICT[self.below(DICT.len())].as_bytes());
                    }
                }
            }
        }
        out
    }
}

impl Rng {
    /// A compose input (see `otpgate_fuzz::sms_compose`) built from plausible field values,
    /// so that most requests get past validation and exercise the parse-back checks.
    fn compose_input(&mut self) -> Vec<u8> {
        const APPS: &[&str] = &[
            "Example",
            "Acme Bank",
            "{code}",
            "Açaí",
            "ÄÖÜ",
            "x",
            "A1234",
            "Shop & Co",
            "€uro",
        ];
        const CODES: &[&str] = &["123456", "4711", "AB12CD", "0000000000", "ABCD", "12345"];
        const HOSTS: &[&str] = &[
            "example.com",
            "Example.COM",
            "a.b",
            "shop.example",
            "127.0.0.1",
            "xn--bcher-kva.example",
            "a-b.c",
        ];
        const HASHES: &[&str] = &["FA+9qCX9VSu", "kFUwfusCq/+", "abcdefghijk", "0aa0+0AAaaA"];
        const LOCALES: &[&str] = &["en", "pt-BR", "de", "fr_CA", "ja", "es", "it", "nl"];
        const TEMPLATES: &[&str] = &[
            "{code} is your {app} code",
            "Código {code}",
            "{app}: {code} ({origin})",
            "{code} {app_hash}",
            "Use {code}\nThanks",
            "{{{code}}}",
        ];
        let mut pick = |pool: &[&'static str]| -> &'static str {
            if self.below(8) == 0 {
                DICT[self.below(DICT.len())]
            } else {
                pool[self.below(pool.len())]
            }
        };
        let fields = [
            pick(APPS),
            pick(CODES),
            pick(HOSTS),
            pick(HOSTS),
            pick(HASHES),
            pick(LOCALES),
            pick(TEMPLATES),
        ];
        let mut out = vec![self.next() as u8];
        out.extend_from_slice(fields.join("\0").as_bytes());
        out
    }
}

type Target = fn(&[u8]);

fn main() {
    let mut args = std::env::args().skip(1);
    let secs: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(10);
    let only: Vec<String> = args.collect();
    let targets: [(&str, Target); 4] = [
        ("sms_parse", otpgate_fuzz::sms_parse),
        ("sms_segments", otpgate_fuzz::sms_segments),
        ("sms_compose", otpgate_fuzz::sms_compose),
        ("webhook_verify", otpgate_fuzz::webhook_verify),
    ];
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0x9e37_79b9, |d| d.as_nanos() as u64)
        | 1;
    println!("smoke: seed {seed}, {secs} s per target");
    for (name, f) in targets {
        if !only.is_empty() && !only.iter().any(|o| o == name) {
            continue;
        }
        let mut rng = Rng(seed);
        let start = Instant::now();
        let mut n = 0u64;
        while start.elapsed() < Duration::from_secs(secs) {
            for _ in 0..256 {
                let input = if name == "sms_compose" && rng.below(2) == 0 {
                    rng.compose_input()
                } else {
                    rng.input()
                };
                let result = std::panic::catch_unwind(|| f(&input));
                if result.is_err() {
                    eprintln!("smoke: {name} failed on input {input:?}");
                    std::process::exit(1);
                }
                n += 1;
            }
        }
        println!("smoke: {name}: {n} inputs, no failure");
    }
}
