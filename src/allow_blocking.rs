//! [`allow_blocking`]: deliberate, bounded blocking that is not a stall, in either mode.
//!
//! A scope marks the calling thread's poll slot (hooked mode) and its entries in every
//! attach-mode thread registry that knows it. It knows no agent: it finds both through
//! thread-locals, so one call covers every agent watching the thread.

use crate::slots::PollSlot;

/// Runs `f`, telling pollwatch that it blocks on purpose: a poll that stays inside this scope
/// past the threshold is not reported as a stall. Use it for deliberate, bounded blocking
/// that you have decided is acceptable; prefer `spawn_blocking` for everything else.
pub fn allow_blocking<R>(f: impl FnOnce() -> R) -> R {
    let slot = crate::slots::this_threads_slot();
    struct Exit(Option<&'static PollSlot>);
    impl Drop for Exit {
        fn drop(&mut self) {
            if let Some(s) = self.0 {
                s.leave_exempt();
            }
        }
    }
    if let Some(s) = slot {
        s.enter_exempt();
    }
    let _exit = Exit(slot);
    // Attach mode knows threads, not polls: the thread itself is exempt meanwhile.
    let _attach = crate::attach::exempt_scope();
    f()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slots::tests::view;
    use crate::slots::SlotTable;
    use std::panic::Location;

    #[test]
    fn allow_blocking_exempts_the_calling_threads_poll_only_inside_the_scope() {
        let table = SlotTable::acquire(4, 1);
        let slot = table.current().expect("a free slot");
        slot.begin_poll(1, Location::caller(), 0, 0);
        assert!(!view(slot).exempt);
        allow_blocking(|| {
            assert!(view(slot).exempt);
            allow_blocking(|| assert!(view(slot).exempt, "nested"));
            assert!(view(slot).exempt, "the outer scope still holds");
            std::thread::scope(|s| {
                s.spawn(|| allow_blocking(|| ()));
            });
            assert!(view(slot).exempt);
        });
        assert!(!view(slot).exempt, "scoped, not sticky");
        let _ = std::panic::catch_unwind(|| allow_blocking(|| panic!("inside the scope")));
        assert!(!view(slot).exempt, "a panic leaves the scope too");
        // Another thread's scope never exempts this thread's poll.
        std::thread::scope(|s| {
            s.spawn(|| allow_blocking(|| assert!(!view(slot).exempt)));
        });
        slot.end_poll(0, None, 1);
        table.release_current();
        drop(table);
    }
}
