#![doc = include_str!("../README.md")]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod agent;
pub mod capture;
pub mod config;
mod error;
mod hooks;
mod os_thread;
mod report;
mod slots;
mod state;
mod stats;
mod watchdog;

pub use agent::{Agent, Builder};
pub use config::Config;
pub use error::Error;
pub use report::{Detection, StackSample, StallKind, StallReport};
pub use slots::allow_blocking;
pub use state::Mode;
pub use stats::histogram::HistogramSnapshot;
pub use stats::stall_log::StallsView;
