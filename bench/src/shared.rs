//! What the bench tools share (read into each binary with `#[path]`): percentiles, a small
//! random generator, the JSON report file.

use anyhow::Context as _;

/// The value at `p` (0 to 1) of `sorted` (nearest rank), `None` when it is empty.
pub(crate) fn percentile<T: Copy>(sorted: &[T], p: f64) -> Option<T> {
    let last = sorted.len().checked_sub(1)?;
    let idx = (last as f64 * p).round() as usize;
    Some(sorted[idx.min(last)])
}

/// A small xorshift generator (not security relevant).
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Writes `report` as pretty JSON to `path` (`-`: standard output).
pub(crate) fn write_json(path: &str, report: &impl serde::Serialize) -> anyhow::Result<()> {
    let json = serde_json::to_string_pretty(report)?;
    if path == "-" {
        println!("{json}");
    } else {
        std::fs::write(path, json).with_context(|| format!("cannot write {path}"))?;
    }
    Ok(())
}
