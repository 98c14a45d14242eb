//! Raw addresses to function names and source lines, off the runtime's threads.
//!
//! The first lookup parses the binary's debug information (tens of milliseconds, tens of
//! MiB): run it on the watchdog, ideally once at start-up with [`Symbolizer::warm_up`]. Later
//! lookups mostly hit the cache, because the same stall tends to be captured again.

use std::collections::HashMap;

use super::{Frame, RawStack};

/// Addresses remembered at most; the cache is dropped whole when full (stalls repeat, so it
/// refills with what matters).
const CACHE_CAPACITY: usize = 4096;

/// Turns [`RawStack`]s into [`Frame`]s, with a bounded cache from address to frames.
#[derive(Debug, Default)]
pub struct Symbolizer {
    cache: HashMap<usize, Vec<Frame>>,
    /// The vDSO's functions, read on first need (the resolver cannot name them).
    vdso: Option<Vec<(std::ops::Range<usize>, String)>>,
}

impl Symbolizer {
    /// An empty symbolizer; nothing is parsed until the first use or [`Self::warm_up`].
    pub fn new() -> Symbolizer {
        Symbolizer::default()
    }

    /// Pays the one-time parse of the debug information now, so that the first stall report
    /// is not delayed by it.
    pub fn warm_up(&mut self) {
        let here = Symbolizer::warm_up as *const () as usize;
        let _ = resolve(here + 1);
    }

    /// The frames of `stack`, innermost first. Inlined calls are expanded into their own
    /// frames; names are demangled without the hash; unknown addresses give `"??"`.
    pub fn symbolize(&mut self, stack: &RawStack) -> Vec<Frame> {
        let mut frames = Vec::with_capacity(stack.ips.len());
        for (i, &ip) in stack.ips.iter().enumerate() {
            // The resolver looks up `address - 1`, the call instruction of a return address.
            // The first ip is the exact interrupted pc, so it must not move back.
            let address = if i == 0 { ip.wrapping_add(1) } else { ip };
            if !self.cache.contains_key(&address) {
                if self.cache.len() >= CACHE_CAPACITY {
                    self.cache.clear();
                }
                let resolved = self.resolve_with_vdso(address);
                self.cache.insert(address, resolved);
            }
            frames.extend(self.cache[&address].iter().cloned());
        }
        frames
    }

    /// `resolve`, plus names for the vDSO, which the resolver cannot read.
    fn resolve_with_vdso(&mut self, address: usize) -> Vec<Frame> {
        let mut frames = resolve(address);
        if let [only] = frames.as_mut_slice() {
            if only.function == "??" {
                if let Some(name) = self.vdso_name(address.wrapping_sub(1)) {
                    only.function = name;
                }
            }
        }
        frames
    }

    /// The vDSO function containing `address`, like `[vdso] __vdso_clock_gettime`.
    fn vdso_name(&mut self, address: usize) -> Option<String> {
        let symbols = self.vdso.get_or_insert_with(super::backend::vdso_symbols);
        let (_, name) = symbols.iter().find(|(range, _)| range.contains(&address))?;
        Some(format!("[vdso] {name}").trim_end().to_owned())
    }
}

/// The frames (inlined first) at `address`, as the resolver sees it (it subtracts one).
#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
fn resolve(address: usize) -> Vec<Frame> {
    let mut frames = Vec::new();
    backtrace::resolve(address as *mut std::ffi::c_void, |symbol| {
        frames.push(Frame {
            function: symbol
                .name()
                .map_or_else(|| "??".to_owned(), |name| format!("{name:#}")),
            file: symbol.filename().map(|f| f.display().to_string()),
            line: symbol.lineno(),
        });
    });
    if frames.is_empty() {
        frames.push(unknown());
    }
    frames
}

/// Without a capture back-end there is no resolver either.
#[cfg(not(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
)))]
fn resolve(_address: usize) -> Vec<Frame> {
    vec![unknown()]
}

fn unknown() -> Frame {
    Frame {
        function: "??".to_owned(),
        file: None,
        line: None,
    }
}
