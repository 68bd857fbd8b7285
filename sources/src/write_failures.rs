//! Reporting a journal's writes that keep failing (a full disk) without flooding the log: the
//! first failure of each cause (error kind) warns, repeats are only counted, and the first
//! success after failures says, once, how many there were.

use std::fs;
use std::io::{self, Write as _};

/// The failure state of one journal's writes; kept by its one writer.
#[derive(Debug, Default)]
pub(crate) struct WriteFailures {
    /// The cause last reported and the failures since writes last succeeded.
    failing: Option<(io::ErrorKind, u64)>,
}

impl WriteFailures {
    /// Records a failure; true when its cause is new and should be reported.
    pub(crate) fn failed(&mut self, kind: io::ErrorKind) -> bool {
        match &mut self.failing {
            Some((current, failures)) => {
                *failures += 1;
                let new = *current != kind;
                *current = kind;
                new
            }
            None => {
                self.failing = Some((kind, 1));
                true
            }
        }
    }

    /// Records a success; returns how many writes had failed before it, if any did.
    pub(crate) fn succeeded(&mut self) -> Option<u64> {
        self.failing.take().map(|(_, failures)| failures)
    }
}

/// Writes to a journal file, failing as a unit test scripts: the next `n` writes write half
/// their bytes and fail with "no space left". Zero-sized and a plain `write_all` outside tests.
#[derive(Debug, Default, Clone)]
pub(crate) struct WriteFaults {
    #[cfg(test)]
    failing: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl WriteFaults {
    /// `file.write_all(bytes)`, or the scripted failure.
    pub(crate) fn write_all(&self, file: &mut fs::File, bytes: &[u8]) -> io::Result<()> {
        #[cfg(test)]
        if self
            .failing
            .fetch_update(
                std::sync::atomic::Ordering::AcqRel,
                std::sync::atomic::Ordering::Acquire,
                |n| n.checked_sub(1),
            )
            .is_ok()
        {
            file.write_all(&bytes[..bytes.len() / 2])?;
            return Err(io::ErrorKind::StorageFull.into());
        }
        file.write_all(bytes)
    }

    /// Makes the next `n` writes fail.
    #[cfg(test)]
    pub(crate) fn fail_next(&self, n: usize) {
        self.failing.store(n, std::sync::atomic::Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use io::ErrorKind::{Other, StorageFull};

    #[test]
    fn one_report_per_cause_and_a_count_on_recovery() {
        let mut f = WriteFailures::default();
        assert_eq!(f.succeeded(), None);
        assert!(f.failed(StorageFull));
        assert!(!f.failed(StorageFull));
        assert!(!f.failed(StorageFull));
        assert!(f.failed(Other), "a new cause is reported");
        assert_eq!(f.succeeded(), Some(4));
        assert_eq!(f.succeeded(), None, "recovery is reported once");
        assert!(f.failed(StorageFull), "a later outage is reported again");
    }
}
