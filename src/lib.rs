#![doc = include_str!("../README.md")]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[macro_use]
mod macros;

mod agent;
mod allow_blocking;
mod attach;
pub mod capture;
pub mod config;
mod error;
mod export;
mod hooks;
pub mod names;
mod os_thread;
mod report;
mod sampler;
mod slots;
mod state;
mod stats;
pub mod testing;
mod thread_info;
mod watchdog;

#[cfg(test)]
mod readme_tables;

pub use agent::{Agent, Builder};
pub use allow_blocking::allow_blocking;
pub use config::Config;
pub use error::Error;
#[cfg(feature = "prometheus")]
#[cfg_attr(docsrs, doc(cfg(feature = "prometheus")))]
pub use export::collector::PrometheusCollector;
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub use export::server;
pub use report::{Detection, StackSample, StallKind, StallReport};
pub use state::Mode;
pub use stats::histogram::HistogramSnapshot;
pub use stats::stall_log::StallsView;
