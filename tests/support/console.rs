//! A real tokio-console protocol client for the tests: console-api's generated
//! `InstrumentClient` over a tonic channel, and the task table a console builds from the
//! update stream (new tasks, metadata, latest stats by id).
#![cfg(all(feature = "console", tokio_unstable))]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use console_api::instrument::instrument_client::InstrumentClient;
use console_api::instrument::{InstrumentRequest, Update};
use console_api::tasks::{Stats, Task};
use tonic::transport::Channel;

/// Connects to the agent's console address (bounded retries over `limit`).
pub async fn connect(addr: SocketAddr, limit: Duration) -> InstrumentClient<Channel> {
    let start = Instant::now();
    loop {
        match InstrumentClient::connect(format!("http://{addr}")).await {
            Ok(c) => return c,
            Err(e) if start.elapsed() > limit => panic!("cannot connect to {addr}: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// What a console knows after applying updates, as tokio-console does.
#[derive(Default, Debug)]
pub struct View {
    pub tasks: HashMap<u64, Task>,
    pub stats: HashMap<u64, Stats>,
    pub metas: HashMap<u64, console_api::Metadata>,
    pub updates: usize,
    pub dropped_events: u64,
    /// Largest number of tasks announced in one update (a snapshot is one update).
    pub largest_update: usize,
    /// Largest number of tasks whose stats one update carried.
    pub largest_stats: usize,
}

impl View {
    pub fn apply(&mut self, u: Update) {
        self.updates += 1;
        if let Some(m) = u.new_metadata {
            for nm in m.metadata {
                self.metas
                    .insert(nm.id.expect("meta id").id, nm.metadata.expect("metadata"));
            }
        }
        if let Some(t) = u.task_update {
            self.largest_update = self.largest_update.max(t.new_tasks.len());
            self.largest_stats = self.largest_stats.max(t.stats_update.len());
            for task in t.new_tasks {
                let id = task.id.expect("task id").id;
                assert!(
                    t.stats_update.contains_key(&id),
                    "tokio-console drops a new task whose stats are not in the same update"
                );
                let meta = task.metadata.expect("metadata id").id;
                assert!(
                    self.metas.contains_key(&meta),
                    "metadata {meta} registered before (or with) its task"
                );
                self.tasks.insert(id, task);
            }
            self.dropped_events = t.dropped_events;
            self.stats.extend(t.stats_update);
        }
    }

    /// Ids of the tasks spawned at `file:line`.
    pub fn spawned_at(&self, file: &str, line: u32) -> Vec<u64> {
        let mut ids: Vec<u64> = self
            .tasks
            .iter()
            .filter(|(_, t)| {
                t.location
                    .as_ref()
                    .is_some_and(|l| l.file.as_deref() == Some(file) && l.line == Some(line))
            })
            .map(|(id, _)| *id)
            .collect();
        ids.sort();
        ids
    }

    pub fn polls(&self, id: u64) -> u64 {
        self.stats[&id].poll_stats.as_ref().map_or(0, |p| p.polls)
    }

    pub fn busy(&self, id: u64) -> Duration {
        let d = self.stats[&id]
            .poll_stats
            .as_ref()
            .and_then(|p| p.busy_time)
            .unwrap_or_default();
        Duration::new(d.seconds as u64, d.nanos as u32)
    }

    pub fn completed(&self, id: u64) -> bool {
        self.stats[&id].dropped_at.is_some()
    }

    pub fn created_at(&self, id: u64) -> SystemTime {
        self.stats[&id]
            .created_at
            .expect("created_at")
            .try_into()
            .unwrap()
    }
}

/// Reads updates from `stream` into `view` until `done(view)` or `limit` passes.
pub async fn watch_until(
    stream: &mut tonic::Streaming<Update>,
    view: &mut View,
    limit: Duration,
    done: impl Fn(&View) -> bool,
) -> bool {
    let deadline = Instant::now() + limit;
    while !done(view) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        match tokio::time::timeout(left, stream.message()).await {
            Ok(Ok(Some(u))) => view.apply(u),
            Ok(Ok(None)) => panic!("the update stream ended"),
            Ok(Err(status)) => panic!("the update stream failed: {status}"),
            Err(_) => return false,
        }
    }
    true
}

/// Opens the update stream.
pub async fn updates(client: &mut InstrumentClient<Channel>) -> tonic::Streaming<Update> {
    client
        .watch_updates(InstrumentRequest {})
        .await
        .expect("watch_updates")
        .into_inner()
}
