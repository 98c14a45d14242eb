//! tokio-console attach: pollwatch serves the console's gRPC protocol (`console-api` 0.9,
//! service `rs.tokio.console.instrument.Instrument`) itself, from the task events its poll
//! hooks already see, without `console-subscriber` and without a `tracing` subscriber.
//!
//! Data path: the hooks push fixed-size events into preallocated per-worker queues
//! ([`events`]); the `pollwatch-console` OS thread, on its own small runtime like the HTTP
//! endpoint (`export::service_thread`), drains them every [`DRAIN_INTERVAL`] into a bounded task map ([`tasks`]) and
//! streams an update to each connected console every [`PUBLISH_INTERVAL`]. Hooked mode only:
//! attach mode has no task hooks, so it has no tasks to show.

pub(crate) mod events;
mod service;
pub(crate) mod tasks;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use super::service_thread::ServiceThread;
use crate::config::Config;
use crate::slots::SlotLease;
use crate::Error;

/// How often the console thread empties the hooks' queues.
pub const DRAIN_INTERVAL: Duration = Duration::from_millis(10);
/// How often connected consoles get an update (console-subscriber's default too).
pub const PUBLISH_INTERVAL: Duration = Duration::from_millis(100);
/// Consoles (update streams) served at once; more are refused with `RESOURCE_EXHAUSTED`.
pub const MAX_CLIENTS: usize = 16;

/// What the console thread publishes about itself for `/metrics`.
#[derive(Default)]
pub(crate) struct MapStats {
    pub(crate) tasks: AtomicU64,
    pub(crate) tracked: AtomicU64,
    pub(crate) untracked: AtomicU64,
    pub(crate) evicted: AtomicU64,
}

impl MapStats {
    fn store(&self, c: tasks::MapCounts) {
        self.tasks.store(c.tasks, Relaxed);
        self.tracked.store(c.tracked, Relaxed);
        self.untracked.store(c.untracked, Relaxed);
        self.evicted.store(c.evicted, Relaxed);
    }
}

/// The console's state shared with the hooks (the event feed) and the exporters (counts).
pub(crate) struct ConsoleState {
    pub(crate) feed: events::Feed,
    pub(crate) map: MapStats,
}

impl ConsoleState {
    pub(crate) fn new(max_threads: usize) -> Self {
        ConsoleState {
            feed: events::Feed::new(max_threads),
            map: MapStats::default(),
        }
    }

    /// Every event dropped so far, whatever its kind (the protocol's `dropped_events`).
    fn dropped_events(&self) -> u64 {
        events::EventKind::ALL
            .iter()
            .map(|&k| self.feed.dropped(k))
            .sum()
    }
}

/// The running console server; stopping it (or dropping it) ends its thread and every
/// client's stream.
pub(crate) struct Console {
    addr: SocketAddr,
    thread: ServiceThread,
}

impl Console {
    /// Binds `addr` now (a port in use is an error of the start-up call) and serves from the
    /// `pollwatch-console` thread. `feed` is hooked mode's slot table and console feed.
    pub(crate) fn start(
        addr: SocketAddr,
        config: &Config,
        clock: quanta::Clock,
        feed: Option<(Arc<SlotLease>, Arc<ConsoleState>)>,
    ) -> Result<Console, Error> {
        let bind_err = move |source| Error::Bind {
            setting: "console_addr",
            addr,
            source,
        };
        let settings = service::Settings {
            max_tasks: config.console_max_tasks,
            retention: config.console_retention,
            clock,
        };
        let Some((slots, state)) = feed else {
            return Err(Error::invalid(
                "console_addr",
                addr,
                "the console needs hooked mode (internal: no event feed)",
            ));
        };
        let listener = std::net::TcpListener::bind(addr).map_err(bind_err)?;
        listener.set_nonblocking(true).map_err(bind_err)?;
        let local = listener.local_addr().map_err(bind_err)?;
        let thread = ServiceThread::start("pollwatch-console", move |stop| {
            let listener = tokio::net::TcpListener::from_std(listener).map_err(bind_err)?;
            Ok(async move {
                let max_tasks = settings.max_tasks;
                let (commands, aggregator) = service::Aggregator::new(settings, slots, state);
                tokio::spawn(aggregator.run());
                tokio::select! {
                    () = service::serve(listener, commands, max_tasks) => {}
                    // Sent by `stop`, or the `Console` was dropped.
                    _ = stop => {}
                }
            })
        })?;
        Ok(Console {
            addr: local,
            thread,
        })
    }

    /// The bound address (the real port when asked for port 0).
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops serving, drops every client and waits for the thread. Idempotent.
    pub(crate) fn stop(&mut self) {
        self.thread.stop();
    }
}
