//! A set of byte strings that finds, for a probe string, every member that is a prefix of it.
//!
//! The members are kept sorted, each with a link to its longest proper prefix in the set (its
//! *parent*). For a probe `v`, let `s` be the greatest member `≤ v`: every member that is a
//! prefix of `v` lies between itself and `v` in sorted order, so it is `≤ s` and hence a prefix
//! of `s` no longer than the common prefix of `s` and `v`. One binary search finds `s`, then the
//! parent chain from `s` yields exactly the matching members, longest first — no allocation and
//! no per-length probing. Suffixes use the same set over reversed strings.

use super::Span;

/// "No parent".
const NONE: u32 = u32::MAX;

#[derive(Debug)]
struct Member {
    key: Box<[u8]>,
    /// Index of the longest other member that is a prefix of `key`, or [`NONE`].
    parent: u32,
    /// The triggers anchored on this member.
    span: Span,
}

/// Sorted members with parent links; immutable once built.
#[derive(Debug, Default)]
pub(crate) struct AffixSet {
    members: Box<[Member]>,
}

impl AffixSet {
    /// Builds the set from distinct keys, sorted ascending, each with its triggers.
    pub(crate) fn from_sorted(keys: Vec<(Box<[u8]>, Span)>) -> Self {
        let mut members: Vec<Member> = Vec::with_capacity(keys.len());
        // The members on the current path from the root: each a prefix of the next.
        let mut path: Vec<u32> = Vec::new();
        for (i, (key, span)) in keys.into_iter().enumerate() {
            while let Some(&top) = path.last() {
                let top_key: &[u8] = &members[top as usize].key;
                if key.starts_with(top_key) {
                    break;
                }
                path.pop();
            }
            members.push(Member {
                key,
                parent: path.last().copied().unwrap_or(NONE),
                span,
            });
            path.push(index(i));
        }
        Self {
            members: members.into_boxed_slice(),
        }
    }

    /// Whether the set has no members.
    pub(crate) fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Calls `found` with the triggers of every member that is a prefix of `probe`.
    pub(crate) fn for_each_prefix_of(&self, probe: &[u8], mut found: impl FnMut(Span)) {
        let after = self.members.partition_point(|m| *m.key <= *probe);
        let Some(mut i) = after.checked_sub(1) else {
            return;
        };
        let common = common_prefix_len(&self.members[i].key, probe);
        loop {
            let member = &self.members[i];
            if member.key.len() <= common {
                found(member.span);
            }
            if member.parent == NONE {
                return;
            }
            i = member.parent as usize;
        }
    }
}

fn common_prefix_len(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

fn index(i: usize) -> u32 {
    u32::try_from(i).expect("fewer than 2^32 - 1 members")
}
