//! The bounded table of spawn locations ("callsites").
//!
//! The hooks map a task's `&'static Location` to a small dense index without locks or
//! allocation: an open-addressing table keyed by the location's address, filled by CAS.
//! After `capacity` distinct locations every new one maps to [`CallsiteTable::other`], so
//! memory and label cardinality stay bounded however many spawn sites an app has.
//!
//! Per-callsite *poll* counters live in each worker's slot (single writer, no contention);
//! spawn and terminate counts, which are rarer, are shared atomics here.

use std::panic::Location;
use std::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering::*};

/// Marks a table entry whose key is published but whose index is not yet.
const PENDING: u32 = u32::MAX;

pub(crate) struct CallsiteTable {
    #[cfg_attr(not(tokio_unstable), allow(dead_code))]
    keys: Box<[AtomicUsize]>,
    #[cfg_attr(not(tokio_unstable), allow(dead_code))]
    indices: Box<[AtomicU32]>,
    locations: Box<[AtomicPtr<Location<'static>>]>,
    len: AtomicUsize,
    capacity: usize,
    spawned: Box<[AtomicU64]>,
    terminated: Box<[AtomicU64]>,
}

impl CallsiteTable {
    /// A table for `capacity` distinct locations plus the shared `other` entry.
    pub(crate) fn new(capacity: usize) -> Self {
        let buckets = (capacity.max(1) * 2).next_power_of_two();
        CallsiteTable {
            keys: (0..buckets).map(|_| AtomicUsize::new(0)).collect(),
            indices: (0..buckets).map(|_| AtomicU32::new(PENDING)).collect(),
            locations: (0..capacity)
                .map(|_| AtomicPtr::new(std::ptr::null_mut()))
                .collect(),
            len: AtomicUsize::new(0),
            capacity,
            spawned: (0..=capacity).map(|_| AtomicU64::new(0)).collect(),
            terminated: (0..=capacity).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Number of index values (`capacity` locations plus `other`): the length of the
    /// per-worker counter arrays.
    pub(crate) fn slots(&self) -> usize {
        self.capacity + 1
    }

    /// The index of the shared `other` entry.
    pub(crate) fn other(&self) -> u32 {
        self.capacity as u32
    }

    /// The dense index of `loc`, inserting it if there is room. Lock-free, no allocation.
    #[inline]
    #[cfg_attr(not(tokio_unstable), allow(dead_code))]
    pub(crate) fn index_of(&self, loc: &'static Location<'static>) -> u32 {
        let key = loc as *const Location<'static> as usize;
        let mask = self.keys.len() - 1;
        // Fibonacci hashing of the address; locations are 8-byte aligned statics.
        let mut pos = (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 7) & mask;
        for _ in 0..self.keys.len() {
            let current = self.keys[pos].load(Acquire);
            if current == key {
                return self.wait_for_index(pos);
            }
            if current == 0 {
                if self.len.load(Relaxed) >= self.capacity {
                    return self.other();
                }
                match self.keys[pos].compare_exchange(0, key, AcqRel, Acquire) {
                    Ok(_) => return self.publish(pos, loc),
                    Err(winner) if winner == key => return self.wait_for_index(pos),
                    Err(_) => {} // someone took this bucket for another key: probe on
                }
            }
            pos = (pos + 1) & mask;
        }
        self.other()
    }

    #[cfg_attr(not(tokio_unstable), allow(dead_code))]
    fn publish(&self, pos: usize, loc: &'static Location<'static>) -> u32 {
        let i = self.len.fetch_add(1, AcqRel);
        let index = if i < self.capacity {
            self.locations[i].store(loc as *const _ as *mut _, Release);
            i as u32
        } else {
            self.other()
        };
        self.indices[pos].store(index, Release);
        index
    }

    /// Another thread inserted this key a moment ago; its index appears within a few
    /// instructions. Bounded: fall back to `other` rather than spin on a preempted writer.
    #[cfg_attr(not(tokio_unstable), allow(dead_code))]
    fn wait_for_index(&self, pos: usize) -> u32 {
        for _ in 0..1_000 {
            let index = self.indices[pos].load(Acquire);
            if index != PENDING {
                return index;
            }
            std::hint::spin_loop();
        }
        self.other()
    }

    /// The location behind an index, `None` for `other` or an index not yet published.
    pub(crate) fn location(&self, index: u32) -> Option<&'static Location<'static>> {
        let ptr = self.locations.get(index as usize)?.load(Acquire);
        // SAFETY: only `&'static Location` pointers are ever stored here.
        unsafe { ptr.as_ref() }
    }

    #[inline]
    #[cfg_attr(not(tokio_unstable), allow(dead_code))]
    pub(crate) fn task_spawned(&self, index: u32) {
        self.spawned[index as usize].fetch_add(1, Relaxed);
    }

    #[inline]
    #[cfg_attr(not(tokio_unstable), allow(dead_code))]
    pub(crate) fn task_terminated(&self, index: u32) {
        self.terminated[index as usize].fetch_add(1, Relaxed);
    }

    /// `(spawned, terminated)` totals for an index.
    pub(crate) fn task_counts(&self, index: u32) -> (u64, u64) {
        let i = index as usize;
        (
            self.spawned[i].load(Relaxed),
            self.terminated[i].load(Relaxed),
        )
    }

    /// The indices in use, `other` last (only when something landed there).
    pub(crate) fn used_indices(&self) -> impl Iterator<Item = u32> + '_ {
        let n = self.len.load(Acquire).min(self.capacity) as u32;
        (0..n).chain(std::iter::once(self.other()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn here() -> &'static Location<'static> {
        Location::caller()
    }

    #[test]
    fn same_location_same_index_and_overflow_goes_to_other() {
        let t = CallsiteTable::new(2);
        let a = here();
        let b = here();
        let c = here();
        assert_eq!(t.index_of(a), 0);
        assert_eq!(t.index_of(a), 0);
        assert_eq!(t.index_of(b), 1);
        assert_eq!(t.index_of(c), t.other());
        assert_eq!(t.location(1), Some(b));
        assert_eq!(t.location(t.other()), None);
        t.task_spawned(1);
        t.task_spawned(1);
        t.task_terminated(1);
        assert_eq!(t.task_counts(1), (2, 1));
    }

    #[test]
    fn concurrent_inserts_agree() {
        let t = std::sync::Arc::new(CallsiteTable::new(64));
        // Each call below is its own callsite (same line, different columns).
        let locs = vec![
            here(),
            here(),
            here(),
            here(),
            here(),
            here(),
            here(),
            here(),
        ];
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (t, locs) = (t.clone(), locs.clone());
                std::thread::spawn(move || locs.iter().map(|l| t.index_of(l)).collect::<Vec<_>>())
            })
            .collect();
        let results: Vec<_> = threads.into_iter().map(|h| h.join().unwrap()).collect();
        assert!(results.windows(2).all(|w| w[0] == w[1]));
        let mut distinct = results[0].clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), 8);
    }
}
