//! Applying image layers to a root filesystem, as OCI's image spec describes it
//! (`../shared/spec` has no copy; see the OCI image-spec `layer.md`): each layer is a tar
//! archive — uncompressed, gzip or zstd, told apart by its first bytes — whose entries are
//! added over the layers below, with whiteouts: `.wh.NAME` removes `NAME` from the layers
//! below, `.wh..wh..opq` empties its directory of what the layers below put there.
//!
//! Nothing is ever written outside the root: an entry's path is resolved component by
//! component *inside* the root — `..` never climbs above it, and a symlink met on the way is
//! followed as the container would see it (an absolute target starts at the root) — so a
//! layer that names `../../etc/passwd`, or plants `evil -> /etc` and then writes
//! `evil/passwd`, writes inside the root or not at all. An entry whose path has a `..`
//! component is refused outright (no honest layer has one), and the whole layer with it.
//! Ownership, modes and modification times are kept; device nodes are skipped.

use std::collections::HashSet;
use std::fs;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Component, Path, PathBuf};

/// Why a layer was refused.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// An entry's path climbs out of the root.
    #[error("layer entry {0:?} escapes the image's root (a '..' component); the layer is refused")]
    Escapes(String),
    /// Too many symlinks on one path.
    #[error("layer entry {0:?}: too many levels of symbolic links")]
    SymlinkLoop(String),
    /// Reading or writing failed.
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// The compression a layer's bytes start with.
fn decompressed(reader: impl Read + 'static) -> io::Result<Box<dyn Read>> {
    let mut reader = BufReader::new(reader);
    let head = reader.fill_buf()?;
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok(Box::new(flate2::read::MultiGzDecoder::new(reader)))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        let decoder = ruzstd::decoding::StreamingDecoder::new(reader)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
        Ok(Box::new(decoder))
    } else {
        Ok(Box::new(reader))
    }
}

/// Applies one layer (its blob, in any supported compression) over `root`.
pub fn apply_layer(root: &Path, blob: impl Read + 'static) -> Result<(), UnpackError> {
    let mut archive = tar::Archive::new(decompressed(blob)?);
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(true);
    archive.set_preserve_mtime(true);
    archive.set_unpack_xattrs(false);
    // What this layer itself created: an opaque whiteout empties only what lies below it.
    let mut ours: HashSet<PathBuf> = HashSet::new();
    // Directories' times are set after their contents are written.
    let mut dirs: Vec<(PathBuf, tar::Header)> = Vec::new();
    for entry in archive.entries()? {
        let mut entry = entry?;
        let raw = entry.path()?.into_owned();
        let name = raw.to_string_lossy().into_owned();
        let rel = relative(&raw).ok_or_else(|| UnpackError::Escapes(name.clone()))?;
        if rel.as_os_str().is_empty() {
            continue; // "./" itself
        }
        let file_name = rel
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let parent = rel.parent().unwrap_or(Path::new(""));
        if file_name == ".wh..wh..opq" {
            let dir = resolve(root, parent, &name)?;
            if let Ok(children) = fs::read_dir(&dir) {
                for child in children.flatten() {
                    let path = child.path();
                    if !ours.contains(&path) {
                        remove(&path)?;
                    }
                }
            }
            continue;
        }
        if let Some(hidden) = file_name.strip_prefix(".wh.") {
            let dir = resolve(root, parent, &name)?;
            remove(&dir.join(hidden))?;
            continue;
        }
        let dir = resolve(root, parent, &name)?;
        fs::create_dir_all(&dir)?;
        let dst = dir.join(rel.file_name().unwrap_or_default());
        let kind = entry.header().entry_type();
        // Whatever was there (a file, a symlink a lower layer planted) is replaced, never
        // written through — except a directory over a directory, which merges.
        match fs::symlink_metadata(&dst) {
            Ok(m) if m.is_dir() && kind.is_dir() => {}
            Ok(_) => remove(&dst)?,
            Err(_) => {}
        }
        ours.insert(dst.clone());
        match kind {
            tar::EntryType::Link => {
                let target = entry
                    .link_name()?
                    .map(|t| t.into_owned())
                    .unwrap_or_default();
                let target_rel = relative(&target)
                    .ok_or_else(|| UnpackError::Escapes(target.to_string_lossy().into_owned()))?;
                let target_dir =
                    resolve(root, target_rel.parent().unwrap_or(Path::new("")), &name)?;
                fs::hard_link(
                    target_dir.join(target_rel.file_name().unwrap_or_default()),
                    &dst,
                )?;
            }
            tar::EntryType::Block | tar::EntryType::Char | tar::EntryType::Fifo => {
                tracing::debug!(entry = %name, "device node in a layer: skipped");
            }
            tar::EntryType::Directory => {
                fs::create_dir_all(&dst)?;
                entry.unpack(&dst)?;
                dirs.push((dst, entry.header().clone()));
            }
            _ => {
                entry.unpack(&dst)?;
            }
        }
    }
    // Directory times last: writing into a directory changes its mtime.
    for (dir, header) in dirs.into_iter().rev() {
        if let Ok(mtime) = header.mtime() {
            let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(mtime);
            if let Ok(f) = fs::File::open(&dir) {
                let _ = f.set_modified(t);
            }
        }
    }
    Ok(())
}

/// `path` as a relative path of normal components (`./a/b` → `a/b`, `/a` → `a`); `None` when
/// it has a `..`.
fn relative(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
            Component::ParentDir => return None,
        }
    }
    Some(out)
}

/// The host path of directory `rel` inside `root`, following symlinks as the container would
/// (absolute targets from the root; `..` never above it). Components that do not exist yet are
/// appended as they are.
fn resolve(root: &Path, rel: &Path, entry: &str) -> Result<PathBuf, UnpackError> {
    let mut parts: Vec<PathBuf> = Vec::new(); // resolved components below root
    let mut todo: Vec<std::ffi::OsString> = rel
        .components()
        .rev()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_owned()),
            _ => None,
        })
        .collect();
    let mut links = 0;
    while let Some(c) = todo.pop() {
        if c == ".." {
            parts.pop();
            continue;
        }
        if c == "." {
            continue;
        }
        let mut here = root.to_path_buf();
        here.extend(&parts);
        here.push(&c);
        match fs::symlink_metadata(&here) {
            Ok(m) if m.file_type().is_symlink() => {
                links += 1;
                if links > 40 {
                    return Err(UnpackError::SymlinkLoop(entry.to_owned()));
                }
                let target = fs::read_link(&here)?;
                if target.is_absolute() {
                    parts.clear();
                }
                for t in target.components().rev() {
                    match t {
                        Component::Normal(n) => todo.push(n.to_owned()),
                        Component::ParentDir => todo.push("..".into()),
                        _ => {}
                    }
                }
            }
            _ => parts.push(PathBuf::from(c)),
        }
    }
    let mut out = root.to_path_buf();
    out.extend(parts);
    Ok(out)
}

/// Removes a file, symlink or directory tree; absent is fine.
fn remove(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tar layer of `(path, kind)` entries: `f:TEXT` a file, `d` a directory, `l:TARGET` a
    /// symlink, `h:TARGET` a hard link.
    pub(crate) fn layer(entries: &[(&str, &str)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, kind) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_mode(0o755);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(1_700_000_000);
            let (t, rest) = kind.split_once(':').unwrap_or((kind, ""));
            match t {
                "f" => {
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_size(rest.len() as u64);
                    // Bypass the builder's path checks: layers are untrusted input.
                    set_raw_path(&mut h, path);
                    h.set_cksum();
                    b.append(&h, rest.as_bytes()).unwrap();
                    continue;
                }
                "d" => h.set_entry_type(tar::EntryType::Directory),
                "l" => {
                    h.set_entry_type(tar::EntryType::Symlink);
                    h.set_link_name(rest).unwrap();
                }
                "h" => {
                    h.set_entry_type(tar::EntryType::Link);
                    h.set_link_name(rest).unwrap();
                }
                _ => unreachable!(),
            }
            h.set_size(0);
            set_raw_path(&mut h, path);
            h.set_cksum();
            b.append(&h, io::empty()).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn set_raw_path(h: &mut tar::Header, path: &str) {
        let name = &mut h.as_old_mut().name;
        name.fill(0);
        name[..path.len()].copy_from_slice(path.as_bytes());
    }

    fn gz(data: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn read(root: &Path, p: &str) -> Option<String> {
        fs::read_to_string(root.join(p)).ok()
    }

    #[test]
    fn layers_stack_with_whiteouts_and_opaque_directories() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("rootfs");
        fs::create_dir(&root).unwrap();
        apply_layer(
            &root,
            io::Cursor::new(layer(&[
                ("etc/", "d"),
                ("etc/a", "f:a1"),
                ("etc/b", "f:b1"),
                ("var/", "d"),
                ("var/cache/", "d"),
                ("var/cache/old", "f:old"),
                ("bin/", "d"),
                ("bin/busybox", "f:bb"),
                ("bin/sh", "l:busybox"),
                ("bin/ash", "h:bin/busybox"),
            ])),
        )
        .unwrap();
        // Gzip-compressed, as most registries hold layers.
        apply_layer(
            &root,
            io::Cursor::new(gz(&layer(&[
                ("etc/.wh.a", "f:"),
                ("etc/b", "f:b2"),
                ("var/cache/", "d"),
                ("var/cache/.wh..wh..opq", "f:"),
                ("var/cache/new", "f:new"),
            ]))),
        )
        .unwrap();
        assert_eq!(read(&root, "etc/a"), None, "whited out");
        assert_eq!(read(&root, "etc/b").as_deref(), Some("b2"), "replaced");
        assert_eq!(
            read(&root, "var/cache/old"),
            None,
            "opaque directory emptied"
        );
        assert_eq!(
            read(&root, "var/cache/new").as_deref(),
            Some("new"),
            "its own entry kept"
        );
        assert_eq!(
            fs::read_link(root.join("bin/sh")).unwrap(),
            Path::new("busybox")
        );
        assert_eq!(read(&root, "bin/ash").as_deref(), Some("bb"), "hard link");
    }

    #[test]
    fn ownership_and_modes_are_kept() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o640);
        h.set_uid(1000);
        h.set_gid(2000);
        h.set_mtime(1_700_000_000);
        h.set_size(2);
        b.append_data(&mut h, "srv/data", &b"ok"[..]).unwrap();
        let dir = tempfile::tempdir().unwrap();
        apply_layer(dir.path(), io::Cursor::new(b.into_inner().unwrap())).unwrap();
        let m = fs::metadata(dir.path().join("srv/data")).unwrap();
        assert_eq!(m.permissions().mode() & 0o7777, 0o640);
        assert_eq!(m.mtime(), 1_700_000_000);
        // Ownership needs root (as Ember runs to use images); elsewhere the owner is ours.
        let root = fs::metadata("/proc/self").is_ok_and(|p| p.uid() == 0);
        if root {
            assert_eq!((m.uid(), m.gid()), (1000, 2000));
        }
    }

    #[test]
    fn zstd_and_uncompressed_layers() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("rootfs");
        fs::create_dir(&root).unwrap();
        let plain = layer(&[("a", "f:plain")]);
        apply_layer(&root, io::Cursor::new(plain)).unwrap();
        let zst = ruzstd::encoding::compress_to_vec(
            &layer(&[("b", "f:zstd")])[..],
            ruzstd::encoding::CompressionLevel::Fastest,
        );
        apply_layer(&root, io::Cursor::new(zst)).unwrap();
        assert_eq!(read(&root, "a").as_deref(), Some("plain"));
        assert_eq!(read(&root, "b").as_deref(), Some("zstd"));
    }

    #[test]
    fn a_dot_dot_entry_is_refused_and_nothing_lands_outside() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("rootfs");
        fs::create_dir(&root).unwrap();
        let err = apply_layer(&root, io::Cursor::new(layer(&[("../escaped", "f:x")]))).unwrap_err();
        assert!(matches!(err, UnpackError::Escapes(_)), "{err}");
        assert!(!dir.path().join("escaped").exists());
        let err = apply_layer(
            &root,
            io::Cursor::new(layer(&[("a/../../escaped2", "f:x")])),
        )
        .unwrap_err();
        assert!(matches!(err, UnpackError::Escapes(_)), "{err}");
        assert!(!dir.path().join("escaped2").exists());
    }

    #[test]
    fn a_symlink_out_of_the_root_is_followed_inside_it() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        fs::create_dir(&outside).unwrap();
        let root = dir.path().join("rootfs");
        fs::create_dir(&root).unwrap();
        let abs = outside.to_string_lossy().into_owned();
        // One layer plants links pointing out (absolute, and relative climbing out), the next
        // writes through them.
        apply_layer(
            &root,
            io::Cursor::new(layer(&[
                ("evil", &format!("l:{abs}")),
                ("sneaky", "l:../../../../../../outside"),
            ])),
        )
        .unwrap();
        apply_layer(
            &root,
            io::Cursor::new(layer(&[
                ("evil/pwned", "f:x"),
                ("sneaky/pwned2", "f:y"),
                ("evil", "f:replaced"),
            ])),
        )
        .unwrap();
        assert!(
            fs::read_dir(&outside).unwrap().next().is_none(),
            "nothing written outside the root"
        );
        // Written where the container would see them: inside the root.
        assert_eq!(
            read(&root, &format!("{}/pwned", abs.trim_start_matches('/'))).as_deref(),
            Some("x")
        );
        assert_eq!(read(&root, "outside/pwned2").as_deref(), Some("y"));
        // A file over a symlink replaces the link rather than writing through it.
        assert_eq!(read(&root, "evil").as_deref(), Some("replaced"));
    }
}
