//! How often a stall's stack is sampled for the flamegraph, and what it may cost.
//!
//! While a stall lasts, the watchdog captures the stuck thread's stack every
//! `stall_sample_interval` (default 10 ms); the time between two samples is split between
//! their stacks. Three limits keep that cheap for the application:
//! - pacing: samples are at least `200 ×` the expected pause apart (half the budget), so one
//!   slow capture does not use up the rest of it;
//! - a pause budget: a sample is taken only while the stuck thread's total pause for captures
//!   of this stall, plus the next one and the report's captures still to come, stays within
//!   [`PAUSE_BUDGET_DIVISOR`]⁻¹ (1 %) of the stall so far;
//! - at most [`MAX_SAMPLES_PER_STALL`] samples per stall (a hang keeps adding its time to its
//!   last stack, see [`EXTEND_EVERY`]);
//! - at most [`MAX_SAMPLES_PER_SECOND`] samples per second per agent, however many workers
//!   are stuck at once (a token bucket, bursts of [`BURST`]).
//!
//! The captures at the start of a stall and at 2×, 4× and 8× the threshold (the report's
//! `frames` and `samples`) are taken regardless and feed the flamegraph too.

use std::time::{Duration, Instant};

/// The pause budget: at most 1/100 of a stall's time.
pub(crate) const PAUSE_BUDGET_DIVISOR: u32 = 100;
/// Samples per stall at most.
pub(crate) const MAX_SAMPLES_PER_STALL: u32 = 1_000;
/// Samples per second per agent at most.
pub(crate) const MAX_SAMPLES_PER_SECOND: f64 = 100.0;
/// Samples the rate limiter lets through at once after a quiet spell.
pub(crate) const BURST: f64 = 10.0;
/// While an ongoing stall is not being sampled, its time is added to its last stack at least
/// this often, so the flamegraph shows a hang that is still going on.
pub(crate) const EXTEND_EVERY: Duration = Duration::from_millis(250);
/// The pause assumed for a thread's next capture before one was measured (the capture
/// benchmark measures 100–200 µs on a loaded 2-core VM).
const FIRST_PAUSE_GUESS: Duration = Duration::from_micros(200);

/// What one open episode has sampled so far.
#[derive(Debug, Default)]
pub(crate) struct StallSampling {
    /// The stall time already handed to the flamegraph.
    pub(crate) attributed: Duration,
    /// Stall time at the last capture.
    last_capture: Duration,
    /// Captures of this stall (all kinds).
    captures: u32,
    /// Total pause of the stuck thread for captures of this stall.
    paused: Duration,
    /// A capture of this stall failed: take no more extra samples.
    gave_up: bool,
    /// The pause expected of the next capture: a moving average of the measured ones (one
    /// outlier, a watchdog descheduled by a loaded host, does not stop sampling for long).
    expected_pause: Duration,
}

impl StallSampling {
    /// Notes a capture taken at `stuck_for` that paused the thread for `paused`.
    pub(crate) fn captured(&mut self, stuck_for: Duration, paused: Duration) {
        self.captures += 1;
        self.last_capture = stuck_for;
        self.paused += paused;
        if !paused.is_zero() {
            self.expected_pause = if self.expected_pause.is_zero() {
                paused
            } else {
                (self.expected_pause * 3 + paused) / 4
            };
        }
    }

    /// Stops the extra samples of this stall (its thread did not answer a capture).
    pub(crate) fn give_up(&mut self) {
        self.gave_up = true;
    }

    /// The time to hand over now, `stuck_for` minus what was handed over; marks it handed.
    pub(crate) fn take_weight(&mut self, stuck_for: Duration) -> Duration {
        let w = stuck_for.saturating_sub(self.attributed);
        self.attributed = self.attributed.max(stuck_for);
        w
    }
}

/// The per-agent part: the interval and the rate limiter (owned by the watchdog thread).
#[derive(Debug)]
pub(crate) struct Sampler {
    interval: Duration,
    tokens: f64,
    refilled: Instant,
}

impl Sampler {
    /// `interval` zero turns the extra samples off.
    pub(crate) fn new(interval: Duration) -> Self {
        Sampler {
            interval,
            tokens: BURST,
            refilled: Instant::now(),
        }
    }

    /// Whether to take an extra sample of a stall that has lasted `stuck_for` now, leaving
    /// room in the budget for `reserved` more captures that will be taken anyway (the
    /// report's own, at 2×, 4× and 8× the threshold).
    pub(crate) fn due(&mut self, s: &StallSampling, stuck_for: Duration, reserved: u32) -> bool {
        if self.interval.is_zero() || s.gave_up || s.captures >= MAX_SAMPLES_PER_STALL {
            return false;
        }
        let next = if s.expected_pause.is_zero() {
            FIRST_PAUSE_GUESS
        } else {
            s.expected_pause
        };
        // Paced to half the budget on average, so that one slow capture (a watchdog that a
        // loaded host did not run for a while) does not use up the rest and leave a long gap.
        let paced = next * PAUSE_BUDGET_DIVISOR * 2;
        if stuck_for < s.last_capture + self.interval.max(paced) {
            return false;
        }
        if (s.paused + next * (1 + reserved)) * PAUSE_BUDGET_DIVISOR > stuck_for {
            return false;
        }
        self.take_token(Instant::now())
    }

    fn take_token(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.refilled = now;
        self.tokens = (self.tokens + elapsed * MAX_SAMPLES_PER_SECOND).min(BURST);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn samples_every_interval_within_the_pause_budget() {
        let mut sampler = Sampler::new(10 * MS);
        let mut s = StallSampling::default();
        s.captured(100 * MS, Duration::from_micros(20));
        assert!(!sampler.due(&s, 105 * MS, 0), "not before the interval");
        assert!(sampler.due(&s, 110 * MS, 0));
        assert!(!sampler.due(&s, 110 * MS, 100), "room left for 100 more");
        s.captured(110 * MS, Duration::from_micros(100));
        // The expected pause is now 40 µs: samples at least 8 ms apart; the interval wins.
        assert!(!sampler.due(&s, 119 * MS, 0));
        s.captured(120 * MS, Duration::from_micros(100));
        // 55 µs expected: 11 ms apart, paced to half the budget.
        assert!(!sampler.due(&s, 130 * MS, 0), "paced");
        assert!(sampler.due(&s, 131 * MS, 0));
        // A thread that took 2 ms to answer: the average moves to about 0.54 ms, and the
        // next sample waits until 1 % of the stall covers the pauses so far plus that.
        s.captured(131 * MS, 2 * MS);
        assert!(
            !sampler.due(&s, 270 * MS, 0),
            "2.22 + 0.54 ms > 1 % of 270 ms"
        );
        assert!(
            sampler.due(&s, 280 * MS, 0),
            "2.76 ms <= 2.8 ms, 149 ms later"
        );
    }

    #[test]
    fn the_rate_limiter_caps_samples_per_second() {
        let mut sampler = Sampler::new(MS);
        let s = StallSampling::default();
        let taken = (0..1000)
            .filter(|_| sampler.due(&s, Duration::from_secs(10), 0))
            .count();
        // The burst, plus what refilled during the loop (microseconds).
        assert!(
            (BURST as usize..BURST as usize + 3).contains(&taken),
            "{taken}"
        );
        assert!(!Sampler::new(Duration::ZERO).due(&s, Duration::from_secs(10), 0));
        let mut failed = StallSampling::default();
        failed.give_up();
        assert!(!Sampler::new(MS).due(&failed, Duration::from_secs(10), 0));
    }

    #[test]
    fn weight_is_handed_over_once() {
        let mut s = StallSampling::default();
        assert_eq!(s.take_weight(100 * MS), 100 * MS);
        assert_eq!(s.take_weight(130 * MS), 30 * MS);
        assert_eq!(s.take_weight(120 * MS), Duration::ZERO);
        assert_eq!(s.take_weight(140 * MS), 10 * MS);
    }
}
