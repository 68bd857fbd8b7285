//! The container runtime: an instance of a revision whose container names an `image` runs in
//! an OCI runtime (`runc`), under the same runtime contract, activator and autoscaler as a
//! process.
//!
//! - **Root filesystem**: the image, unpacked once in the image store, is the lower layer of an
//!   overlay per instance (its upper layer in the instance's bundle directory), so instances
//!   share it and never change it. `securityContext.readOnlyRootFilesystem` makes the root
//!   read-only (with a tmpfs at `/tmp`).
//! - **Isolation**: new PID, mount, IPC and UTS namespaces; the host's network namespace, so
//!   the instance listens on the loopback port Ember assigns (`PORT`) like a process does —
//!   no bridge, no NAT, no port mapping to pay for on each request; the trade-off is that the
//!   container sees the host's interfaces, and a port it binds on `0.0.0.0` is open on them.
//!   Docker's default capabilities, `no_new_privileges`.
//! - **Limits**: `resources.limits.memory` and `.cpu` become cgroup limits where the host has
//!   the controllers; where it does not, the revision's log says so and it runs without.
//! - **Stop**: SIGTERM through the runtime, SIGKILL after the grace period. No container
//!   outlives Ember: each runs under a small shell that dies with Ember (the kernel sends it
//!   SIGTERM when Ember's thread ends, even on SIGKILL) and then kills and deletes its
//!   container; whatever is left from before (a machine crash) is killed, deleted and
//!   unmounted when Ember starts.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ember_images::{Image, ImageStore, Overrides, StoreSettings};
use serde_json::json;
use tokio::process::Command;
use tokio::sync::watch;

use crate::process::{Instance, StartError};
use crate::revision::RevisionSpec;

/// The shell each container runs under: it starts `runc run` in the background and waits; on
/// SIGTERM (sent by the kernel when Ember dies, or by Ember) it kills and deletes the container,
/// unmounts the instance's root filesystem and removes its bundle.
const SHIM: &str = r#"gone() { "$1" --root "$2" delete -f "$4" >/dev/null 2>&1; umount -l "$3/rootfs" 2>/dev/null; rm -rf "$3"; }
trap '"$1" --root "$2" kill "$4" KILL 2>/dev/null; gone "$@"; exit 143' TERM INT HUP
"$1" --root "$2" run --bundle "$3" "$4" </dev/null &
wait $!
"#;

/// What a revision's container asks of the runtime, besides its image.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ContainerSpec {
    /// The image as written.
    pub image: String,
    /// When to ask the registry.
    pub pull_policy: ember_images::PullPolicy,
    /// `securityContext.readOnlyRootFilesystem`.
    pub read_only: bool,
    /// `resources.limits.memory`, in bytes.
    pub memory_limit: Option<u64>,
    /// `resources.limits.cpu`, in thousandths of a CPU.
    pub cpu_millis: Option<u64>,
    /// `command` (over the image's `Entrypoint`).
    pub command: Vec<String>,
    /// `args` (over its `Cmd`).
    pub args: Vec<String>,
    /// Registry credentials from its `imagePullSecrets` (set by whoever resolves Secrets).
    pub credentials: Option<ember_images::registry::Credentials>,
}

/// Images and the OCI runtime, for every revision with an image.
pub struct Containers {
    /// The image store.
    pub store: ImageStore,
    runtime: Result<Runtime, String>,
    bundles: PathBuf,
    /// Revisions holding each image digest: what eviction keeps.
    in_use: Mutex<std::collections::HashMap<String, usize>>,
}

/// A revision's hold on its image: the store does not evict it while held.
pub struct ImageHold {
    containers: Arc<Containers>,
    digest: String,
}

impl Drop for ImageHold {
    fn drop(&mut self) {
        let mut in_use = self
            .containers
            .in_use
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(n) = in_use.get_mut(&self.digest) {
            *n -= 1;
            if *n == 0 {
                in_use.remove(&self.digest);
            }
        }
    }
}

#[derive(Debug, Clone)]
struct Runtime {
    program: PathBuf,
    /// runc's state directory: every container in it is Ember's.
    root: PathBuf,
}

impl std::fmt::Debug for Containers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Containers")
            .field("runtime", &self.runtime)
            .finish()
    }
}

fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/bin", "/sbin", "/bin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Whether the machine mounts cgroups in the hybrid layout (v1 controllers with a v2
/// `unified` hierarchy), which crun 1.8 refuses.
fn hybrid_cgroups() -> bool {
    Path::new("/sys/fs/cgroup/unified").is_dir()
        && !Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

/// The OCI runtime to use: `runc` when installed; `crun` only where it works. `Err` says why
/// images cannot run on this machine (what `ember validate` reports for a Service with one).
pub fn runtime_program() -> Result<PathBuf, String> {
    choose_runtime(on_path("runc"), on_path("crun"), hybrid_cgroups())
}

/// runc when there is one; crun unless the cgroup layout is hybrid (crun 1.8 refuses it).
fn choose_runtime(
    runc: Option<PathBuf>,
    crun: Option<PathBuf>,
    hybrid: bool,
) -> Result<PathBuf, String> {
    if let Some(program) = runc {
        return Ok(program);
    }
    if let Some(program) = crun {
        if hybrid {
            return Err(format!(
                "no usable OCI runtime: crun ({}) refuses this machine's hybrid cgroup layout (v1 controllers with a v2 'unified' mount); install runc (Debian/Ubuntu: apt install runc)",
                program.display()
            ));
        }
        return Ok(program);
    }
    Err(
        "no OCI runtime installed: container images need runc (Debian/Ubuntu: apt install runc)"
            .to_owned(),
    )
}

/// How a missing privilege is told apart from a missing runtime.
const NO_PERMISSION: &str = "no permission:";

fn detect_runtime(root: PathBuf) -> Result<Runtime, String> {
    let program = runtime_program()?;
    // SAFETY: geteuid cannot fail.
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        return Err(format!(
            "{NO_PERMISSION} Ember runs as uid {euid}; container images need root here (each instance's overlay mount and runc's namespaces); run Ember as root, or run the function as a local process (command without image)"
        ));
    }
    Ok(Runtime { program, root })
}

impl Containers {
    /// Opens the image store and finds the runtime under `data_dir`; kills, deletes and
    /// unmounts whatever an earlier Ember left running.
    pub fn open(data_dir: &Path, settings: StoreSettings) -> std::io::Result<Self> {
        let store = ImageStore::open(data_dir, settings)?;
        let dir = data_dir.join("containers");
        let bundles = dir.join("bundles");
        std::fs::create_dir_all(&bundles)?;
        let runtime = detect_runtime(dir.join("runc"));
        let c = Containers {
            store,
            runtime,
            bundles,
            in_use: Mutex::default(),
        };
        c.clean_leftovers();
        Ok(c)
    }

    /// Holds `digest` for a revision, then evicts (in the background) what the cache budget
    /// leaves no room for among the images no revision holds.
    pub fn hold(self: &Arc<Self>, digest: &str) -> ImageHold {
        *self
            .in_use
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(digest.to_owned())
            .or_default() += 1;
        let me = self.clone();
        tokio::task::spawn_blocking(move || {
            let keep: std::collections::HashSet<String> = me
                .in_use
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .keys()
                .cloned()
                .collect();
            me.store.evict(&keep);
        });
        ImageHold {
            containers: self.clone(),
            digest: digest.to_owned(),
        }
    }

    /// Why containers cannot run here, if they cannot.
    pub fn problem(&self) -> Option<&str> {
        self.runtime.as_ref().err().map(String::as_str)
    }

    /// Knative-style reason for [`Containers::problem`]: `NoPermission` when Ember lacks the
    /// privileges, else `RuntimeMissing`.
    pub fn problem_reason(&self) -> &'static str {
        match &self.runtime {
            Err(p) if p.starts_with(NO_PERMISSION) => "NoPermission",
            _ => "RuntimeMissing",
        }
    }

    fn clean_leftovers(&self) {
        if let Ok(rt) = &self.runtime {
            let listed = std::process::Command::new(&rt.program)
                .arg("--root")
                .arg(&rt.root)
                .args(["list", "-q"])
                .stderr(Stdio::null())
                .output();
            if let Ok(out) = listed {
                for id in String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .filter(|l| !l.is_empty())
                {
                    tracing::warn!(
                        container = id,
                        "a container left from an earlier run: killed and deleted"
                    );
                    let _ = std::process::Command::new(&rt.program)
                        .arg("--root")
                        .arg(&rt.root)
                        .args(["delete", "-f", id])
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .status();
                }
            }
        }
        if let Ok(entries) = std::fs::read_dir(&self.bundles) {
            for e in entries.flatten() {
                unmount(&e.path().join("rootfs"));
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
}

fn unmount(path: &Path) {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return;
    };
    // SAFETY: a valid C string; MNT_DETACH never blocks.
    unsafe {
        libc::umount2(c.as_ptr(), libc::MNT_DETACH);
    }
}

fn mount_overlay(lower: &Path, upper: &Path, work: &Path, target: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c =
        |p: &Path| std::ffi::CString::new(p.as_os_str().as_bytes()).map_err(std::io::Error::other);
    let options = std::ffi::CString::new(format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.display(),
        upper.display(),
        work.display()
    ))
    .map_err(std::io::Error::other)?;
    let fstype = std::ffi::CString::new("overlay").map_err(std::io::Error::other)?;
    let target = c(target)?;
    // SAFETY: valid C strings; overlay takes its options as a string.
    let rc = unsafe {
        libc::mount(
            fstype.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            options.as_ptr().cast(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// `uid:gid` for the image's `User` (numbers, or names in the image's `/etc/passwd` and
/// `/etc/group`); root when unset.
fn user_ids(rootfs: &Path, user: Option<&str>) -> Result<(u32, u32), String> {
    let Some(user) = user.map(str::trim).filter(|u| !u.is_empty()) else {
        return Ok((0, 0));
    };
    let (u, g) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let lookup = |file: &str, name: &str| -> Option<(u32, u32)> {
        let text = std::fs::read_to_string(rootfs.join(file)).ok()?;
        text.lines().find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.first() == Some(&name)).then(|| {
                (
                    f.get(2).and_then(|x| x.parse().ok()).unwrap_or(0),
                    f.get(3).and_then(|x| x.parse().ok()).unwrap_or(0),
                )
            })
        })
    };
    let (uid, primary) = match u.parse::<u32>() {
        Ok(uid) => (uid, lookup_by_uid(rootfs, uid).unwrap_or(uid)),
        Err(_) => lookup("etc/passwd", u)
            .ok_or_else(|| format!("user {u:?} of the image is not in its /etc/passwd"))?,
    };
    let gid = match g {
        None => primary,
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => lookup("etc/group", g)
                .map(|(gid, _)| gid)
                .ok_or_else(|| format!("group {g:?} of the image is not in its /etc/group"))?,
        },
    };
    Ok((uid, gid))
}

fn lookup_by_uid(rootfs: &Path, uid: u32) -> Option<u32> {
    let text = std::fs::read_to_string(rootfs.join("etc/passwd")).ok()?;
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.get(2)?.parse::<u32>().ok()? == uid).then(|| f.get(3)?.parse().ok())?
    })
}

const CAPABILITIES: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Whether the host has the cgroup controller `name` (v1 hierarchy or v2 controllers).
fn has_controller(name: &str) -> bool {
    Path::new("/sys/fs/cgroup").join(name).is_dir()
        || std::fs::read_to_string("/sys/fs/cgroup/cgroup.controllers")
            .is_ok_and(|c| c.split_whitespace().any(|x| x == name))
}

/// The bundle's `config.json` (OCI runtime spec 1.0).
fn runtime_config(
    spec: &RevisionSpec,
    cs: &ContainerSpec,
    image: &Image,
    port: u16,
    id: &str,
) -> Result<serde_json::Value, String> {
    let mut env: Vec<(String, String)> = spec.env.clone();
    env.push(("PORT".into(), port.to_string()));
    env.push(("K_CONFIGURATION".into(), spec.configuration.clone()));
    env.push(("K_REVISION".into(), spec.name.clone()));
    if !spec.service.is_empty() {
        env.push(("K_SERVICE".into(), spec.service.clone()));
    }
    let process = image
        .config
        .process(&Overrides {
            command: cs.command.clone(),
            args: cs.args.clone(),
            env,
            working_dir: spec
                .working_dir
                .as_ref()
                .map(|d| d.to_string_lossy().into_owned()),
        })
        .ok_or_else(|| {
            format!(
                "{}: the image has no Entrypoint or Cmd, and the container no command",
                cs.image
            )
        })?;
    let (uid, gid) = user_ids(&image.rootfs, image.config.user.as_deref())?;
    let mut resources = serde_json::Map::new();
    if let Some(bytes) = cs.memory_limit {
        if has_controller("memory") {
            resources.insert("memory".into(), json!({"limit": bytes}));
        } else {
            tracing::warn!(revision = %spec.name, "resources.limits.memory: this host has no memory cgroup controller; running without the limit");
        }
    }
    if let Some(millis) = cs.cpu_millis {
        if has_controller("cpu") {
            resources.insert(
                "cpu".into(),
                json!({"quota": millis * 100, "period": 100_000}),
            );
        } else {
            tracing::warn!(revision = %spec.name, "resources.limits.cpu: this host has no cpu cgroup controller; running without the limit");
        }
    }
    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc"}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]}),
    ];
    if cs.read_only {
        mounts.push(json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", "mode=1777"]}));
    }
    // The host's resolver, as the host's network is the container's.
    for file in ["/etc/resolv.conf", "/etc/hosts"] {
        if Path::new(file).exists() {
            mounts.push(json!({"destination": file, "type": "bind", "source": file, "options": ["rbind", "ro"]}));
        }
    }
    let hostname: String = spec.name.chars().take(63).collect();
    Ok(json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": uid, "gid": gid},
            "args": process.argv,
            "env": process.env,
            "cwd": process.cwd,
            "capabilities": {
                "bounding": CAPABILITIES,
                "effective": CAPABILITIES,
                "permitted": CAPABILITIES,
            },
            "noNewPrivileges": true,
        },
        "root": {"path": "rootfs", "readonly": cs.read_only},
        "hostname": hostname,
        "mounts": mounts,
        "linux": {
            "namespaces": [{"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}],
            "cgroupsPath": format!("/ember/{id}"),
            "resources": resources,
            "maskedPaths": ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"],
        },
    }))
}

/// A running container's handle: how it is stopped and cleaned up.
#[derive(Debug)]
pub(crate) struct Handle {
    runtime: Runtime,
    id: String,
    bundle: PathBuf,
}

impl Handle {
    async fn runc(&self, args: &[&str]) {
        let _ = Command::new(&self.runtime.program)
            .arg("--root")
            .arg(&self.runtime.root)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await;
    }

    /// Sends `signal` (`TERM`, `KILL`) to the container's process.
    pub(crate) async fn kill(&self, signal: &str) {
        self.runc(&["kill", &self.id, signal]).await;
    }

    /// Removes what the instance left (the container, its overlay and bundle).
    pub(crate) fn clean_up(&self) {
        let _ = std::process::Command::new(&self.runtime.program)
            .arg("--root")
            .arg(&self.runtime.root)
            .args(["delete", "-f", &self.id])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        unmount(&self.bundle.join("rootfs"));
        let _ = std::fs::remove_dir_all(&self.bundle);
    }
}

/// Starts instance `id` of `spec` from `image` and waits until it is ready.
pub(crate) async fn start(
    containers: &Containers,
    spec: &RevisionSpec,
    cs: &ContainerSpec,
    image: &Image,
    id: u64,
) -> Result<Instance, StartError> {
    let fail = |error: String| StartError::Spawn {
        program: cs.image.clone(),
        error,
    };
    let runtime = containers.runtime.clone().map_err(&fail)?;
    let port = crate::process::free_port().map_err(|e| fail(format!("no free port: {e}")))?;
    let name: String = format!("{}-{}-{id}", spec.namespace, spec.name)
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let bundle = containers.bundles.join(&name);
    let _ = std::fs::remove_dir_all(&bundle);
    let handle = Handle {
        runtime: runtime.clone(),
        id: name.clone(),
        bundle: bundle.clone(),
    };
    let prepared = (|| -> Result<(), String> {
        for d in ["rootfs", "upper", "work"] {
            std::fs::create_dir_all(bundle.join(d))
                .map_err(|e| format!("creating the bundle: {e}"))?;
        }
        mount_overlay(
            &image.rootfs,
            &bundle.join("upper"),
            &bundle.join("work"),
            &bundle.join("rootfs"),
        )
        .map_err(|e| {
            format!(
                "mounting the instance's root filesystem (overlay; Ember must run as root): {e}"
            )
        })?;
        let config = runtime_config(spec, cs, image, port, &name)?;
        std::fs::write(bundle.join("config.json"), config.to_string())
            .map_err(|e| format!("writing the bundle: {e}"))?;
        Ok(())
    })();
    if let Err(e) = prepared {
        handle.clean_up();
        return Err(fail(e));
    }
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(SHIM)
        .arg("ember-container")
        .arg(&runtime.program)
        .arg(&runtime.root)
        .arg(&bundle)
        .arg(&name)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setpgid(0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // SIGTERM, not SIGKILL: the shell catches it and takes its container down.
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::getppid() == 1 {
                libc::_exit(1);
            }
            Ok(())
        });
    }
    let started = Instant::now();
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            handle.clean_up();
            return Err(fail(format!("starting the runtime: {e}")));
        }
    };
    let pid = child.id().unwrap_or_default();
    let output = Arc::new(Mutex::new(VecDeque::new()));
    let tag = Arc::new(format!("{}/{}", spec.namespace, spec.name));
    if let Some(out) = child.stdout.take() {
        tokio::spawn(crate::process::forward(
            out,
            "stdout",
            tag.clone(),
            id,
            output.clone(),
        ));
    }
    if let Some(err) = child.stderr.take() {
        tokio::spawn(crate::process::forward(
            err,
            "stderr",
            tag.clone(),
            id,
            output.clone(),
        ));
    }
    let (exit_tx, exited) = watch::channel(None);
    tokio::spawn(async move {
        let status = child.wait().await.ok();
        let _ = exit_tx.send(status);
    });
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let instance = Instance::container(id, addr, pid, exited, output, handle);
    match instance
        .wait_ready(&spec.probe, spec.progress_deadline)
        .await
    {
        Ok(()) => {
            tracing::info!(revision = %tag, instance = id, image = %image.pinned, port, took = ?started.elapsed(), "container ready");
            Ok(instance)
        }
        Err(e) => {
            instance.stop(Duration::from_secs(1)).await;
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runc_first_and_crun_only_where_it_works() {
        let runc = Some(PathBuf::from("/usr/sbin/runc"));
        let crun = Some(PathBuf::from("/usr/bin/crun"));
        assert_eq!(
            choose_runtime(runc.clone(), crun.clone(), true),
            Ok(runc.clone().unwrap())
        );
        assert_eq!(
            choose_runtime(None, crun.clone(), false),
            Ok(crun.clone().unwrap())
        );
        let hybrid = choose_runtime(None, crun, true).unwrap_err();
        assert!(
            hybrid.contains("hybrid cgroup layout") && hybrid.contains("install runc"),
            "{hybrid}"
        );
        let none = choose_runtime(None, None, false).unwrap_err();
        assert!(none.contains("apt install runc"), "{none}");
    }

    #[test]
    fn image_users_resolve_in_the_image() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\nweb:x:1000:1001::/srv:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("etc/group"), "root:x:0:\nstaff:x:50:\n").unwrap();
        let ids = |u| user_ids(dir.path(), u);
        assert_eq!(ids(None), Ok((0, 0)));
        assert_eq!(ids(Some("web")), Ok((1000, 1001)));
        assert_eq!(ids(Some("1000")), Ok((1000, 1001)));
        assert_eq!(ids(Some("web:staff")), Ok((1000, 50)));
        assert_eq!(ids(Some("42:7")), Ok((42, 7)));
        assert!(ids(Some("nobody")).unwrap_err().contains("nobody"));
    }
}
