//! Kubernetes resource quantities as `resources.limits` writes them: memory in bytes (`128Mi`,
//! `1G`, `1e9`, `512974848`) and CPU in thousandths (`500m`, `0.5`, `2`).

/// Bytes for a memory quantity.
pub fn memory_bytes(q: &str) -> Option<u64> {
    let q = q.trim();
    let (number, factor): (&str, f64) = [
        ("Ki", 1024f64),
        ("Mi", 1024f64.powi(2)),
        ("Gi", 1024f64.powi(3)),
        ("Ti", 1024f64.powi(4)),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
    ]
    .iter()
    .find_map(|(suffix, f)| q.strip_suffix(suffix).map(|n| (n, *f)))
    .unwrap_or((q, 1.0));
    let n: f64 = number.parse().ok()?;
    (n.is_finite() && n > 0.0).then(|| (n * factor).ceil() as u64)
}

/// Thousandths of a CPU for a CPU quantity.
pub fn cpu_millis(q: &str) -> Option<u64> {
    let q = q.trim();
    let millis = match q.strip_suffix('m') {
        Some(m) => m.parse::<f64>().ok()?,
        None => q.parse::<f64>().ok()? * 1000.0,
    };
    (millis.is_finite() && millis >= 1.0).then(|| millis.round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        assert_eq!(memory_bytes("128Mi"), Some(128 << 20));
        assert_eq!(memory_bytes("1G"), Some(1_000_000_000));
        assert_eq!(memory_bytes("1e9"), Some(1_000_000_000));
        assert_eq!(memory_bytes("512974848"), Some(512_974_848));
        assert_eq!(memory_bytes("lots"), None);
        assert_eq!(memory_bytes("-1Mi"), None);
        assert_eq!(cpu_millis("500m"), Some(500));
        assert_eq!(cpu_millis("0.5"), Some(500));
        assert_eq!(cpu_millis("2"), Some(2000));
        assert_eq!(cpu_millis("0"), None);
        assert_eq!(cpu_millis("fast"), None);
    }
}
