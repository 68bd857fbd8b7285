//! Refusing a provider's retries: a window of recently seen event ids.
//!
//! Memory is bounded by a capacity: when full, the oldest id is forgotten first, so under a
//! flood of distinct ids the window shrinks rather than memory growing. An id is remembered
//! from its first sighting for `window`; sightings inside the window do not extend it.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// The default number of ids a [`DedupWindow`] remembers.
pub const DEFAULT_DEDUP_CAPACITY: usize = 100_000;

/// Ids seen within the last `window`, at most `capacity` of them.
#[derive(Debug)]
pub struct DedupWindow {
    window: Duration,
    capacity: usize,
    seen: Mutex<Seen>,
}

#[derive(Debug, Default)]
struct Seen {
    // id → when it was first seen; `order` holds the same ids oldest first, for eviction.
    at: HashMap<String, Instant>,
    order: VecDeque<(String, Instant)>,
}

impl DedupWindow {
    /// Remembers ids for `window`, at most `capacity` (at least 1) at once.
    pub fn new(window: Duration, capacity: usize) -> Self {
        DedupWindow {
            window,
            capacity: capacity.max(1),
            seen: Mutex::new(Seen::default()),
        }
    }

    /// True when `id` was seen within the window before `now` (a duplicate to drop with a
    /// 2xx); otherwise records it and returns false.
    ///
    /// Call [`forget`](Self::forget) when the event could then not be made durable, so the
    /// provider's retry is not taken for a duplicate.
    pub fn seen_before(&self, id: &str, now: Instant) -> bool {
        let mut s = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        // Expire from the front: `order` is in sighting order.
        while let Some((old, at)) = s.order.front() {
            if now.saturating_duration_since(*at) < self.window {
                break;
            }
            let old = old.clone();
            s.order.pop_front();
            s.at.remove(&old);
        }
        if let Some(at) = s.at.get(id)
            && now.saturating_duration_since(*at) < self.window
        {
            return true;
        }
        while s.at.len() >= self.capacity {
            let Some((old, _)) = s.order.pop_front() else {
                break;
            };
            s.at.remove(&old);
        }
        s.at.insert(id.to_owned(), now);
        s.order.push_back((id.to_owned(), now));
        false
    }

    /// Forgets `id`, so its next sighting counts as new.
    pub fn forget(&self, id: &str) {
        let mut s = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if s.at.remove(id).is_some() {
            s.order.retain(|(i, _)| i != id);
        }
    }

    /// How many ids are remembered now.
    pub fn len(&self) -> usize {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).at.len()
    }

    /// Whether no id is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
