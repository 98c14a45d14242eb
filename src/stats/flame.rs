//! Blocked time by stack: the table behind `/flamegraph.svg` and `/stalls/folded`.
//!
//! While a stall lasts the watchdog samples the stuck thread's stack (see
//! `watchdog::sampling`); the symbolizer folds each sample into one line of the classic folded
//! format (`root;outer;…;inner`) and adds it here with the time it stands for: the first
//! sample the stall so far, then half of each gap to each of the two samples around it, and
//! at the end the time since the last one. So the weights of one stall add up to its
//! duration, and the table's total is blocked time, not a sample count.
//!
//! Bounded in every direction: at most [`MAX_STACKS`] distinct stacks (then one
//! [`OTHER_STACKS`] line), at most [`MAX_RECORDS`] records (the oldest fall out and are
//! counted), folded lines of at most [`MAX_FRAMES`] frames of at most [`MAX_FRAME_CHARS`]
//! characters and about [`MAX_FOLDED_BYTES`] in all (the innermost frames are kept). Records
//! are kept per stall, stack and [`BUCKET_MS`] of wall time, which is the resolution of a
//! `?since=` window.
//!
//! Only the symbolizer writes and only exporters read, both off the app's runtime; the lock is
//! never taken by a worker.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::capture::{is_runtime_frame, Frame};

/// Distinct folded stacks kept; a new stack beyond it is added to [`OTHER_STACKS`].
pub(crate) const MAX_STACKS: usize = 1_000;
/// Records kept (one per stall, stack and [`BUCKET_MS`]); older ones fall out.
pub(crate) const MAX_RECORDS: usize = 16_384;
/// Wall-time resolution of a record, in milliseconds.
pub(crate) const BUCKET_MS: u64 = 10_000;
/// The folded line that stands for every stack beyond [`MAX_STACKS`].
pub(crate) const OTHER_STACKS: &str = "[other stacks]";
/// Frames kept per folded stack (the innermost; the cut is marked at the root end).
pub(crate) const MAX_FRAMES: usize = 128;
/// Characters kept per frame name (long generic names are cut, marked with `…`).
pub(crate) const MAX_FRAME_CHARS: usize = 300;
/// Bytes of one folded line at most (about), so [`MAX_STACKS`] lines stay within a few MiB.
pub(crate) const MAX_FOLDED_BYTES: usize = 4096;

/// What the symbolizer adds for one stall.
pub(crate) struct Weight<'a> {
    pub(crate) stall: u64,
    /// Wall time the weight was observed, milliseconds since the Unix epoch.
    pub(crate) at_unix_ms: u64,
    pub(crate) folded: &'a str,
    pub(crate) weight: Duration,
    /// A new stack sample (counted in `samples`), or more time for the previous one.
    pub(crate) sample: bool,
    /// How long the target was paused to take this sample.
    pub(crate) paused: Duration,
}

/// Which records a query sums.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Filter {
    /// Only time observed at or after this instant (ms since the Unix epoch), to within
    /// [`BUCKET_MS`].
    pub(crate) since_unix_ms: Option<u64>,
    /// Only this stall.
    pub(crate) stall: Option<u64>,
}

impl Filter {
    fn matches(&self, r: &Record) -> bool {
        self.since_unix_ms.is_none_or(|s| r.last_ms >= s) && self.stall.is_none_or(|s| r.stall == s)
    }
}

/// Sums over the records a filter selects.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Totals {
    pub(crate) weight_ns: u64,
    pub(crate) samples: u64,
    pub(crate) paused_ns: u64,
    pub(crate) stalls: usize,
}

/// Counts over the table's whole life.
#[cfg_attr(not(feature = "http"), allow(dead_code))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Lifetime {
    /// Blocked time of records that fell out of the ring.
    pub(crate) evicted_ns: u64,
    /// Blocked time the watchdog could not hand to the symbolizer (it was too far behind).
    pub(crate) dropped_ns: u64,
}

pub(crate) struct FlameTable {
    inner: Mutex<Inner>,
    dropped_ns: AtomicU64,
}

#[derive(Clone, Copy)]
struct Record {
    bucket: u64,
    last_ms: u64,
    stall: u64,
    stack: u32,
    weight_ns: u64,
    samples: u32,
    paused_ns: u64,
}

struct Stack {
    folded: Arc<str>,
    refs: u32,
}

#[derive(Default)]
struct Inner {
    index: HashMap<Arc<str>, u32>,
    stacks: Vec<Option<Stack>>,
    free: Vec<u32>,
    live: usize,
    records: VecDeque<Record>,
    evicted_ns: u64,
}

impl FlameTable {
    pub(crate) fn new() -> Self {
        FlameTable {
            inner: Mutex::new(Inner::default()),
            dropped_ns: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn add(&self, w: Weight<'_>) {
        let weight_ns = u64::try_from(w.weight.as_nanos()).unwrap_or(u64::MAX);
        let paused_ns = u64::try_from(w.paused.as_nanos()).unwrap_or(u64::MAX);
        let bucket = w.at_unix_ms / BUCKET_MS;
        let mut inner = self.lock();
        if let Some(known) = inner.known(w.folded) {
            // Samples of one stall arrive together: the record to merge into is among the
            // last few.
            for r in inner.records.iter_mut().rev().take(8) {
                if r.stall == w.stall && r.stack == known && r.bucket == bucket {
                    r.weight_ns = r.weight_ns.saturating_add(weight_ns);
                    r.samples += u32::from(w.sample);
                    r.paused_ns = r.paused_ns.saturating_add(paused_ns);
                    r.last_ms = r.last_ms.max(w.at_unix_ms);
                    return;
                }
            }
        }
        // Evict first: it may free the very stack this record is about to use.
        if inner.records.len() >= MAX_RECORDS {
            inner.evict_oldest();
        }
        let stack = inner.intern(w.folded);
        if let Some(Some(s)) = inner.stacks.get_mut(stack as usize) {
            s.refs += 1;
        }
        inner.records.push_back(Record {
            bucket,
            last_ms: w.at_unix_ms,
            stall: w.stall,
            stack,
            weight_ns,
            samples: u32::from(w.sample),
            paused_ns,
        });
    }

    /// Blocked time that never reached the table (counted by the watchdog).
    pub(crate) fn dropped(&self, weight: Duration) {
        let ns = u64::try_from(weight.as_nanos()).unwrap_or(u64::MAX);
        self.dropped_ns.fetch_add(ns, Relaxed);
    }

    /// `(folded stack, blocked ns)` for every stack the filter selects, sorted by stack.
    pub(crate) fn folded(&self, filter: &Filter) -> Vec<(Arc<str>, u64)> {
        let inner = self.lock();
        let mut sums: HashMap<u32, u64> = HashMap::new();
        for r in inner.records.iter().filter(|r| filter.matches(r)) {
            let sum = sums.entry(r.stack).or_insert(0);
            *sum = sum.saturating_add(r.weight_ns);
        }
        let mut out: Vec<_> = sums
            .into_iter()
            .filter_map(|(id, ns)| Some((inner.folded_of(id)?, ns)))
            .collect();
        out.sort();
        out
    }

    pub(crate) fn totals(&self, filter: &Filter) -> Totals {
        let inner = self.lock();
        let mut t = Totals::default();
        let mut stalls = Vec::new();
        for r in inner.records.iter().filter(|r| filter.matches(r)) {
            t.weight_ns = t.weight_ns.saturating_add(r.weight_ns);
            t.samples += u64::from(r.samples);
            t.paused_ns = t.paused_ns.saturating_add(r.paused_ns);
            if stalls.last() != Some(&r.stall) {
                stalls.push(r.stall);
            }
        }
        stalls.sort_unstable();
        stalls.dedup();
        t.stalls = stalls.len();
        t
    }

    #[cfg_attr(not(feature = "http"), allow(dead_code))]
    pub(crate) fn lifetime(&self) -> Lifetime {
        Lifetime {
            evicted_ns: self.lock().evicted_ns,
            dropped_ns: self.dropped_ns.load(Relaxed),
        }
    }

    #[cfg(test)]
    fn distinct_stacks(&self) -> usize {
        self.lock().live
    }
}

impl Inner {
    /// The id `folded` would be recorded under, if that stack is in the table already.
    fn known(&self, folded: &str) -> Option<u32> {
        let id = self.index.get(folded);
        let other = || {
            (self.live >= MAX_STACKS)
                .then(|| self.index.get(OTHER_STACKS))
                .flatten()
        };
        id.or_else(other).copied()
    }

    /// The id of `folded`, added if new and there is room, else the id of [`OTHER_STACKS`].
    fn intern(&mut self, folded: &str) -> u32 {
        if let Some(&id) = self.index.get(folded) {
            return id;
        }
        let folded = if self.live >= MAX_STACKS {
            if let Some(&id) = self.index.get(OTHER_STACKS) {
                return id;
            }
            OTHER_STACKS // the one stack allowed beyond the cap
        } else {
            folded
        };
        let folded: Arc<str> = Arc::from(folded);
        let stack = Some(Stack {
            folded: folded.clone(),
            refs: 0,
        });
        let id = match self.free.pop() {
            Some(id) => {
                self.stacks[id as usize] = stack;
                id
            }
            None => {
                self.stacks.push(stack);
                (self.stacks.len() - 1) as u32
            }
        };
        self.index.insert(folded, id);
        self.live += 1;
        id
    }

    fn evict_oldest(&mut self) {
        let Some(r) = self.records.pop_front() else {
            return;
        };
        self.evicted_ns = self.evicted_ns.saturating_add(r.weight_ns);
        let slot = &mut self.stacks[r.stack as usize];
        if let Some(s) = slot {
            s.refs = s.refs.saturating_sub(1);
            if s.refs == 0 {
                self.index.remove(&s.folded);
                *slot = None;
                self.free.push(r.stack);
                self.live -= 1;
            }
        }
    }

    fn folded_of(&self, id: u32) -> Option<Arc<str>> {
        Some(self.stacks.get(id as usize)?.as_ref()?.folded.clone())
    }
}

/// One folded line for a sample: `root;outermost;…;innermost`, without the count.
///
/// The frames are the ones a person reads (the application's, plus the innermost frames where
/// the thread actually is); the scheduler, task harness and thread start-up around them are
/// left out, so the same culprit reached through different runtime paths is one tower. Names
/// are cleaned for the format: `;` (as in `[u8; 32]`) becomes `,`, control characters become
/// spaces. `root` is the spawn location in hooked mode.
pub(crate) fn fold_stack(root: Option<&str>, frames: &[Frame]) -> String {
    let keep = frames
        .iter()
        .position(|f| !is_runtime_frame(f))
        .map_or(frames.len(), |i| i + 1);
    // Innermost first: the innermost frames up to the first application frame, then only
    // the application's frames.
    let mut names: Vec<&str> = frames[..keep].iter().map(|f| f.function.as_str()).collect();
    names.extend(
        frames[keep..]
            .iter()
            .filter(|f| !is_runtime_frame(f))
            .map(|f| f.function.as_str()),
    );
    // The innermost frames that fit both caps.
    let mut bytes = root.map_or(0, |r| r.len().min(MAX_FRAME_CHARS * 4));
    let mut fit = 0;
    for name in names.iter().take(MAX_FRAMES) {
        bytes += name.len().min(MAX_FRAME_CHARS * 4) + 1;
        if bytes > MAX_FOLDED_BYTES {
            break;
        }
        fit += 1;
    }
    let cut = names.len() - fit;
    let mut out = String::new();
    let mut push = |name: &str| {
        if !out.is_empty() {
            out.push(';');
        }
        push_clean(&mut out, name);
    };
    if let Some(root) = root {
        push(root);
    }
    if cut > 0 {
        push(&format!("[{cut} outer frames not shown]"));
    }
    for name in names[..names.len() - cut].iter().rev() {
        push(name);
    }
    if out.is_empty() {
        out.push_str("[empty stack]");
    }
    out
}

fn push_clean(out: &mut String, name: &str) {
    let name = if name.trim().is_empty() { "??" } else { name };
    for (i, c) in name.chars().enumerate() {
        if i == MAX_FRAME_CHARS {
            out.push('…');
            break;
        }
        out.push(match c {
            ';' => ',',
            c if c.is_control() => ' ',
            c => c,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(f: &str) -> Frame {
        Frame {
            function: f.into(),
            file: None,
            line: None,
        }
    }

    fn w(stall: u64, at: u64, folded: &str, ms: u64) -> Weight<'_> {
        Weight {
            stall,
            at_unix_ms: at,
            folded,
            weight: Duration::from_millis(ms),
            sample: true,
            paused: Duration::from_micros(50),
        }
    }

    #[test]
    fn weights_sum_per_stack_and_merge_within_a_bucket() {
        let t = FlameTable::new();
        t.add(w(1, 1_000, "a;b", 100));
        t.add(w(1, 1_010, "a;b", 10));
        t.add(w(1, 1_020, "a;c", 10));
        t.add(w(2, 50_000, "a;b", 5));
        let all = t.folded(&Filter::default());
        let get = |s: &str| all.iter().find(|(f, _)| &**f == s).map(|(_, n)| *n);
        assert_eq!(get("a;b"), Some(115_000_000));
        assert_eq!(get("a;c"), Some(10_000_000));
        let totals = t.totals(&Filter::default());
        assert_eq!(totals.weight_ns, 125_000_000);
        assert_eq!(totals.samples, 4);
        assert_eq!(totals.stalls, 2);
        assert_eq!(totals.paused_ns, 200_000);
        let late = Filter {
            since_unix_ms: Some(40_000),
            stall: None,
        };
        assert_eq!(t.folded(&late), vec![(Arc::from("a;b"), 5_000_000)]);
        let one = Filter {
            since_unix_ms: None,
            stall: Some(1),
        };
        assert_eq!(t.totals(&one).weight_ns, 120_000_000);
    }

    #[test]
    fn stacks_beyond_the_cap_go_to_other_and_records_stay_bounded() {
        let t = FlameTable::new();
        for i in 0..(MAX_STACKS as u64 + 50) {
            t.add(w(i, i * BUCKET_MS, &format!("s{i}"), 1));
        }
        assert_eq!(t.distinct_stacks(), MAX_STACKS + 1);
        let all = t.folded(&Filter::default());
        let other = all.iter().find(|(f, _)| &**f == OTHER_STACKS).unwrap();
        assert_eq!(other.1, 50_000_000);
        for i in 0..MAX_RECORDS as u64 * 2 {
            t.add(w(10_000 + i, (10_000 + i) * BUCKET_MS, "x", 1));
        }
        assert_eq!(t.lock().records.len(), MAX_RECORDS);
        // Evicted records released their stacks: only `x` is left.
        assert_eq!(t.distinct_stacks(), 1);
        assert_eq!(t.folded(&Filter::default()).len(), 1);
        let total = t.totals(&Filter::default()).weight_ns + t.lifetime().evicted_ns;
        assert_eq!(
            total,
            (MAX_STACKS as u64 + 50 + MAX_RECORDS as u64 * 2) * 1_000_000
        );
    }

    #[test]
    fn folding_keeps_the_culprit_and_drops_the_scheduler() {
        let frames = [
            frame("std::thread::sleep"),
            frame("app::read_config"),
            frame("tokio::runtime::task::harness::poll"),
            frame("<[u8; 4] as app::Load>::load"),
            frame("tokio::runtime::scheduler::multi_thread::worker::run"),
            frame("std::sys::backtrace::__rust_begin_short_backtrace"),
            frame("start_thread"),
        ];
        assert_eq!(
            fold_stack(Some("spawned at src/main.rs:3:5"), &frames),
            "spawned at src/main.rs:3:5;<[u8, 4] as app::Load>::load;app::read_config;std::thread::sleep"
        );
        assert_eq!(fold_stack(None, &[]), "[empty stack]");
        let deep: Vec<_> = (0..MAX_FRAMES + 3)
            .map(|i| frame(&format!("app::f{i}")))
            .collect();
        let folded = fold_stack(None, &deep);
        assert!(
            folded.starts_with("[3 outer frames not shown];app::f127;"),
            "{folded}"
        );
        assert!(folded.ends_with(";app::f0"), "{folded}");
        let wide: Vec<_> = (0..40)
            .map(|i| frame(&format!("app::{i:02}{}", "w".repeat(240))))
            .collect();
        let folded = fold_stack(Some("spawned at a.rs:1:1"), &wide);
        assert!(folded.len() <= MAX_FOLDED_BYTES + 64, "{}", folded.len());
        assert!(
            folded.contains(";[24 outer frames not shown];app::15w"),
            "{folded}"
        );
        assert!(folded.contains(";app::00w"), "the innermost frame stays");
        let long = frame(&"x".repeat(1000));
        assert_eq!(
            fold_stack(None, &[long]).chars().count(),
            MAX_FRAME_CHARS + 1
        );
    }
}
