//! Scripted failures of the log writer's file operations, for tests of full and failing disks
//! (feature `test-util`; see [`EventLog::inject_fault`](super::EventLog::inject_fault)).

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, Mutex, PoisonError};

/// A file operation of the log writer that a [`Fault`] can make fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileOp {
    /// Writing a group's records to the active segment.
    Write,
    /// An fdatasync of the active segment: after a group's write, or when it is sealed.
    Sync,
    /// Creating the next segment when the active one is full.
    CreateSegment,
}

/// A scripted failure: after `skip` operations `op` that succeed, the next `times` fail with
/// `kind`. A failing [`FileOp::Write`] first writes `written` bytes of what it was given, and a
/// failing [`FileOp::CreateSegment`] leaves a file with that many bytes of the header, as a
/// filling disk does.
#[derive(Debug, Clone)]
pub struct Fault {
    /// The operation that fails.
    pub op: FileOp,
    /// The error it fails with.
    pub kind: io::ErrorKind,
    /// Bytes that reach the file before the error.
    pub written: usize,
    /// Operations `op` that succeed before the first failure.
    pub skip: usize,
    /// How many operations in a row fail.
    pub times: usize,
    /// When set, the writer meets this barrier twice at the failure — once it has written what
    /// it writes, and before it reports the error — so a test can look at the log in between.
    pub hold: Option<Arc<Barrier>>,
}

impl Fault {
    /// `op` fails once with "no space left on device", having written nothing.
    pub fn disk_full(op: FileOp) -> Self {
        Fault {
            op,
            kind: io::ErrorKind::StorageFull,
            written: 0,
            skip: 0,
            times: 1,
            hold: None,
        }
    }
}

/// A fault hitting an operation now: bytes to let through, the error, and a barrier to meet
/// after writing them.
pub(crate) struct Hit {
    pub written: usize,
    pub error: io::Error,
    hold: Option<Arc<Barrier>>,
}

impl Hit {
    /// Meets the fault's barrier, if it has one: the test sees the state before the error.
    pub(crate) fn hold(&self) {
        if let Some(barrier) = &self.hold {
            barrier.wait();
            barrier.wait();
        }
    }
}

/// The faults waiting to happen, in the order they were injected.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    /// Whether any fault is waiting: the writer reads only this while none is.
    armed: AtomicBool,
    queue: Mutex<Vec<Fault>>,
}

impl Faults {
    pub(crate) fn inject(&self, fault: Fault) {
        if fault.times == 0 {
            return;
        }
        self.queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(fault);
        self.armed.store(true, Ordering::Release);
    }

    /// The fault that hits this `op` now, if one is scripted.
    pub(crate) fn take(&self, op: FileOp) -> Option<Hit> {
        if !self.armed.load(Ordering::Acquire) {
            return None;
        }
        let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        let i = queue.iter().position(|f| f.op == op)?;
        let fault = &mut queue[i];
        if fault.skip > 0 {
            fault.skip -= 1;
            return None;
        }
        fault.times -= 1;
        let hit = Hit {
            written: fault.written,
            error: io::Error::from(fault.kind),
            hold: fault.hold.clone(),
        };
        if fault.times == 0 {
            queue.remove(i);
        }
        if queue.is_empty() {
            self.armed.store(false, Ordering::Release);
        }
        Some(hit)
    }

    pub(crate) fn clear(&self) {
        self.queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        self.armed.store(false, Ordering::Release);
    }
}
