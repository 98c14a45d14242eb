//! The thread every transport runs on: a named OS thread with its own single-threaded tokio
//! runtime, never the app's, so the endpoint answers and the push goes out while every
//! worker of the watched runtime is blocked.
//!
//! [`ServiceThread::start`] returns once the service is ready, or with the error that kept it
//! from starting (the runtime, or the service's own set-up, e.g. registering its listener);
//! [`ServiceThread::stop`] signals the service and waits for the thread at most
//! [`STOP_WAIT`].

use std::future::Future;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::Error;

/// The longest [`ServiceThread::stop`] waits for the thread to end (the OTLP exporter's last
/// push is bounded by 2 s). A thread still running then is left to finish detached.
pub(crate) const STOP_WAIT: Duration = Duration::from_secs(5);

/// Resolves when the service is asked to stop (or its [`ServiceThread`] is dropped).
pub(crate) type StopSignal = oneshot::Receiver<()>;

/// A running service thread; stopping it (or dropping it) ends the service and its runtime.
pub(crate) struct ServiceThread {
    name: &'static str,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl ServiceThread {
    /// Spawns the thread `name`, builds its runtime there, and runs `setup` inside that
    /// runtime (entered, so it may register sockets with it). `setup` gets the stop signal
    /// and returns the service to run until it ends; its error, or the runtime's, is this
    /// call's error.
    pub(crate) fn start<S, F>(name: &'static str, setup: S) -> Result<ServiceThread, Error>
    where
        S: FnOnce(StopSignal) -> Result<F, Error> + Send + 'static,
        F: Future<Output = ()>,
    {
        let (stop_tx, stop_rx) = oneshot::channel();
        let (ready_tx, ready_rx) = mpsc::sync_channel(1);
        let thread = crate::os_thread::spawn_named(name, move || {
            // Built here, not on the caller's thread: the caller may be inside the app's
            // runtime, where dropping a runtime after a failure would panic.
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .enable_time()
                .build();
            let rt = match rt {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(Error::Runtime(e)));
                    return;
                }
            };
            let service = {
                let _guard = rt.enter();
                setup(stop_rx)
            };
            match service {
                Ok(service) => {
                    let _ = ready_tx.send(Ok(()));
                    rt.block_on(service);
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                }
            }
            // Dropping the runtime drops every task it still runs: open connections and
            // long-lived streams would keep a graceful shutdown waiting.
        })?;
        let mut service = ServiceThread {
            name,
            stop: Some(stop_tx),
            thread: Some(thread),
        };
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(service),
            Ok(Err(e)) => {
                service.stop();
                Err(e)
            }
            Err(_) => {
                service.stop();
                Err(Error::Thread {
                    name,
                    source: std::io::Error::other("the thread ended during start-up"),
                })
            }
        }
    }

    /// Signals the service to stop and waits for its thread, at most [`STOP_WAIT`].
    /// Idempotent.
    pub(crate) fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let Some(thread) = self.thread.take() else {
            return;
        };
        // Polled, not a channel: the `Agent` that owns this must stay `Sync`.
        let deadline = Instant::now() + STOP_WAIT;
        while !thread.is_finished() {
            if Instant::now() >= deadline {
                tracing::warn!(
                    target: "pollwatch",
                    "{} did not stop within {STOP_WAIT:?}; left to finish on its own",
                    self.name
                );
                return;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let _ = thread.join();
    }
}

impl Drop for ServiceThread {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_service_runs_until_stopped_and_a_setup_error_is_the_start_error() {
        let (tx, rx) = mpsc::channel();
        let mut service = ServiceThread::start("pollwatch-test", move |stop| {
            Ok(async move {
                let _ = stop.await;
                let _ = tx.send(std::thread::current().name().map(str::to_string));
            })
        })
        .expect("starts");
        service.stop();
        assert_eq!(rx.try_recv().unwrap().as_deref(), Some("pollwatch-test"));
        service.stop(); // idempotent

        let err = ServiceThread::start("pollwatch-test", |_| {
            Err::<std::future::Ready<()>, _>(Error::invalid("setting", "value", "why"))
        })
        .err()
        .expect("the setup error");
        assert!(err.to_string().contains("setting"), "{err}");
    }
}
