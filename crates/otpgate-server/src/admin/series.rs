//! Fixed-size ring buffers of time buckets and a small latency histogram: the operator
//! console's live charts, kept in memory **per instance** (each issuer counts what it saw;
//! nothing is shared through the store, and a restart starts them empty).
//!
//! Pure: every call takes the time (`now_ms`), so tests drive the clock.

use serde::Serialize;

/// A ring of `len` buckets of `step_ms` each, the newest at `now`. A bucket older than the
/// ring is reset to `T::default()` when its slot is reused.
#[derive(Clone, Debug)]
pub struct Ring<T> {
    step_ms: i64,
    slots: Vec<(i64, T)>,
}

impl<T: Default + Clone> Ring<T> {
    /// `len` buckets (at least 1) of `step_ms` (at least 1) each.
    pub fn new(len: usize, step_ms: i64) -> Self {
        Self {
            step_ms: step_ms.max(1),
            slots: vec![(i64::MIN, T::default()); len.max(1)],
        }
    }

    /// The bucket length, ms.
    pub fn step_ms(&self) -> i64 {
        self.step_ms
    }

    /// How many buckets the ring holds.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether it holds no bucket (never: at least one).
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    fn index(&self, ms: i64) -> i64 {
        ms.div_euclid(self.step_ms)
    }

    fn slot(&self, index: i64) -> usize {
        // The ring is never longer than i64::MAX slots.
        usize::try_from(index.rem_euclid(self.slots.len() as i64)).unwrap_or(0)
    }

    /// The bucket that holds `now_ms`, emptied first if it held an older one.
    pub fn at(&mut self, now_ms: i64) -> &mut T {
        let index = self.index(now_ms);
        let slot = self.slot(index);
        let entry = &mut self.slots[slot];
        if entry.0 != index {
            *entry = (index, T::default());
        }
        &mut entry.1
    }

    /// The last `n` buckets up to the one of `now_ms` (at most the ring's length), oldest
    /// first: each bucket's start (ms) and its content, `None` for a bucket nothing was
    /// recorded in.
    pub fn last(&self, now_ms: i64, n: usize) -> Vec<(i64, Option<&T>)> {
        let n = n.min(self.slots.len());
        let newest = self.index(now_ms);
        (0..n as i64)
            .rev()
            .map(|back| {
                let index = newest - back;
                let (held, value) = &self.slots[self.slot(index)];
                (index * self.step_ms, (*held == index).then_some(value))
            })
            .collect()
    }
}

/// Upper bounds of the latency buckets, ms (the last bucket is everything above).
pub const LATENCY_BOUNDS_MS: [u32; 22] = [
    100, 200, 300, 500, 750, 1_000, 1_500, 2_000, 3_000, 4_000, 5_000, 7_500, 10_000, 15_000,
    20_000, 30_000, 45_000, 60_000, 90_000, 120_000, 180_000, 300_000,
];

/// A latency histogram over [`LATENCY_BOUNDS_MS`] (and one bucket above them).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Hist {
    counts: [u32; LATENCY_BOUNDS_MS.len() + 1],
}

impl Hist {
    /// Counts one observation.
    pub fn add(&mut self, ms: i64) {
        let ms = u32::try_from(ms.max(0)).unwrap_or(u32::MAX);
        let i = LATENCY_BOUNDS_MS
            .iter()
            .position(|&b| ms <= b)
            .unwrap_or(LATENCY_BOUNDS_MS.len());
        self.counts[i] = self.counts[i].saturating_add(1);
    }

    /// Adds another histogram's counts.
    pub fn merge(&mut self, other: &Self) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a = a.saturating_add(*b);
        }
    }

    /// How many observations.
    pub fn count(&self) -> u64 {
        self.counts.iter().map(|&c| u64::from(c)).sum()
    }

    /// The `q` quantile (0..=1), as the upper bound of the bucket that holds it (so an
    /// estimate that errs high); `None` without observations. Above the last bound it
    /// answers that bound.
    pub fn quantile(&self, q: f64) -> Option<u32> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0u64;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += u64::from(c);
            if seen >= rank {
                return Some(
                    LATENCY_BOUNDS_MS
                        .get(i)
                        .copied()
                        .unwrap_or(LATENCY_BOUNDS_MS[LATENCY_BOUNDS_MS.len() - 1]),
                );
            }
        }
        None
    }
}

/// Counts over a span: sends, deliveries, failures and their latency.
#[derive(Clone, Debug, Default, Serialize, PartialEq, utoipa::ToSchema)]
pub struct DeliveryStats {
    /// Sends the device accepted.
    pub submitted: u64,
    /// Delivery reports.
    pub delivered: u64,
    /// Failed sends and failure reports.
    pub failed: u64,
    /// delivered / (delivered + failed), `None` without either.
    pub success_ratio: Option<f64>,
    /// Delivery latency p50, ms (from the code's creation to the delivered report).
    pub latency_p50_ms: Option<u32>,
    /// Delivery latency p99, ms.
    pub latency_p99_ms: Option<u32>,
}

impl DeliveryStats {
    /// The stats of counts and a histogram.
    pub fn of(submitted: u64, delivered: u64, failed: u64, hist: &Hist) -> Self {
        let done = delivered + failed;
        Self {
            submitted,
            delivered,
            failed,
            success_ratio: (done > 0).then(|| delivered as f64 / done as f64),
            latency_p50_ms: hist.quantile(0.5),
            latency_p99_ms: hist.quantile(0.99),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_keeps_the_last_buckets_and_forgets_older_ones() {
        let mut r: Ring<u32> = Ring::new(3, 10);
        *r.at(0) += 1;
        *r.at(5) += 1;
        *r.at(10) += 5;
        *r.at(25) += 7;
        let last = r.last(25, 3);
        assert_eq!(
            last.iter()
                .map(|(t, v)| (*t, v.copied()))
                .collect::<Vec<_>>(),
            vec![(0, Some(2)), (10, Some(5)), (20, Some(7))]
        );
        // Bucket 30 reuses bucket 0's slot: the old count is gone, not added to.
        *r.at(31) += 1;
        let last = r.last(31, 3);
        assert_eq!(last[2], (30, Some(&1)));
        assert_eq!(last[0], (10, Some(&5)));
        // A long pause: every bucket in view is empty, none shows stale counts.
        let later = r.last(1_000, 3);
        assert!(later.iter().all(|(_, v)| v.is_none()), "{later:?}");
        // Asking for more than the ring holds gives the ring.
        assert_eq!(r.last(31, 99).len(), 3);
    }

    #[test]
    fn ring_handles_times_before_the_epoch() {
        let mut r: Ring<u32> = Ring::new(4, 10);
        *r.at(-5) += 1;
        assert_eq!(r.last(-5, 1), vec![(-10, Some(&1))]);
    }

    #[test]
    fn quantiles_err_high_by_at_most_one_bucket() {
        let mut h = Hist::default();
        assert_eq!(h.quantile(0.5), None);
        for ms in [50, 120, 180, 250, 900] {
            h.add(ms);
        }
        assert_eq!(h.count(), 5);
        assert_eq!(h.quantile(0.5), Some(200));
        assert_eq!(h.quantile(0.99), Some(1_000));
        h.add(10_000_000);
        assert_eq!(h.quantile(1.0), Some(300_000));
        let mut m = Hist::default();
        m.merge(&h);
        assert_eq!(m, h);
    }

    #[test]
    fn success_ratio_needs_an_outcome() {
        let h = Hist::default();
        assert_eq!(DeliveryStats::of(3, 0, 0, &h).success_ratio, None);
        assert_eq!(DeliveryStats::of(4, 3, 1, &h).success_ratio, Some(0.75));
    }
}
