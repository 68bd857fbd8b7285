//! Finding the line of a field path in a YAML document's text.
//!
//! serde reports lines only for errors it raises itself; validation errors come later, from
//! typed values. This best-effort locator walks block-style YAML by indentation (keys, and
//! `- ` list items) to find the line of `spec.filters[1].exact`. When it cannot follow a step
//! (flow style such as `{a: 1}`, unusual layouts) it stops at the deepest line it found.

use crate::field::Segment;

/// Where a path was found: the 1-based line within the text of the deepest segment reached,
/// and whether every segment was reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Found {
    pub line: usize,
    pub complete: bool,
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

fn is_content(line: &str) -> bool {
    let t = line.trim();
    !t.is_empty() && !t.starts_with('#')
}

fn is_dash(rest: &str) -> bool {
    rest == "-" || rest.starts_with("- ")
}

fn key_matches(rest: &str, key: &str) -> bool {
    let after = if let Some(r) = rest.strip_prefix(key) {
        r
    } else if let Some(r) = rest
        .strip_prefix('"')
        .and_then(|r| r.strip_prefix(key))
        .and_then(|r| r.strip_prefix('"'))
    {
        r
    } else if let Some(r) = rest
        .strip_prefix('\'')
        .and_then(|r| r.strip_prefix(key))
        .and_then(|r| r.strip_prefix('\''))
    {
        r
    } else {
        return false;
    };
    let after = after.trim_start_matches(' ');
    after == ":" || after.starts_with(": ") || after.starts_with(":\t")
}

/// Locates `path` in `text`; `None` when not even the first segment was found.
pub(crate) fn locate(text: &str, path: &[Segment]) -> Option<Found> {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let (mut start, mut end) = (0usize, lines.len());
    let mut parent: Option<usize> = None;
    let mut found: Option<usize> = None;
    let mut reached = 0;
    for seg in path {
        let Some(first) = (start..end).find(|&i| is_content(&lines[i])) else {
            break;
        };
        let child = indent(&lines[first]);
        match seg {
            Segment::Key(k) => {
                if parent.is_some_and(|p| child <= p) {
                    break;
                }
                let Some(kl) = (start..end).find(|&i| {
                    is_content(&lines[i])
                        && indent(&lines[i]) == child
                        && key_matches(&lines[i][child..], k)
                }) else {
                    break;
                };
                let mut e = kl + 1;
                while e < end {
                    let l = &lines[e];
                    if is_content(l) {
                        let ind = indent(l);
                        if ind < child || (ind == child && !is_dash(&l[ind..])) {
                            break;
                        }
                    }
                    e += 1;
                }
                found = Some(kl);
                (start, end, parent) = (kl + 1, e, Some(child));
            }
            Segment::Index(n) => {
                if !is_dash(&lines[first][child..]) {
                    break;
                }
                let items: Vec<usize> = (start..end)
                    .filter(|&i| {
                        let l = &lines[i];
                        is_content(l) && indent(l) == child && is_dash(&l[child..])
                    })
                    .collect();
                let Some(&il) = items.get(*n) else {
                    break;
                };
                let ie = items.get(n + 1).copied().unwrap_or(end);
                // Blank the dash so that the item's first key lines up with the others.
                lines[il].replace_range(child..child + 1, " ");
                found = Some(il);
                (start, end, parent) = (il, ie, Some(child));
            }
        }
        reached += 1;
    }
    found.map(|l| Found {
        line: l + 1,
        complete: reached == path.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::field::FieldPath;

    const DOC: &str = "\
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata:
  name: t
  annotations:
    \"ember.dev/max-in-flight\": \"0\"
spec:
  broker: default
  filters:
    - exact:
        type: a
    # comment
    - prefix: {source: b}
      extra: 1
  subscriber:
    uri: http://x
containers:
- image: a
  env:
  - name: A
  - name: B
";

    fn at(path: FieldPath) -> Option<Found> {
        locate(DOC, path.segments())
    }

    #[test]
    fn finds_keys_and_items() {
        let p = FieldPath::parse_keys("spec.broker");
        assert_eq!(at(p).map(|f| f.line), Some(8));
        let p = FieldPath::parse_keys("spec.filters").index(1).key("extra");
        assert_eq!(
            at(p),
            Some(Found {
                line: 14,
                complete: true
            })
        );
        let p = FieldPath::parse_keys("spec.filters")
            .index(0)
            .key("exact")
            .key("type");
        assert_eq!(at(p).map(|f| f.line), Some(11));
        let p = FieldPath::parse_keys("spec.subscriber.uri");
        assert_eq!(at(p).map(|f| f.line), Some(16));
        let p = FieldPath::parse_keys("metadata.annotations").key("ember.dev/max-in-flight");
        assert_eq!(at(p).map(|f| f.line), Some(6));
        let p = FieldPath::parse_keys("containers")
            .index(0)
            .key("env")
            .index(1)
            .key("name");
        assert_eq!(at(p).map(|f| f.line), Some(21));
    }

    #[test]
    fn stops_at_deepest_found() {
        let p = FieldPath::parse_keys("spec.filters")
            .index(1)
            .key("prefix")
            .key("source");
        assert_eq!(
            at(p),
            Some(Found {
                line: 13,
                complete: false
            })
        );
        assert_eq!(at(FieldPath::parse_keys("nope")), None);
        let p = FieldPath::parse_keys("spec.filters").index(5);
        assert_eq!(at(p).map(|f| f.line), Some(9));
    }
}
