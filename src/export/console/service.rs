//! The `Instrument` gRPC service and the aggregator task that feeds its streams.
//!
//! Request handlers only register a client with the aggregator (a bounded channel) and hand
//! back the receiving end of a bounded stream; the aggregator, on the same single-threaded
//! runtime, drains the hooks' events, keeps the task map and sends each client its updates.
//! A client whose stream is full (it stopped reading) is dropped rather than buffered for:
//! `tokio-console` reconnects and gets a fresh snapshot.

use std::sync::Arc;

use console_api::instrument::instrument_server::{Instrument, InstrumentServer};
use console_api::instrument::{
    InstrumentRequest, PauseRequest, PauseResponse, ResumeRequest, ResumeResponse, State,
    StateRequest, TaskDetailsRequest, Temporality, Update,
};
use console_api::tasks::TaskDetails;
use tokio::sync::mpsc;
use tonic::codegen::tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::tasks::{split, TaskMap, WallClock, TASKS_PER_MESSAGE};
use super::{ConsoleState, DRAIN_INTERVAL, MAX_CLIENTS, PUBLISH_INTERVAL};
use crate::slots::SlotLease;

/// What the aggregator takes from the agent's configuration.
pub(super) struct Settings {
    pub(super) max_tasks: usize,
    pub(super) retention: std::time::Duration,
    pub(super) clock: quanta::Clock,
}

/// Messages a stream holds before its client counts as not reading.
const STREAM_BUFFER: usize = 16;

type Sink<T> = mpsc::Sender<Result<T, Status>>;

/// What a request handler asks of the aggregator.
pub(super) enum Command {
    WatchUpdates(Sink<Update>),
    WatchTaskDetails(u64, Sink<TaskDetails>),
    WatchState(Sink<State>),
    Pause,
    Resume,
}

/// Serves `Instrument` on `listener` until the future is dropped.
pub(super) async fn serve(
    listener: tokio::net::TcpListener,
    commands: mpsc::Sender<Command>,
    max_tasks: usize,
) {
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let result = tonic::transport::Server::builder()
        .add_service(InstrumentServer::new(Service {
            commands,
            max_tasks,
        }))
        .serve_with_incoming(incoming)
        .await;
    if let Err(e) = result {
        tracing::error!(target: "pollwatch", "the tokio-console server stopped: {e}");
    }
}

struct Service {
    commands: mpsc::Sender<Command>,
    max_tasks: usize,
}

impl Service {
    async fn ask(&self, command: Command) -> Result<(), Status> {
        self.commands
            .send(command)
            .await
            .map_err(|_| Status::unavailable("pollwatch's console is shutting down"))
    }
}

#[tonic::async_trait]
impl Instrument for Service {
    type WatchUpdatesStream = ReceiverStream<Result<Update, Status>>;
    type WatchTaskDetailsStream = ReceiverStream<Result<TaskDetails, Status>>;
    type WatchStateStream = ReceiverStream<Result<State, Status>>;

    async fn watch_updates(
        &self,
        _: Request<InstrumentRequest>,
    ) -> Result<Response<Self::WatchUpdatesStream>, Status> {
        // Room for a full snapshot and a full update, in pieces, plus a few more.
        let pieces = self.max_tasks.div_ceil(TASKS_PER_MESSAGE);
        let (tx, rx) = mpsc::channel(2 * pieces + STREAM_BUFFER);
        self.ask(Command::WatchUpdates(tx)).await?;
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn watch_task_details(
        &self,
        request: Request<TaskDetailsRequest>,
    ) -> Result<Response<Self::WatchTaskDetailsStream>, Status> {
        let Some(id) = request.into_inner().id else {
            return Err(Status::invalid_argument("a task id is required"));
        };
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        self.ask(Command::WatchTaskDetails(id.id, tx)).await?;
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn watch_state(
        &self,
        _: Request<StateRequest>,
    ) -> Result<Response<Self::WatchStateStream>, Status> {
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        self.ask(Command::WatchState(tx)).await?;
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn pause(&self, _: Request<PauseRequest>) -> Result<Response<PauseResponse>, Status> {
        self.ask(Command::Pause).await?;
        Ok(Response::new(PauseResponse {}))
    }

    async fn resume(&self, _: Request<ResumeRequest>) -> Result<Response<ResumeResponse>, Status> {
        self.ask(Command::Resume).await?;
        Ok(Response::new(ResumeResponse {}))
    }
}

/// Sends `message`; `false` when the client is gone or not reading (then it is dropped).
fn offer<T>(sink: &Sink<T>, message: T) -> bool {
    sink.try_send(Ok(message)).is_ok()
}

/// Owns the task map and every client stream.
pub(super) struct Aggregator {
    /// The poll slots the hooks' events are queued by (held: the table stays leased).
    slots: Arc<SlotLease>,
    state: Arc<ConsoleState>,
    commands: mpsc::Receiver<Command>,
    map: TaskMap,
    /// Clients that got their snapshot and now get changes.
    updates: Vec<Sink<Update>>,
    /// Clients waiting for their first message, a snapshot.
    joining: Vec<Sink<Update>>,
    details: Vec<(u64, Sink<TaskDetails>)>,
    states: Vec<Sink<State>>,
    paused: bool,
}

impl Aggregator {
    pub(super) fn new(
        settings: Settings,
        slots: Arc<SlotLease>,
        state: Arc<ConsoleState>,
    ) -> (mpsc::Sender<Command>, Aggregator) {
        let (tx, rx) = mpsc::channel(MAX_CLIENTS);
        let map = TaskMap::new(
            settings.max_tasks,
            settings.retention,
            WallClock::new(settings.clock),
        );
        let aggregator = Aggregator {
            slots,
            state,
            commands: rx,
            map,
            updates: Vec::new(),
            joining: Vec::new(),
            details: Vec::new(),
            states: Vec::new(),
            paused: false,
        };
        (tx, aggregator)
    }

    pub(super) async fn run(mut self) {
        let mut tick = tokio::time::interval(DRAIN_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let every = (PUBLISH_INTERVAL.as_millis() / DRAIN_INTERVAL.as_millis()).max(1) as u32;
        let mut ticks = 0u32;
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    self.drain();
                    ticks += 1;
                    if ticks % every == 0 {
                        self.publish();
                    }
                }
                command = self.commands.recv() => match command {
                    Some(c) => self.command(c),
                    None => return,
                }
            }
        }
    }

    fn command(&mut self, command: Command) {
        match command {
            Command::WatchUpdates(sink) => {
                if self.updates.len() + self.joining.len() >= MAX_CLIENTS {
                    let _ = sink.try_send(Err(Status::resource_exhausted(format!(
                        "pollwatch serves at most {MAX_CLIENTS} consoles at once"
                    ))));
                } else {
                    self.joining.push(sink);
                }
            }
            Command::WatchTaskDetails(id, sink) => {
                if !self.map.contains(id) {
                    let _ = sink.try_send(Err(Status::not_found(format!(
                        "no task {id} (it ended and was freed, or was never tracked)"
                    ))));
                } else if self.details.len() >= MAX_CLIENTS {
                    let _ = sink.try_send(Err(Status::resource_exhausted(format!(
                        "pollwatch serves at most {MAX_CLIENTS} task-detail streams at once"
                    ))));
                } else {
                    self.details.push((id, sink));
                }
            }
            Command::WatchState(sink) => {
                if self.states.len() < MAX_CLIENTS && offer(&sink, self.temporality()) {
                    self.states.push(sink);
                }
            }
            Command::Pause => self.set_paused(true),
            Command::Resume => self.set_paused(false),
        }
    }

    fn temporality(&self) -> State {
        let t = if self.paused {
            Temporality::Paused
        } else {
            Temporality::Live
        };
        State {
            temporality: t as i32,
        }
    }

    fn set_paused(&mut self, paused: bool) {
        self.paused = paused;
        let state = self.temporality();
        self.states.retain(|s| offer(s, state));
    }

    /// Moves every queued hook event into the map.
    fn drain(&mut self) {
        let early = self.map.take_early();
        let map = &mut self.map;
        self.state
            .feed
            .drain(&self.slots, |event| map.apply(event, false));
        for event in early {
            self.map.apply(event, true);
        }
        let running = self.state.feed.running(&self.slots);
        self.map.mark_running(&running);
        self.state.map.store(self.map.counts());
    }

    /// Sends the changes to the connected clients, snapshots to new ones, then frees
    /// completed tasks past their retention (after their end was sent).
    fn publish(&mut self) {
        if !self.paused {
            let dropped = self.state.dropped_events();
            let update = split(self.map.changes(dropped));
            self.updates
                .retain(|sink| update.iter().all(|piece| offer(sink, piece.clone())));
            if !self.joining.is_empty() {
                let snapshot = split(self.map.snapshot(dropped));
                for sink in std::mem::take(&mut self.joining) {
                    if snapshot.iter().all(|piece| offer(&sink, piece.clone())) {
                        self.updates.push(sink);
                    }
                }
            }
            let now: prost_types::Timestamp = std::time::SystemTime::now().into();
            let map = &self.map;
            self.details.retain(|(id, sink)| {
                map.contains(*id)
                    && offer(
                        sink,
                        TaskDetails {
                            task_id: Some(console_api::Id { id: *id }),
                            now: Some(now),
                            poll_times_histogram: None,
                            scheduled_times_histogram: None,
                        },
                    )
            });
            self.states.retain(|s| !s.is_closed());
        }
        let now = self.map.wall.raw_now();
        self.map.expire(now);
        self.state.map.store(self.map.counts());
    }
}
