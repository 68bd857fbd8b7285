//! The low-water mark of one reader of the log: the lowest offset it has not finished. A
//! trigger's durable position is this mark, so a restart never skips an event that was not
//! delivered (or given up on), and repeats at most the ones finished above it.

use std::collections::BTreeSet;

/// Offsets started and not finished, and how far the reader has seen.
#[derive(Debug)]
pub struct LowWater {
    unfinished: BTreeSet<u64>,
    /// The offset after everything seen, matching or not.
    seen: u64,
}

impl LowWater {
    /// A reader starting at `position` with nothing under way.
    pub fn new(position: u64) -> Self {
        Self {
            unfinished: BTreeSet::new(),
            seen: position,
        }
    }

    /// The reader has looked at `offset` (whether or not it wants it).
    pub fn saw(&mut self, offset: u64) {
        self.seen = self.seen.max(offset + 1);
    }

    /// Everything below `offset` has been seen (another reader covered it).
    pub fn saw_up_to(&mut self, offset: u64) {
        self.seen = self.seen.max(offset);
    }

    /// Work on `offset` started (it was seen too).
    pub fn started(&mut self, offset: u64) {
        self.saw(offset);
        self.unfinished.insert(offset);
    }

    /// Work on `offset` finished.
    pub fn finished(&mut self, offset: u64) {
        self.unfinished.remove(&offset);
    }

    /// The lowest offset not finished: the first unfinished one, or the offset after
    /// everything seen.
    pub fn mark(&self) -> u64 {
        self.unfinished.first().copied().unwrap_or(self.seen)
    }

    /// How many offsets are under way.
    pub fn unfinished(&self) -> usize {
        self.unfinished.len()
    }

    /// Whether nothing is under way.
    pub fn is_idle(&self) -> bool {
        self.unfinished.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mark_is_the_lowest_unfinished_offset() {
        let mut w = LowWater::new(10);
        assert_eq!(w.mark(), 10);
        w.saw(10);
        w.started(11);
        w.started(12);
        w.saw(13);
        assert_eq!(w.mark(), 11);
        w.finished(12);
        assert_eq!(w.mark(), 11, "a later finish does not move the mark");
        w.finished(11);
        assert_eq!(w.mark(), 14);
        assert!(w.is_idle());
        w.saw_up_to(20);
        assert_eq!(w.mark(), 20);
        w.saw_up_to(15);
        assert_eq!(w.mark(), 20, "never backwards");
    }
}
