//! Every tokio hook pollwatch uses, installed in one place.
//!
//! tokio keeps one callback per hook, so pollwatch owns them all and calls the user's own
//! closures (given to the [`Builder`](crate::Builder)) after its work.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use crate::attach::Threads;
use crate::slots;
cfg_hooked! {
    use crate::state::HookedState;
}
use crate::state::{ModeState, Shared};

/// A user closure for a thread hook.
pub(crate) type ThreadHook = Arc<dyn Fn() + Send + Sync>;
cfg_hooked! {
    /// A user closure for a task hook.
    pub(crate) type TaskHook = Arc<dyn Fn(&tokio::runtime::TaskMeta<'_>) + Send + Sync>;
}

/// The user's own hooks, still called after pollwatch's.
#[derive(Clone, Default)]
pub(crate) struct UserHooks {
    pub(crate) thread_start: Option<ThreadHook>,
    pub(crate) thread_stop: Option<ThreadHook>,
    pub(crate) thread_park: Option<ThreadHook>,
    pub(crate) thread_unpark: Option<ThreadHook>,
    #[cfg(tokio_unstable)]
    pub(crate) before_poll: Option<TaskHook>,
    #[cfg(tokio_unstable)]
    pub(crate) after_poll: Option<TaskHook>,
    #[cfg(tokio_unstable)]
    pub(crate) task_spawn: Option<TaskHook>,
    #[cfg(tokio_unstable)]
    pub(crate) task_terminate: Option<TaskHook>,
}

impl UserHooks {
    /// The builder method of the first hook the user gave, if any.
    pub(crate) fn first_set(&self) -> Option<&'static str> {
        #[cfg_attr(not(tokio_unstable), allow(unused_mut))]
        let mut given = vec![
            ("on_thread_start", self.thread_start.is_some()),
            ("on_thread_stop", self.thread_stop.is_some()),
            ("on_thread_park", self.thread_park.is_some()),
            ("on_thread_unpark", self.thread_unpark.is_some()),
        ];
        #[cfg(tokio_unstable)]
        given.extend([
            ("on_before_task_poll", self.before_poll.is_some()),
            ("on_after_task_poll", self.after_poll.is_some()),
            ("on_task_spawn", self.task_spawn.is_some()),
            ("on_task_terminate", self.task_terminate.is_some()),
        ]);
        given
            .into_iter()
            .find(|(_, set)| *set)
            .map(|(name, _)| name)
    }

    /// Installs only the user's hooks (a disabled agent).
    pub(crate) fn install_plain(&self, builder: &mut tokio::runtime::Builder) {
        if let Some(f) = self.thread_start.clone() {
            builder.on_thread_start(move || f());
        }
        if let Some(f) = self.thread_stop.clone() {
            builder.on_thread_stop(move || f());
        }
        if let Some(f) = self.thread_park.clone() {
            builder.on_thread_park(move || f());
        }
        if let Some(f) = self.thread_unpark.clone() {
            builder.on_thread_unpark(move || f());
        }
        #[cfg(tokio_unstable)]
        {
            if let Some(f) = self.before_poll.clone() {
                builder.on_before_task_poll(move |m| f(m));
            }
            if let Some(f) = self.after_poll.clone() {
                builder.on_after_task_poll(move |m| f(m));
            }
            if let Some(f) = self.task_spawn.clone() {
                builder.on_task_spawn(move |m| f(m));
            }
            if let Some(f) = self.task_terminate.clone() {
                builder.on_task_terminate(move |m| f(m));
            }
        }
    }
}

/// Installs pollwatch's hooks (and the user's, chained) on `builder`.
pub(crate) fn install(
    builder: &mut tokio::runtime::Builder,
    shared: &Arc<Shared>,
    user: UserHooks,
) {
    // Thread hooks exist on stable tokio too: they tell the agent which threads are the
    // runtime's, before those threads poll anything. In attach mode (stable tokio) they
    // also say which threads are workers and whether each is parked right now.
    match &shared.mode {
        ModeState::Attach(threads) => install_attach(builder, threads, &shared.clock, user),
        ModeState::Hooked(hooked) => {
            let h = hooked.clone();
            let start = user.thread_start.clone();
            builder.on_thread_start(move || {
                slots::prepare_current_thread();
                if let Some(f) = &start {
                    f();
                }
            });
            let stop = user.thread_stop.clone();
            builder.on_thread_stop(move || {
                h.slots.release_current();
                if let Some(f) = &stop {
                    f();
                }
            });
            if let Some(f) = user.thread_park.clone() {
                builder.on_thread_park(move || f());
            }
            if let Some(f) = user.thread_unpark.clone() {
                builder.on_thread_unpark(move || f());
            }
            #[cfg(tokio_unstable)]
            install_task_hooks(builder, hooked, shared, user);
        }
    }
}

/// Attach mode's thread hooks (a runtime built through pollwatch on stable tokio).
fn install_attach(
    builder: &mut tokio::runtime::Builder,
    threads: &Arc<Threads>,
    clock: &quanta::Clock,
    user: UserHooks,
) {
    let (t, start) = (threads.clone(), user.thread_start);
    builder.on_thread_start(move || {
        t.register_current();
        if let Some(f) = &start {
            f();
        }
    });
    let (t, stop) = (threads.clone(), user.thread_stop);
    builder.on_thread_stop(move || {
        t.unregister_current();
        if let Some(f) = &stop {
            f();
        }
    });
    threads.hooks_installed.store(true, Relaxed);
    let (t, c, park) = (threads.clone(), clock.clone(), user.thread_park);
    builder.on_thread_park(move || {
        t.note_park(true, c.raw());
        if let Some(f) = &park {
            f();
        }
    });
    let (t, c, unpark) = (threads.clone(), clock.clone(), user.thread_unpark);
    builder.on_thread_unpark(move || {
        t.note_park(false, c.raw());
        if let Some(f) = &unpark {
            f();
        }
    });
}

cfg_hooked! {
    /// The task hooks: the hot path. Each closure holds the hooked state (which keeps the slot
    /// table leased) and a copy of the table's pointer and of the clock, nothing more.
    fn install_task_hooks(
        builder: &mut tokio::runtime::Builder,
        hooked: &Arc<HookedState>,
        shared: &Shared,
        user: UserHooks,
    ) {
        let slots = hooked.slots.table();
        let clock = &shared.clock;
        let (h, c) = (hooked.clone(), clock.clone());
        let f = user.before_poll;
        // Both settings are fixed for the runtime's life: the branches below always go the same
        // way, and with both off the hooks do stall detection alone (no hash, no clock).
        let every = shared.config.poll_time_sample_every;
        let callsite_stats = shared.config.callsite_stats;
        builder.on_before_task_poll(move |meta| {
            if let Some(slot) = slots.current() {
                // Before `begin_poll`: whoever sees this poll's odd generation sees its start.
                #[cfg(all(feature = "console", tokio_unstable))]
                if let Some(console) = &h.console {
                    console.feed.poll_started(slot.index(), c.raw());
                }
                let spawned_at = meta.spawned_at();
                let callsite = if callsite_stats {
                    h.callsites.index_of(spawned_at)
                } else {
                    slots::NO_CALLSITE
                };
                let start = if every != 0 && slot.timing_turn(every) {
                    c.raw().max(1)
                } else {
                    0
                };
                slot.begin_poll(task_id(meta.id()), spawned_at, callsite, start);
            }
            if let Some(f) = &f {
                f(meta);
            }
        });
        let c = clock.clone();
        #[cfg(feature = "console")]
        let h = hooked.clone();
        let f = user.after_poll;
        builder.on_after_task_poll(move |meta| {
            if let Some(slot) = slots.current() {
                if slot.needs_end_time() {
                    let now = c.raw();
                    let start = slot.poll_start();
                    let elapsed = (start != 0 && now >= start).then(|| c.delta_as_nanos(start, now));
                    slot.end_poll(now, elapsed, u64::from(every));
                } else {
                    slot.end_poll(0, None, 1);
                }
                #[cfg(all(feature = "console", tokio_unstable))]
                if let Some(console) = &h.console {
                    console
                        .feed
                        .poll_ended(slot.index(), task_id(meta.id()), c.raw());
                }
            }
            if let Some(f) = &f {
                f(meta);
            }
        });
        let h = hooked.clone();
        #[cfg(feature = "console")]
        let c = clock.clone();
        let f = user.task_spawn;
        builder.on_task_spawn(move |meta| {
            if callsite_stats {
                h.callsites
                    .task_spawned(h.callsites.index_of(meta.spawned_at()));
            }
            #[cfg(all(feature = "console", tokio_unstable))]
            if let Some(console) = &h.console {
                let event = crate::export::console::events::Event::Spawn {
                    id: task_id(meta.id()),
                    at: c.raw(),
                    location: meta.spawned_at(),
                };
                console
                    .feed
                    .push(slots.current_if_claimed().map(|sl| sl.index()), event);
            }
            if let Some(f) = &f {
                f(meta);
            }
        });
        let h = hooked.clone();
        #[cfg(feature = "console")]
        let c = clock.clone();
        let f = user.task_terminate;
        builder.on_task_terminate(move |meta| {
            if callsite_stats {
                h.callsites
                    .task_terminated(h.callsites.index_of(meta.spawned_at()));
            }
            #[cfg(all(feature = "console", tokio_unstable))]
            if let Some(console) = &h.console {
                let event = crate::export::console::events::Event::Terminate {
                    id: task_id(meta.id()),
                    at: c.raw(),
                };
                console
                    .feed
                    .push(slots.current_if_claimed().map(|sl| sl.index()), event);
            }
            if let Some(f) = &f {
                f(meta);
            }
        });
    }

    /// The integer behind a `tokio::task::Id` (tokio exposes no accessor).
    #[inline]
    fn task_id(id: tokio::task::Id) -> u64 {
        slots::id_integer(&id)
    }
}

/// What the poll hooks record under each setting, read straight from the state they write.
#[cfg(all(test, tokio_unstable))]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::stats::histogram::HistogramSnapshot;

    /// What the hooks left behind after 100 tasks × 10 polls on two workers.
    struct Recorded {
        timed_polls: u64,
        callsites_known: usize,
        callsite_polls: u64,
        spawned: u64,
        /// Polls begun and ended in some slot (odd, then even again): detection saw them.
        slot_generations: u64,
        spawn_location_seen: bool,
    }

    fn run(config: Config) -> Recorded {
        let shared = Arc::new(Shared::new_hooked(config));
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(2);
        install(&mut builder, &shared, UserHooks::default());
        let runtime = builder.build().expect("runtime");
        runtime.block_on(async {
            let tasks: Vec<_> = (0..100)
                .map(|_| {
                    tokio::spawn(async {
                        for _ in 0..9 {
                            tokio::task::yield_now().await;
                        }
                    })
                })
                .collect();
            for t in tasks {
                t.await.expect("task completes");
            }
        });
        drop(runtime);
        let mut histogram = HistogramSnapshot::default();
        let (mut callsite_polls, mut slot_generations, mut spawn_location_seen) = (0, 0, false);
        let hooked = shared.hooked().expect("hooked mode");
        let used: Vec<u32> = hooked.callsites.used_indices().collect();
        for (_, slot) in hooked.slots.iter() {
            slot.poll_time.add_to(&mut histogram);
            callsite_polls += used.iter().map(|&i| slot.callsite_totals(i).0).sum::<u64>();
            if let Some(view) = slot.view() {
                slot_generations += view.generation;
                spawn_location_seen |= view
                    .spawned_at
                    .is_some_and(|l| l.file().ends_with("hooks.rs"));
            }
        }
        Recorded {
            timed_polls: histogram.count(),
            callsites_known: used.len() - 1, // `other` is always listed
            callsite_polls,
            spawned: used
                .iter()
                .map(|&i| hooked.callsites.task_counts(i).0)
                .sum(),
            slot_generations,
            spawn_location_seen,
        }
    }

    #[test]
    fn defaults_record_poll_time_and_callsite_stats() {
        let r = run(Config::default());
        assert!(r.timed_polls >= 500, "sampled 1 in 16: {}", r.timed_polls);
        assert!(r.callsites_known >= 1);
        assert!(r.callsite_polls >= 1_000, "{}", r.callsite_polls);
        assert!(r.spawned >= 100, "{}", r.spawned);
        assert!(r.slot_generations >= 2_000 && r.spawn_location_seen);
    }

    #[test]
    fn detection_alone_records_no_poll_time_and_no_callsite_stats() {
        let r = run(Config {
            poll_time_sample_every: 0,
            callsite_stats: false,
            ..Config::default()
        });
        assert_eq!(r.timed_polls, 0, "no poll was timed");
        assert_eq!(
            r.callsites_known, 0,
            "the spawn-location table was never consulted"
        );
        assert_eq!((r.callsite_polls, r.spawned), (0, 0));
        // Detection still sees every poll, and where its task was spawned.
        assert!(r.slot_generations >= 2_000, "{}", r.slot_generations);
        assert!(r.spawn_location_seen);
    }
}
