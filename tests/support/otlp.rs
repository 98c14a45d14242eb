//! A real OTLP/gRPC metrics receiver for the exporter tests: opentelemetry-proto's
//! `MetricsService` served by tonic on loopback, from its own thread and runtime, keeping
//! every request it receives.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::Metric;

#[allow(unused_imports)] // not every test binary matches on the data type
pub use opentelemetry_proto::tonic::metrics::v1::metric::Data;

type Received = Arc<Mutex<Vec<ExportMetricsServiceRequest>>>;

struct Service(Received);

#[tonic::async_trait]
impl MetricsService for Service {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        self.0.lock().unwrap().push(request.into_inner());
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

/// The running receiver; dropping it stops it.
pub struct Receiver {
    pub addr: SocketAddr,
    received: Received,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Receiver {
    /// On a free loopback port.
    #[track_caller]
    pub fn start() -> Receiver {
        Receiver::start_on("127.0.0.1:0".parse().unwrap())
    }

    /// On `addr` (a port the test chose earlier).
    #[track_caller]
    pub fn start_on(addr: SocketAddr) -> Receiver {
        let listener = std::net::TcpListener::bind(addr).expect("bind the receiver");
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Received::default();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let service = Service(received.clone());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let incoming = tonic::transport::server::TcpIncoming::from(listener);
                tonic::transport::Server::builder()
                    .add_service(
                        // As collectors do: their exporters compress by default.
                        MetricsServiceServer::new(service)
                            .accept_compressed(tonic::codec::CompressionEncoding::Gzip),
                    )
                    .serve_with_incoming_shutdown(incoming, async {
                        let _ = stop_rx.await;
                    })
                    .await
                    .unwrap();
            });
        });
        Receiver {
            addr,
            received,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<ExportMetricsServiceRequest> {
        self.received.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.received.lock().unwrap().len()
    }

    /// Waits (bounded by `limit`) until at least `n` requests arrived; returns them all.
    #[track_caller]
    pub fn wait_for(&self, n: usize, limit: Duration) -> Vec<ExportMetricsServiceRequest> {
        let start = Instant::now();
        while self.count() < n && start.elapsed() < limit {
            std::thread::sleep(Duration::from_millis(10));
        }
        let got = self.requests();
        assert!(
            got.len() >= n,
            "{} OTLP requests within {limit:?}, expected {n}",
            got.len()
        );
        got
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The metrics of a request from one agent: one resource, one scope.
#[track_caller]
pub fn metrics(r: &ExportMetricsServiceRequest) -> &[Metric] {
    assert_eq!(r.resource_metrics.len(), 1, "one resource");
    let scopes = &r.resource_metrics[0].scope_metrics;
    assert_eq!(scopes.len(), 1, "one scope");
    &scopes[0].metrics
}

/// The metric called `name`, if the request has it (asserting it has it once).
#[track_caller]
pub fn metric<'a>(r: &'a ExportMetricsServiceRequest, name: &str) -> Option<&'a Metric> {
    let found: Vec<_> = metrics(r).iter().filter(|m| m.name == name).collect();
    assert!(found.len() <= 1, "{name} appears {} times", found.len());
    found.first().copied()
}

/// An attribute value as the Prometheus label text it came from.
pub fn text(kv: &KeyValue) -> String {
    match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(n)) => n.to_string(),
        other => panic!("unexpected attribute value {other:?} for {}", kv.key),
    }
}

/// The attribute `key` of `attrs`, as text.
pub fn attr(attrs: &[KeyValue], key: &str) -> Option<String> {
    attrs.iter().find(|kv| kv.key == key).map(text)
}

/// A running `rotel-agent` collector (PyPI's `rotel` wheel; `.ci/run` installs it) that
/// receives OTLP/gRPC on a free loopback port and forwards everything over OTLP/gRPC to
/// `downstream`. Killed when dropped.
pub struct Rotel {
    /// Where it receives OTLP/gRPC.
    pub grpc: SocketAddr,
    child: std::process::Child,
    dir: std::path::PathBuf,
}

impl Rotel {
    /// Starts it and waits (bounded) until it listens; a missing `rotel-agent` fails the
    /// test with what to install.
    #[track_caller]
    pub fn start(downstream: &Receiver) -> Rotel {
        use std::process::{Command, Stdio};
        let rotel = super::scrape::tool("rotel-agent");
        let loopback = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
        let grpc = loopback(super::scrape::free_port());
        let dir = std::env::temp_dir().join(format!(
            "pollwatch-rotel-{}-{}",
            std::process::id(),
            grpc.port()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let log = std::fs::File::create(dir.join("rotel.log")).unwrap();
        let child = Command::new(rotel)
            .arg("start")
            .args(["--otlp-grpc-endpoint", &grpc.to_string()])
            // Its HTTP receiver is not used: a free port, not the shared default 4318.
            .args([
                "--otlp-http-endpoint",
                &loopback(super::scrape::free_port()).to_string(),
            ])
            .args(["--exporter", "otlp"])
            .args(["--otlp-exporter-endpoint", &downstream.endpoint()])
            .args(["--otlp-exporter-protocol", "grpc"])
            .args(["--batch-timeout", "100ms"])
            .arg("--pid-file")
            .arg(dir.join("rotel.pid"))
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start rotel-agent");
        let rotel = Rotel { grpc, child, dir };
        let start = Instant::now();
        while std::net::TcpStream::connect_timeout(&grpc, Duration::from_millis(100)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "rotel did not listen on {grpc}; its log:\n{}",
                rotel.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        rotel
    }

    /// `http://127.0.0.1:<port>` of its gRPC receiver.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.grpc)
    }

    /// What it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("rotel.log")).unwrap_or_default()
    }
}

impl Drop for Rotel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
