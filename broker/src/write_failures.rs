//! Reporting writes that keep failing (a full disk, a quota, a failing device) without flooding
//! the log: the first failure of each cause warns, repeats of it are only counted, and the first
//! success after failures says, once, how many there were.
//!
//! A cause is the error's [`io::ErrorKind`]: a disk that fills up and then starts failing with
//! I/O errors warns twice, a disk that stays full for an hour warns once.

use std::io;

/// What a failure should lead to, as decided by [`WriteFailures::failed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Report {
    /// The first failure of this cause: say so.
    Warn,
    /// A repeat of the cause already reported: count it, say nothing.
    Suppress,
}

/// The failure state of one kind of write (a broker's cursors, say). Not thread-safe: keep it
/// behind the lock that serialises those writes, or in the one task that does them.
#[derive(Debug, Default)]
pub(crate) struct WriteFailures {
    /// The cause being suppressed and the failures since writes last succeeded.
    failing: Option<(io::ErrorKind, u64)>,
}

impl WriteFailures {
    /// Records a failure of kind `kind`; warns the caller to report it if its cause is new.
    pub(crate) fn failed(&mut self, kind: io::ErrorKind) -> Report {
        match &mut self.failing {
            Some((current, failures)) if *current == kind => {
                *failures += 1;
                Report::Suppress
            }
            Some((current, failures)) => {
                *current = kind;
                *failures += 1;
                Report::Warn
            }
            None => {
                self.failing = Some((kind, 1));
                Report::Warn
            }
        }
    }

    /// Records a success; returns how many writes had failed before it, if any did.
    pub(crate) fn succeeded(&mut self) -> Option<u64> {
        self.failing.take().map(|(_, failures)| failures)
    }
}

/// Whether `error` says the file system has no room (full, or over a quota).
pub(crate) fn is_out_of_space(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use io::ErrorKind::{QuotaExceeded, StorageFull};

    #[test]
    fn one_warning_per_cause_and_a_count_on_recovery() {
        let mut f = WriteFailures::default();
        assert_eq!(f.succeeded(), None, "nothing failed yet");
        assert_eq!(f.failed(StorageFull), Report::Warn);
        for _ in 0..100 {
            assert_eq!(f.failed(StorageFull), Report::Suppress);
        }
        assert_eq!(f.failed(QuotaExceeded), Report::Warn, "a new cause warns");
        assert_eq!(f.failed(QuotaExceeded), Report::Suppress);
        assert_eq!(f.succeeded(), Some(103));
        assert_eq!(f.succeeded(), None, "recovery is reported once");
        assert_eq!(
            f.failed(StorageFull),
            Report::Warn,
            "a later outage warns again"
        );
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn full_disks_and_quotas_are_out_of_space() {
        assert!(is_out_of_space(&io::Error::from(StorageFull)));
        assert!(is_out_of_space(&io::Error::from_raw_os_error(28))); // ENOSPC
        assert!(is_out_of_space(&io::Error::from_raw_os_error(122))); // EDQUOT
        assert!(!is_out_of_space(&io::Error::from_raw_os_error(5))); // EIO
    }
}
