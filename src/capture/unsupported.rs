//! The capture back-end where stacks cannot be captured (anything but Linux on x86_64 or
//! aarch64): the same functions as [`linux`](super), each answering "unsupported", so that
//! detection and every exporter keep working.

use std::ops::Range;
use std::time::Duration;

use super::{CaptureStatus, RawStack, ThreadHandle};
use crate::Error;

/// A handle with no thread id and no stack bounds (`tid` 0 in reports).
pub(super) fn current_thread() -> ThreadHandle {
    ThreadHandle {
        tid: 0,
        pthread: 0,
        stack_lo: 0,
        stack_hi: 0,
    }
}

/// No vDSO to name frames from.
pub(super) fn vdso_symbols() -> Vec<(Range<usize>, String)> {
    Vec::new()
}

/// Installs nothing; every capture is [`CaptureStatus::Unsupported`].
pub(super) struct Backend;

impl Backend {
    pub(super) fn new(_signal: i32) -> Result<Backend, Error> {
        Ok(Backend)
    }

    pub(super) fn capture(
        &mut self,
        _thread: &ThreadHandle,
        _timeout: Duration,
    ) -> Result<RawStack, CaptureStatus> {
        Err(CaptureStatus::Unsupported)
    }
}
