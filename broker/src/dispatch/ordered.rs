//! Ordered delivery: one event at a time per `partitionkey` (events without one share the key
//! `""`), in log order; different keys do not wait for each other.

use std::collections::{HashMap, VecDeque};

/// Per partition key: whether an event is under way, and the events waiting behind it.
#[derive(Debug)]
pub struct KeyQueues<T> {
    keys: HashMap<String, VecDeque<T>>,
    waiting: usize,
}

impl<T> Default for KeyQueues<T> {
    fn default() -> Self {
        Self {
            keys: HashMap::new(),
            waiting: 0,
        }
    }
}

impl<T> KeyQueues<T> {
    /// Admits `item` under `key`: `Some(item)` when it may start now (nothing under way for its
    /// key), `None` when it was queued behind the one under way.
    pub fn admit(&mut self, key: &str, item: T) -> Option<T> {
        match self.keys.get_mut(key) {
            Some(queue) => {
                queue.push_back(item);
                self.waiting += 1;
                None
            }
            None => {
                self.keys.insert(key.to_owned(), VecDeque::new());
                Some(item)
            }
        }
    }

    /// The item under way for `key` finished: the next one to start for that key, if any.
    pub fn finished(&mut self, key: &str) -> Option<T> {
        let next = self.keys.get_mut(key).and_then(VecDeque::pop_front);
        match next {
            Some(item) => {
                self.waiting -= 1;
                Some(item)
            }
            None => {
                self.keys.remove(key);
                None
            }
        }
    }

    /// Items queued behind another of their key.
    pub fn waiting(&self) -> usize {
        self.waiting
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_at_a_time_per_key_in_order() {
        let mut q = KeyQueues::default();
        assert_eq!(q.admit("a", 1), Some(1));
        assert_eq!(q.admit("b", 2), Some(2), "another key does not wait");
        assert_eq!(q.admit("a", 3), None);
        assert_eq!(q.admit("a", 4), None);
        assert_eq!(q.waiting(), 2);
        assert_eq!(q.finished("a"), Some(3));
        assert_eq!(q.finished("b"), None);
        assert_eq!(q.finished("a"), Some(4));
        assert_eq!(q.finished("a"), None);
        assert_eq!(q.waiting(), 0);
        assert_eq!(q.admit("a", 5), Some(5), "the key is free again");
    }
}
