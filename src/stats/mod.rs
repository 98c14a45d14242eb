//! Bounded statistics shared between the hooks, the watchdog and the exporters: histograms,
//! the spawn-location table and the log of stall reports. Memory here never grows with the
//! number of tasks.

pub(crate) mod callsites;
pub(crate) mod flame;
pub(crate) mod histogram;
#[cfg(feature = "http")]
pub(crate) mod recent;
pub(crate) mod stall_log;
