//! The built-in endpoint: `GET /metrics`, `GET /stalls`, `GET /stalls/folded`,
//! `GET /flamegraph.svg`, and `GET /`: the stall page for a browser (`Accept: text/html`),
//! a plain-text index for scripts (also at `/index.txt`; the page also at `/index.html`).
//!
//! It runs on its own OS thread, `pollwatch-http`, with its own single-threaded tokio
//! runtime (see `service_thread`), so it answers while every worker of the watched runtime is blocked: that is when
//! people look. Collection reads atomics and a short-held lock the workers never take.
//!
//! It is bounded against bad clients: at most [`MAX_CONNECTIONS`] connections at once
//! (beyond that a new connection is closed at once), request heads of at most
//! [`MAX_HEADER_BYTES`] and [`MAX_HEADERS`] headers (else `431`), a head must arrive within
//! [`HEADER_READ_TIMEOUT`] (which is also how long an idle keep-alive connection is kept),
//! and no connection lives longer than [`MAX_CONNECTION_LIFETIME`]. Request bodies are never
//! read. Nothing here panics on input; hyper answers malformed requests with `400`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, ALLOW, AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::Semaphore;

use super::service_thread::ServiceThread;
use crate::sampler::Source;
use crate::Error;

/// Connections served at once; a connection beyond this is closed as soon as it is
/// accepted, so a flood cannot grow memory or starve the thread.
pub const MAX_CONNECTIONS: usize = 256;
/// Largest request head (request line plus headers) accepted; larger gets `431`.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// Most request headers accepted; more gets `431`.
pub const MAX_HEADERS: usize = 64;
/// Time allowed to send a complete request head, counted from the connection's first read
/// or from the previous response: a client trickling bytes, or an idle keep-alive
/// connection, is closed after this.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// No connection is kept longer than this, however it behaves (e.g. one that never reads
/// its response).
pub const MAX_CONNECTION_LIFETIME: Duration = Duration::from_secs(60);

const PATHS: [&str; 7] = [
    "/",
    "/index.html",
    "/index.txt",
    "/metrics",
    "/stalls",
    "/stalls/folded",
    "/flamegraph.svg",
];

/// The running endpoint; stopping it (or dropping it) ends its thread and every connection.
pub(crate) struct Server {
    addr: SocketAddr,
    thread: ServiceThread,
}

struct State {
    source: Source,
    token: Option<String>,
    /// Snapshots for the page's per-minute numbers, taken on this thread.
    recent: crate::stats::recent::Recent,
}

impl Server {
    /// Binds `addr` now (so a port in use is an error of the caller's start-up call) and
    /// starts serving from the `pollwatch-http` thread.
    pub(crate) fn start(
        addr: SocketAddr,
        token: Option<String>,
        source: Source,
    ) -> Result<Server, Error> {
        let bind_err = move |source| Error::Bind {
            setting: "http_addr",
            addr,
            source,
        };
        let listener = std::net::TcpListener::bind(addr).map_err(bind_err)?;
        listener.set_nonblocking(true).map_err(bind_err)?;
        let local = listener.local_addr().map_err(bind_err)?;
        let state = Arc::new(State {
            source,
            token,
            recent: crate::stats::recent::Recent::new(),
        });
        let thread = ServiceThread::start("pollwatch-http", move |stop| {
            let listener = tokio::net::TcpListener::from_std(listener).map_err(bind_err)?;
            Ok(async move {
                tokio::spawn(snapshots(state.clone()));
                tokio::spawn(serve(listener, state));
                // Sent by `stop`, or the `Server` was dropped.
                let _ = stop.await;
            })
        })?;
        Ok(Server {
            addr: local,
            thread,
        })
    }

    /// The bound address (the real port when asked for port 0).
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, drops every connection and waits for the thread. Idempotent.
    pub(crate) fn stop(&mut self) {
        self.thread.stop();
    }
}

/// Takes the page's snapshots until the runtime is dropped.
async fn snapshots(state: Arc<State>) {
    let Some(shared) = state.source.shared.clone() else {
        return;
    };
    let mut every = tokio::time::interval(crate::stats::recent::SNAPSHOT_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        state.recent.record(&shared.stalls, &shared.probe_delay);
    }
}

/// Accepts until the runtime is dropped (which cancels this loop and every connection).
async fn serve(listener: tokio::net::TcpListener, state: Arc<State>) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(_) => {
                // Out of file descriptors or a connection reset before accept: back off
                // briefly instead of spinning.
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            drop(stream); // over the cap: close
            continue;
        };
        let state = state.clone();
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .max_headers(MAX_HEADERS)
                .max_header_size(MAX_HEADER_BYTES)
                .max_buf_size(4 * MAX_HEADER_BYTES);
            let service = hyper::service::service_fn(move |req| {
                let response = respond(&state, &req);
                async move { Ok::<_, Infallible>(response) }
            });
            let conn = http.serve_connection(TokioIo::new(stream), service);
            let _ = tokio::time::timeout(MAX_CONNECTION_LIFETIME, conn).await;
            drop(permit);
        });
    }
}

fn respond(state: &State, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    if let Some(token) = &state.token {
        if !authorized(req, token) {
            let mut r = plain(StatusCode::UNAUTHORIZED, "bearer token required\n");
            r.headers_mut().insert(
                hyper::header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"pollwatch\""),
            );
            return r;
        }
    }
    let path = req.uri().path();
    if !PATHS.contains(&path) {
        return plain(
            StatusCode::NOT_FOUND,
            "not found; try / (the stall page), /metrics, /stalls, /stalls/folded or /flamegraph.svg\n",
        );
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = plain(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n");
        r.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let result = match path {
        "/metrics" => Ok((
            crate::export::prometheus::encode(&state.source.collect()).into_bytes(),
            crate::export::prometheus::CONTENT_TYPE,
        )),
        "/stalls" => {
            let view = match &state.source.shared {
                Some(s) => s.stalls.view(),
                None => crate::StallsView {
                    stalls_total: 0,
                    dropped: 0,
                    stalls: Vec::new(),
                },
            };
            Ok((
                crate::export::json::encode(&view).into_bytes(),
                crate::export::json::CONTENT_TYPE,
            ))
        }
        "/stalls/folded" => selection(req).map(|sel| {
            let body = match &state.source.shared {
                Some(s) => crate::export::folded::encode(&s.flame, &sel.filter),
                None => String::new(),
            };
            (body.into_bytes(), crate::export::folded::CONTENT_TYPE)
        }),
        "/flamegraph.svg" => flamegraph(state, req),
        "/index.txt" => Ok((index(&state.source).into_bytes(), TEXT)),
        "/" if !wants_html(req) => Ok((index(&state.source).into_bytes(), TEXT)),
        _ => page(state, req),
    };
    let (body, content_type) = match result {
        Ok(ok) => ok,
        Err(bad) => {
            let mut r = Response::new(Full::new(Bytes::from(format!("{bad}\n"))));
            *r.status_mut() = StatusCode::BAD_REQUEST;
            r.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static(TEXT));
            return r;
        }
    };
    let mut r = Response::new(Full::new(Bytes::from(body)));
    let headers = r.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

const TEXT: &str = "text/plain; charset=utf-8";

type Body = Result<(Vec<u8>, &'static str), crate::export::query::BadParameter>;

fn selection(
    req: &Request<Incoming>,
) -> Result<crate::export::query::Selection, crate::export::query::BadParameter> {
    crate::export::query::Selection::from_query(req.uri().query(), std::time::SystemTime::now())
}

/// A browser asks for HTML first; `curl`, Prometheus and scripts send `*/*` or nothing.
fn wants_html(req: &Request<Incoming>) -> bool {
    req.headers()
        .get_all(hyper::header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.to_ascii_lowercase().contains("text/html"))
}

fn page(state: &State, req: &Request<Incoming>) -> Body {
    let sel = selection(req)?;
    let refresh = crate::export::html::refresh_of(req.uri().query())?;
    let recent = match &state.source.shared {
        Some(s) => state.recent.view(&s.stalls, &s.probe_delay),
        None => crate::stats::recent::RecentView {
            over: Duration::ZERO,
            stalls: 0,
            lag_count: 0,
            lag_p99: None,
        },
    };
    let html = crate::export::html::render(
        &state.source,
        &crate::export::html::Request {
            selection: &sel,
            query: req.uri().query(),
            refresh,
            recent: &recent,
        },
    );
    Ok((html.into_bytes(), crate::export::html::CONTENT_TYPE))
}

#[cfg(feature = "flamegraph")]
fn flamegraph(state: &State, req: &Request<Incoming>) -> Body {
    let sel = selection(req)?;
    let runtime = state.source.runtime_label();
    let labels = crate::export::flamegraph::Labels {
        runtime: &runtime,
        selection: &sel.label,
    };
    let svg = match &state.source.shared {
        Some(s) => crate::export::flamegraph::render(&s.flame, &sel.filter, &labels),
        None => crate::export::flamegraph::render(
            &crate::stats::flame::FlameTable::new(),
            &sel.filter,
            &labels,
        ),
    };
    Ok((svg, crate::export::flamegraph::CONTENT_TYPE))
}

#[cfg(not(feature = "flamegraph"))]
fn flamegraph(_state: &State, _req: &Request<Incoming>) -> Body {
    Ok((
        b"pollwatch was built without its `flamegraph` feature; /stalls/folded has the same data\n"
            .to_vec(),
        TEXT,
    ))
}

fn plain(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn index(source: &Source) -> String {
    format!(
        "pollwatch {} ({} mode, runtime {:?})\n\n\
         /metrics          runtime health and stalls, Prometheus text format 0.0.4\n\
         /stalls           recent stall reports with stacks, JSON\n\
         /stalls/folded    blocked time by stack, folded (speedscope, inferno, flamegraph.pl); ?window=5m, ?since=, ?stall=\n\
         /flamegraph.svg   the same as an interactive flamegraph\n\
         /index.html       the stall page (what a browser gets at /)\n",
        env!("CARGO_PKG_VERSION"),
        source.mode().as_str(),
        source.runtime_label(),
    )
}

/// `Authorization: Bearer <token>`, the scheme case-insensitive, the token compared in
/// constant time.
fn authorized(req: &Request<Incoming>, token: &str) -> bool {
    let Some(value) = req.headers().get(AUTHORIZATION) else {
        return false;
    };
    let value = value.as_bytes();
    if value.len() < 7 || !value[..7].eq_ignore_ascii_case(b"bearer ") {
        return false;
    }
    constant_time_eq(value[7..].trim_ascii(), token.as_bytes())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_exactly() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(!constant_time_eq(b"", b"a"));
    }
}
