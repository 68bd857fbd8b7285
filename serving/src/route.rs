//! A Service's Route: which revision each request goes to.
//!
//! `spec.traffic` targets a `revisionName` or the latest ready revision (`latestRevision: true`),
//! with a `percent` (summing to 100) and an optional `tag`. Without a traffic block, 100 % goes
//! to the latest *ready* revision: a new revision takes traffic only once an instance of it has
//! been ready, so a rollout answers no request with an error. Requests are spread by smooth
//! weighted round robin (nginx's): over any 100 consecutive requests a 50/50 split sends exactly
//! 50 each way, and the two interleave. A tag names its target alone, at
//! `{tag}-{service}.{namespace}.{domain}`.

use std::sync::{Arc, Mutex};

use crate::activator::Revision;

/// One traffic target, resolved.
#[derive(Clone)]
pub struct Target {
    /// The revision.
    pub revision: Arc<Revision>,
    /// Its share, 0–100.
    pub percent: u32,
    /// Its tag, if any.
    pub tag: Option<String>,
    /// Whether it follows the latest ready revision.
    pub latest: bool,
    /// For a `latest` target of a Route written on its own: the revisions of its
    /// Configuration it follows, newest first (else the route's own list).
    pub follow: Vec<Arc<Revision>>,
}

/// The targets of a Route and the round-robin state.
pub struct Route {
    targets: Vec<Target>,
    /// The revisions a `latest` target may follow, newest first: it goes to the first that has
    /// been ready, else to its own revision (the newest, which requests then wait for).
    latest: Vec<Arc<Revision>>,
    current: Mutex<Vec<i64>>,
}

impl Route {
    /// A route over `targets`.
    pub fn new(targets: Vec<Target>) -> Self {
        Self::with_latest(targets, Vec::new())
    }

    /// A route over `targets` whose `latest` targets follow the first ready of `latest`.
    pub fn with_latest(targets: Vec<Target>, latest: Vec<Arc<Revision>>) -> Self {
        let n = targets.len();
        Route {
            targets,
            latest,
            current: Mutex::new(vec![0; n]),
        }
    }

    fn resolve(&self, t: &Target) -> Arc<Revision> {
        let candidates = if t.follow.is_empty() {
            &self.latest
        } else {
            &t.follow
        };
        if t.latest
            && let Some(r) = candidates.iter().find(|r| r.is_ready())
        {
            return r.clone();
        }
        t.revision.clone()
    }

    /// The targets.
    pub fn targets(&self) -> &[Target] {
        &self.targets
    }

    /// The revision for the next request (smooth weighted round robin), if any target has a
    /// share.
    pub fn pick(&self) -> Option<Arc<Revision>> {
        let total: i64 = self.targets.iter().map(|t| i64::from(t.percent)).sum();
        if total == 0 {
            return None;
        }
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        let mut best = None;
        for (i, t) in self.targets.iter().enumerate() {
            current[i] += i64::from(t.percent);
            if best.is_none_or(|b: usize| current[i] > current[b]) {
                best = Some(i);
            }
        }
        let b = best?;
        current[b] -= total;
        Some(self.resolve(&self.targets[b]))
    }

    /// The revisions the untagged traffic goes to now, with their percents.
    pub fn shares(&self) -> Vec<(Arc<Revision>, u32)> {
        let mut out: Vec<(Arc<Revision>, u32)> = Vec::new();
        for t in self.targets.iter().filter(|t| t.percent > 0) {
            let r = self.resolve(t);
            match out.iter_mut().find(|(o, _)| Arc::ptr_eq(o, &r)) {
                Some((_, p)) => *p += t.percent,
                None => out.push((r, t.percent)),
            }
        }
        out
    }

    /// The revisions the untagged traffic goes to now.
    pub fn revisions(&self) -> Vec<Arc<Revision>> {
        self.shares().into_iter().map(|(r, _)| r).collect()
    }

    /// Gives each revision of `all` the share of its Service's queued events it counts: its
    /// percent of the untagged traffic (0 when it gets none).
    pub fn share_queue(&self, all: impl Iterator<Item = Arc<Revision>>) {
        let shares = self.shares();
        for r in all {
            let p = shares
                .iter()
                .find(|(o, _)| Arc::ptr_eq(o, &r))
                .map_or(0, |(_, p)| *p);
            r.set_share(p);
        }
    }

    /// The revision tagged `tag`.
    pub fn tagged(&self, tag: &str) -> Option<Arc<Revision>> {
        self.targets
            .iter()
            .find(|t| t.tag.as_deref() == Some(tag))
            .map(|t| self.resolve(t))
    }
}

/// What a `Host` header names under `domain`: `(tag, service, namespace)`.
///
/// `{service}.{namespace}.{domain}` or `{tag}-{service}.{namespace}.{domain}`; the port, if
/// any, is ignored. A tagged host is told apart by trying the longest service name first
/// (`known` says whether a `(service, namespace)` exists).
pub fn parse_host<'a>(
    host: &'a str,
    domain: &str,
    known: impl Fn(&str, &str) -> bool,
) -> Option<(Option<&'a str>, &'a str, &'a str)> {
    let host = host.rsplit_once(':').map_or(host, |(h, p)| {
        if p.chars().all(|c| c.is_ascii_digit()) {
            h
        } else {
            host
        }
    });
    let rest = host.strip_suffix(domain)?.strip_suffix('.')?;
    let (first, namespace) = rest.rsplit_once('.')?;
    if known(first, namespace) {
        return Some((None, first, namespace));
    }
    // `{tag}-{service}`: a tag holds no `-`? It may; try each split, service longest first.
    let mut at = 0;
    while let Some(i) = first[at..].find('-') {
        let (tag, service) = (&first[..at + i], &first[at + i + 1..]);
        if !tag.is_empty() && known(service, namespace) {
            return Some((Some(tag), service, namespace));
        }
        at += i + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_name_a_service_or_a_tag_of_it() {
        let known = |s: &str, ns: &str| ns == "default" && (s == "hello" || s == "my-fn");
        assert_eq!(
            parse_host("hello.default.localhost:8080", "localhost", known),
            Some((None, "hello", "default"))
        );
        assert_eq!(
            parse_host("blue-hello.default.localhost", "localhost", known),
            Some((Some("blue"), "hello", "default"))
        );
        assert_eq!(
            parse_host("my-fn.default.localhost", "localhost", known),
            Some((None, "my-fn", "default"))
        );
        assert_eq!(
            parse_host("v-2-my-fn.default.localhost", "localhost", known),
            Some((Some("v-2"), "my-fn", "default"))
        );
        assert_eq!(
            parse_host("other.default.localhost", "localhost", known),
            None
        );
        assert_eq!(
            parse_host("hello.default.example.com", "localhost", known),
            None
        );
        assert_eq!(parse_host("127.0.0.1:8080", "localhost", known), None);
    }
}
