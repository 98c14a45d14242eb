//! The console thread's bounded map of tasks, fed from the hooks' events, and the
//! `tokio-console` messages made from it.
//!
//! Bounded two ways: at most `console_max_tasks` entries (a new task beyond that first
//! frees the oldest completed one, counted as evicted, else is not tracked, counted), and a
//! completed task is freed `console_retention` after it ended. Metadata (one per spawn
//! location) is kept for the life of the agent: a program has finitely many spawn sites.

use std::collections::{HashMap, VecDeque};
use std::panic::Location;
use std::time::{Duration, SystemTime};

use console_api as api;

use super::events::Event;

/// One task as the console shows it. Times are raw clock readings.
struct TaskEntry {
    meta: u64,
    location: &'static Location<'static>,
    created: u64,
    dropped: Option<u64>,
    polls: u64,
    busy_ns: u64,
    first_poll: Option<u64>,
    last_poll_started: Option<u64>,
    last_poll_ended: Option<u64>,
    /// Not yet sent to the clients connected before it appeared.
    announced: bool,
    /// Stats changed since the last update.
    changed: bool,
}

/// Counts the map keeps about itself, for `/metrics`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct MapCounts {
    /// Entries now (live and completed-but-retained).
    pub(crate) tasks: u64,
    /// Spawns that got an entry.
    pub(crate) tracked: u64,
    /// Spawns that got none: the map was full of live tasks.
    pub(crate) untracked: u64,
    /// Completed tasks freed before their retention ended, to make room.
    pub(crate) evicted: u64,
}

/// Raw clock readings to wall-clock times, anchored once.
pub(crate) struct WallClock {
    clock: quanta::Clock,
    raw: u64,
    system: SystemTime,
}

impl WallClock {
    pub(crate) fn new(clock: quanta::Clock) -> Self {
        WallClock {
            raw: clock.raw(),
            system: SystemTime::now(),
            clock,
        }
    }

    pub(crate) fn raw_now(&self) -> u64 {
        self.clock.raw()
    }

    fn nanos(&self, start: u64, end: u64) -> u64 {
        self.clock.delta_as_nanos(start, end)
    }

    fn system(&self, raw: u64) -> SystemTime {
        let moved = if raw >= self.raw {
            self.system
                .checked_add(Duration::from_nanos(self.nanos(self.raw, raw)))
        } else {
            self.system
                .checked_sub(Duration::from_nanos(self.nanos(raw, self.raw)))
        };
        moved.unwrap_or(self.system)
    }

    fn timestamp(&self, raw: u64) -> prost_types::Timestamp {
        self.system(raw).into()
    }
}

fn duration(ns: u64) -> prost_types::Duration {
    prost_types::Duration {
        seconds: (ns / 1_000_000_000) as i64,
        nanos: (ns % 1_000_000_000) as i32,
    }
}

/// Tasks per message: keeps every message far below the 4 MiB a tonic client accepts by
/// default (a task with its stats is a few hundred bytes).
pub(crate) const TASKS_PER_MESSAGE: usize = 1_000;

/// The task map and the metadata registry.
pub(crate) struct TaskMap {
    tasks: HashMap<u64, TaskEntry>,
    /// Completed tasks in the order they ended: `(ended at, id)`.
    completed: VecDeque<(u64, u64)>,
    metas: HashMap<(&'static str, u32, u32), u64>,
    meta_list: Vec<(u64, &'static Location<'static>)>,
    /// Index into `meta_list` of the first metadata not yet sent to connected clients.
    metas_announced: usize,
    /// Poll and terminate events that arrived before their spawn (another worker's queue was
    /// drained first), retried once at the next drain.
    early: Vec<Event>,
    max_tasks: usize,
    retention_ns: u64,
    counts: MapCounts,
    pub(crate) wall: WallClock,
}

impl TaskMap {
    pub(crate) fn new(max_tasks: usize, retention: Duration, wall: WallClock) -> Self {
        TaskMap {
            tasks: HashMap::new(),
            completed: VecDeque::new(),
            metas: HashMap::new(),
            meta_list: Vec::new(),
            metas_announced: 0,
            early: Vec::new(),
            max_tasks,
            retention_ns: u64::try_from(retention.as_nanos()).unwrap_or(u64::MAX),
            counts: MapCounts::default(),
            wall,
        }
    }

    pub(crate) fn counts(&self) -> MapCounts {
        MapCounts {
            tasks: self.tasks.len() as u64,
            ..self.counts
        }
    }

    /// Takes the events that waited one drain for their spawn; the caller applies them again,
    /// with `retry` set, after the new ones.
    pub(crate) fn take_early(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.early)
    }

    /// Applies one event. `retry` is set for a second attempt: an event whose task is still
    /// unknown then belongs to a spawn that was dropped or not tracked (both already counted),
    /// and is let go.
    pub(crate) fn apply(&mut self, event: Event, retry: bool) {
        match event {
            Event::Spawn { id, at, location } => self.spawned(id, at, location),
            Event::Poll { id, start, end } => match self.tasks.get_mut(&id) {
                Some(t) => {
                    t.polls += 1;
                    t.busy_ns = t.busy_ns.saturating_add(self.wall.nanos(start, end));
                    t.first_poll.get_or_insert(start);
                    t.last_poll_started = Some(start);
                    t.last_poll_ended = Some(end);
                    t.changed = true;
                }
                None => self.wait_for_spawn(event, retry),
            },
            Event::Terminate { id, at } => match self.tasks.get_mut(&id) {
                Some(t) if t.dropped.is_none() => {
                    t.dropped = Some(at);
                    t.changed = true;
                    self.completed.push_back((at, id));
                }
                Some(_) => {}
                None => self.wait_for_spawn(event, retry),
            },
        }
    }

    fn wait_for_spawn(&mut self, event: Event, retry: bool) {
        // Bounded like one queue: anything beyond is from spawns that were never seen.
        if !retry && self.early.len() < super::events::EVENTS_PER_THREAD {
            self.early.push(event);
        }
    }

    fn spawned(&mut self, id: u64, at: u64, location: &'static Location<'static>) {
        if self.tasks.contains_key(&id) {
            return;
        }
        if self.tasks.len() >= self.max_tasks && !self.evict_one() {
            self.counts.untracked += 1;
            return;
        }
        let meta = self.meta_for(location);
        self.counts.tracked += 1;
        self.tasks.insert(
            id,
            TaskEntry {
                meta,
                location,
                created: at,
                dropped: None,
                polls: 0,
                busy_ns: 0,
                first_poll: None,
                last_poll_started: None,
                last_poll_ended: None,
                announced: false,
                changed: true,
            },
        );
    }

    /// Frees the oldest completed task to make room for a live one.
    fn evict_one(&mut self) -> bool {
        while let Some((_, id)) = self.completed.pop_front() {
            if self.tasks.remove(&id).is_some() {
                self.counts.evicted += 1;
                return true;
            }
        }
        false
    }

    fn meta_for(&mut self, location: &'static Location<'static>) -> u64 {
        let key = (location.file(), location.line(), location.column());
        let next = self.meta_list.len() as u64 + 1;
        let id = *self.metas.entry(key).or_insert(next);
        if id == next {
            self.meta_list.push((id, location));
        }
        id
    }

    /// Frees completed tasks whose retention has passed.
    pub(crate) fn expire(&mut self, now: u64) {
        while let Some(&(ended, id)) = self.completed.front() {
            if self.wall.nanos(ended, now) < self.retention_ns {
                break;
            }
            self.completed.pop_front();
            self.tasks.remove(&id);
        }
    }

    /// Marks the tasks polled right now (`(task id, poll start)`) as running, so a poll that
    /// has been blocking its worker for seconds shows as running with its busy time growing.
    pub(crate) fn mark_running(&mut self, running: &[(u64, u64)]) {
        for &(id, start) in running {
            if let Some(t) = self.tasks.get_mut(&id) {
                if t.last_poll_started.is_none_or(|s| s < start) && t.dropped.is_none() {
                    t.last_poll_started = Some(start);
                    t.first_poll.get_or_insert(start);
                    t.changed = true;
                }
            }
        }
    }

    fn metadata(&self, from: usize) -> api::RegisterMetadata {
        let metadata = self.meta_list[from..]
            .iter()
            .map(|&(id, loc)| api::register_metadata::NewMetadata {
                id: Some(api::MetaId { id }),
                metadata: Some(api::Metadata {
                    name: "runtime.spawn".into(),
                    target: "tokio::task".into(),
                    module_path: String::new(),
                    location: Some(location(loc)),
                    kind: api::metadata::Kind::Span as i32,
                    level: api::metadata::Level::Trace as i32,
                    field_names: vec!["kind".into(), "task.id".into()],
                }),
            })
            .collect();
        api::RegisterMetadata { metadata }
    }

    fn task(&self, id: u64, t: &TaskEntry) -> api::tasks::Task {
        let field = |name: &str, value| api::Field {
            name: Some(api::field::Name::StrName(name.into())),
            value: Some(value),
            metadata_id: Some(api::MetaId { id: t.meta }),
        };
        api::tasks::Task {
            id: Some(api::Id { id }),
            metadata: Some(api::MetaId { id: t.meta }),
            kind: api::tasks::task::Kind::Spawn as i32,
            fields: vec![
                field("kind", api::field::Value::StrVal("task".into())),
                field("task.id", api::field::Value::U64Val(id)),
            ],
            parents: Vec::new(),
            location: Some(location(t.location)),
        }
    }

    fn stats(&self, t: &TaskEntry) -> api::tasks::Stats {
        let w = &self.wall;
        api::tasks::Stats {
            created_at: Some(w.timestamp(t.created)),
            dropped_at: t.dropped.map(|d| w.timestamp(d)),
            // The hooks do not see wakers: these stay 0 (see the README).
            wakes: 0,
            waker_clones: 0,
            waker_drops: 0,
            last_wake: None,
            self_wakes: 0,
            scheduled_time: None,
            poll_stats: Some(api::PollStats {
                polls: t.polls,
                first_poll: t.first_poll.map(|r| w.timestamp(r)),
                last_poll_started: t.last_poll_started.map(|r| w.timestamp(r)),
                last_poll_ended: t.last_poll_ended.map(|r| w.timestamp(r)),
                busy_time: Some(duration(t.busy_ns)),
            }),
        }
    }

    /// Everything, for a client that just connected.
    pub(crate) fn snapshot(&self, dropped_events: u64) -> api::instrument::Update {
        let mut stats_update = HashMap::with_capacity(self.tasks.len());
        let mut new_tasks = Vec::with_capacity(self.tasks.len());
        for (&id, t) in &self.tasks {
            new_tasks.push(self.task(id, t));
            stats_update.insert(id, self.stats(t));
        }
        self.update(0, new_tasks, stats_update, dropped_events)
    }

    /// What changed since the last call, for the clients already connected; marks it sent.
    pub(crate) fn changes(&mut self, dropped_events: u64) -> api::instrument::Update {
        let mut stats_update = HashMap::new();
        let mut new_tasks = Vec::new();
        for (&id, t) in &self.tasks {
            if !t.announced {
                new_tasks.push(self.task(id, t));
            }
            if t.changed || !t.announced {
                stats_update.insert(id, self.stats(t));
            }
        }
        let update = self.update(
            self.metas_announced,
            new_tasks,
            stats_update,
            dropped_events,
        );
        for t in self.tasks.values_mut() {
            t.announced = true;
            t.changed = false;
        }
        self.metas_announced = self.meta_list.len();
        update
    }

    fn update(
        &self,
        metas_from: usize,
        new_tasks: Vec<api::tasks::Task>,
        stats_update: HashMap<u64, api::tasks::Stats>,
        dropped_events: u64,
    ) -> api::instrument::Update {
        api::instrument::Update {
            now: Some(SystemTime::now().into()),
            task_update: Some(api::tasks::TaskUpdate {
                new_tasks,
                stats_update,
                dropped_events,
            }),
            resource_update: None,
            async_op_update: None,
            new_metadata: Some(self.metadata(metas_from)),
        }
    }

    /// Whether the map holds task `id` (for `watch_task_details`).
    pub(crate) fn contains(&self, id: u64) -> bool {
        self.tasks.contains_key(&id)
    }
}

/// Splits `update` into messages of at most [`TASKS_PER_MESSAGE`] tasks' stats each: every
/// new task travels with its stats (tokio-console drops a new task without them), and the
/// metadata goes in the first message, before any task that refers to it.
pub(crate) fn split(mut update: api::instrument::Update) -> Vec<api::instrument::Update> {
    let Some(tasks) = update.task_update.take() else {
        return vec![update];
    };
    let mut stats = tasks.stats_update;
    let mut new_tasks = tasks.new_tasks.into_iter().peekable();
    let mut metadata = update.new_metadata.take();
    let mut pieces = Vec::new();
    loop {
        let mut batch_tasks = Vec::new();
        let mut batch_stats = HashMap::new();
        while batch_stats.len() < TASKS_PER_MESSAGE {
            if let Some(task) = new_tasks.next() {
                let id = task.id.map_or(0, |i| i.id);
                if let Some(s) = stats.remove(&id) {
                    batch_stats.insert(id, s);
                }
                batch_tasks.push(task);
                continue;
            }
            let Some(&id) = stats.keys().next() else {
                break;
            };
            if let Some(s) = stats.remove(&id) {
                batch_stats.insert(id, s);
            }
        }
        pieces.push(api::instrument::Update {
            now: update.now,
            task_update: Some(api::tasks::TaskUpdate {
                new_tasks: batch_tasks,
                stats_update: batch_stats,
                dropped_events: tasks.dropped_events,
            }),
            resource_update: None,
            async_op_update: None,
            new_metadata: metadata.take(),
        });
        if new_tasks.peek().is_none() && stats.is_empty() {
            return pieces;
        }
    }
}

fn location(loc: &'static Location<'static>) -> api::Location {
    api::Location {
        file: Some(loc.file().to_string()),
        module_path: None,
        line: Some(loc.line()),
        column: Some(loc.column()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map_with(n: u64) -> TaskMap {
        let clock = quanta::Clock::new();
        let mut map = TaskMap::new(
            100_000,
            Duration::from_secs(60),
            WallClock::new(clock.clone()),
        );
        for id in 1..=n {
            let at = clock.raw();
            map.apply(
                Event::Spawn {
                    id,
                    at,
                    location: Location::caller(),
                },
                false,
            );
            map.apply(
                Event::Poll {
                    id,
                    start: at,
                    end: clock.raw(),
                },
                false,
            );
        }
        map
    }

    #[test]
    fn large_updates_are_split_with_each_new_task_beside_its_stats() {
        let mut map = map_with(2_500);
        let pieces = split(map.changes(0));
        assert_eq!(pieces.len(), 3);
        assert!(pieces[0]
            .new_metadata
            .as_ref()
            .is_some_and(|m| m.metadata.len() == 1));
        let mut seen = 0;
        for p in &pieces[1..] {
            assert!(p.new_metadata.is_none());
        }
        for p in &pieces {
            let t = p.task_update.as_ref().unwrap();
            assert!(t.stats_update.len() <= TASKS_PER_MESSAGE);
            for task in &t.new_tasks {
                assert!(t.stats_update.contains_key(&task.id.unwrap().id));
            }
            seen += t.new_tasks.len();
        }
        assert_eq!(seen, 2_500);
        // Nothing changed since: one empty message.
        assert_eq!(split(map.changes(0)).len(), 1);
    }

    #[test]
    fn a_poll_before_its_spawn_is_applied_on_the_retry() {
        let clock = quanta::Clock::new();
        let mut map = TaskMap::new(10, Duration::from_secs(60), WallClock::new(clock.clone()));
        let at = clock.raw();
        map.apply(
            Event::Poll {
                id: 7,
                start: at,
                end: at + 1,
            },
            false,
        );
        map.apply(
            Event::Spawn {
                id: 7,
                at,
                location: Location::caller(),
            },
            false,
        );
        for e in map.take_early() {
            map.apply(e, true);
        }
        assert_eq!(map.tasks[&7].polls, 1);
        assert!(map.take_early().is_empty());
    }

    #[test]
    fn completed_tasks_make_room_and_live_ones_beyond_the_cap_are_counted() {
        let clock = quanta::Clock::new();
        let mut map = TaskMap::new(2, Duration::from_secs(60), WallClock::new(clock.clone()));
        let spawn = |map: &mut TaskMap, id| {
            map.apply(
                Event::Spawn {
                    id,
                    at: clock.raw(),
                    location: Location::caller(),
                },
                false,
            )
        };
        spawn(&mut map, 1);
        spawn(&mut map, 2);
        map.apply(
            Event::Terminate {
                id: 1,
                at: clock.raw(),
            },
            false,
        );
        spawn(&mut map, 3); // evicts 1
        spawn(&mut map, 4); // 2 and 3 live: not tracked
        let c = map.counts();
        assert_eq!((c.tasks, c.tracked, c.evicted, c.untracked), (2, 3, 1, 1));
        assert!(map.contains(2) && map.contains(3) && !map.contains(4));
    }
}
