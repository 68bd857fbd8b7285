//! The process runtime: a revision's instance is a local process, under Knative's runtime
//! contract (`../shared/spec/knative/serving/runtime-contract.md`).
//!
//! - Environment: `PORT` (a free loopback port Ember picks: instances share the host's
//!   network), `K_SERVICE`, `K_CONFIGURATION`, `K_REVISION`, and the container's `env`.
//! - stdin is at EOF; stdout and stderr go to Ember's log, one line per record, tagged with the
//!   revision and the instance, and the last lines are kept for failure messages.
//! - Readiness: the probe (a TCP connect to `PORT` by default) is tried tightly while the
//!   instance starts — from 50 µs apart, doubling to 5 ms — so a process that binds fast is
//!   ready the moment it does; a process that exits first fails the start with its exit status
//!   and its last lines.
//! - Stop: SIGTERM to its process group, SIGKILL after the grace period.
//! - Never an orphan: each instance leads its own process group and is killed by the kernel if
//!   Ember dies (`PR_SET_PDEATHSIG`, which fires when the *thread* that spawned it ends: instances
//!   are spawned from the runtime's worker threads, which live as long as Ember).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Command;
use tokio::sync::watch;

use crate::revision::{Invoker, Probe, RevisionSpec};

/// Lines of output kept per instance for failure messages.
const KEPT_LINES: usize = 20;

/// Why an instance did not start.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StartError {
    /// The program could not be started.
    #[error("cannot start {program:?}: {error}")]
    Spawn {
        /// The program.
        program: String,
        /// Why.
        error: String,
    },
    /// It exited before it was ready.
    #[error("exited before it was ready ({status}){}", last_lines(.output))]
    Exited {
        /// How it exited.
        status: String,
        /// Its last lines of output.
        output: Vec<String>,
    },
    /// It was not ready within the progress deadline.
    #[error("not ready within {deadline:?}{}", last_lines(.output))]
    Deadline {
        /// The deadline.
        deadline: Duration,
        /// Its last lines of output.
        output: Vec<String>,
    },
}

fn last_lines(lines: &[String]) -> String {
    if lines.is_empty() {
        String::new()
    } else {
        format!("; last output: {}", lines.join(" | "))
    }
}

/// A running instance of a revision.
#[derive(Debug)]
pub struct Instance {
    /// Its number within the revision (for logs).
    pub id: u64,
    /// Where it listens (`127.0.0.1:PORT`).
    pub addr: SocketAddr,
    /// Its process id (and process group id).
    pub pid: u32,
    /// Its exit, once it has exited.
    exited: watch::Receiver<Option<ExitStatus>>,
    /// For an instance with no process of its own (a `command` invoker): how it is marked
    /// stopped.
    exit_tx: Option<watch::Sender<Option<ExitStatus>>>,
    /// For an invoker instance: its adapter's server.
    adapter: Option<tokio::task::AbortHandle>,
    /// For a container: how it is stopped and cleaned up.
    container: Option<crate::container::Handle>,
    output: Arc<Mutex<VecDeque<String>>>,
}

/// The command that runs `spec`'s program under the runtime contract: its arguments and
/// environment with `K_SERVICE`, `K_CONFIGURATION`, `K_REVISION`, its working directory, in a
/// process group of its own that dies with Ember. The caller sets `PORT` and the standard
/// streams.
pub(crate) fn command(spec: &RevisionSpec) -> Command {
    let program = spec.argv.first().cloned().unwrap_or_default();
    let mut cmd = Command::new(&program);
    cmd.args(spec.argv.iter().skip(1))
        .envs(spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("K_CONFIGURATION", &spec.configuration)
        .env("K_REVISION", &spec.name)
        .kill_on_drop(true);
    // A Configuration written on its own belongs to no Service: no K_SERVICE then.
    if !spec.service.is_empty() {
        cmd.env("K_SERVICE", &spec.service);
    }
    if let Some(dir) = &spec.working_dir {
        cmd.current_dir(dir);
    }
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setpgid(0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // Ember may have died between fork and prctl.
            if libc::getppid() == 1 {
                libc::_exit(1);
            }
            Ok(())
        });
    }
    cmd
}

impl Instance {
    /// An invoker instance: an adapter serving at `addr`, with the process `pid` behind it (0:
    /// none of its own — `exit_tx` marks it stopped).
    pub(crate) fn adapter(
        id: u64,
        addr: SocketAddr,
        pid: u32,
        exited: watch::Receiver<Option<ExitStatus>>,
        exit_tx: Option<watch::Sender<Option<ExitStatus>>>,
        output: Arc<Mutex<VecDeque<String>>>,
        server: tokio::task::AbortHandle,
    ) -> Instance {
        Instance {
            id,
            addr,
            pid,
            exited,
            exit_tx,
            adapter: Some(server),
            container: None,
            output,
        }
    }

    /// A container instance: the runtime's process `pid` (under its shell), serving at `addr`.
    pub(crate) fn container(
        id: u64,
        addr: SocketAddr,
        pid: u32,
        exited: watch::Receiver<Option<ExitStatus>>,
        output: Arc<Mutex<VecDeque<String>>>,
        handle: crate::container::Handle,
    ) -> Instance {
        Instance {
            id,
            addr,
            pid,
            exited,
            exit_tx: None,
            adapter: None,
            container: Some(handle),
            output,
        }
    }

    /// Starts instance `id` of `spec` and waits until it is ready.
    pub async fn start(spec: &RevisionSpec, id: u64) -> Result<Instance, StartError> {
        if spec.invoker != Invoker::Http {
            return crate::invoker::start(spec, id).await;
        }
        let port = free_port().map_err(|e| StartError::Spawn {
            program: spec.argv.first().cloned().unwrap_or_default(),
            error: format!("no free port: {e}"),
        })?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let program = spec.argv.first().cloned().unwrap_or_default();
        let mut cmd = command(spec);
        cmd.env("PORT", port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| StartError::Spawn {
            program: program.clone(),
            error: e.to_string(),
        })?;
        let pid = child.id().unwrap_or_default();
        let output = Arc::new(Mutex::new(VecDeque::with_capacity(KEPT_LINES)));
        let tag = Arc::new(format!("{}/{}", spec.namespace, spec.name));
        if let Some(out) = child.stdout.take() {
            tokio::spawn(forward(out, "stdout", tag.clone(), id, output.clone()));
        }
        if let Some(err) = child.stderr.take() {
            tokio::spawn(forward(err, "stderr", tag.clone(), id, output.clone()));
        }
        let (exit_tx, exited) = watch::channel(None);
        tokio::spawn(async move {
            let status = child.wait().await.ok();
            let _ = exit_tx.send(status);
        });
        let instance = Instance {
            id,
            addr,
            pid,
            exited,
            exit_tx: None,
            adapter: None,
            container: None,
            output,
        };
        let started = Instant::now();
        match instance
            .wait_ready(&spec.probe, spec.progress_deadline)
            .await
        {
            Ok(()) => {
                tracing::info!(revision = %tag, instance = id, pid, port, took = ?started.elapsed(), "instance ready");
                Ok(instance)
            }
            Err(e) => {
                instance.stop(Duration::from_secs(1)).await;
                Err(e)
            }
        }
    }

    /// Probes until ready, the process exits, or the deadline passes.
    pub(crate) async fn wait_ready(
        &self,
        probe: &Probe,
        deadline: Duration,
    ) -> Result<(), StartError> {
        let until = tokio::time::Instant::now() + deadline;
        let mut pause = Duration::from_micros(50);
        let mut exited = self.exited.clone();
        loop {
            let status = *exited.borrow_and_update();
            if let Some(status) = status {
                // Let the output readers catch the last lines.
                tokio::time::sleep(Duration::from_millis(20)).await;
                return Err(StartError::Exited {
                    status: describe(status),
                    output: self.last_output(),
                });
            }
            if probe_once(probe, self.addr).await {
                return Ok(());
            }
            if tokio::time::Instant::now() >= until {
                return Err(StartError::Deadline {
                    deadline,
                    output: self.last_output(),
                });
            }
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = exited.changed() => {}
            }
            pause = (pause * 2).min(Duration::from_millis(5));
        }
    }

    /// Whether the process has exited, and how.
    pub fn exit_status(&self) -> Option<String> {
        (*self.exited.borrow()).map(describe)
    }

    /// Resolves when the process exits, with how.
    pub async fn exited(&self) -> String {
        let mut rx = self.exited.clone();
        loop {
            let status = *rx.borrow_and_update();
            if let Some(status) = status {
                return describe(status);
            }
            if rx.changed().await.is_err() {
                return "gone".to_owned();
            }
        }
    }

    /// The last lines it wrote.
    pub fn last_output(&self) -> Vec<String> {
        self.output
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    /// SIGTERM to its process group; SIGKILL after `grace` if it has not exited.
    pub async fn stop(&self, grace: Duration) {
        if let Some(server) = &self.adapter {
            server.abort();
        }
        if let Some(tx) = &self.exit_tx {
            use std::os::unix::process::ExitStatusExt;
            let _ = tx.send(Some(ExitStatus::from_raw(0)));
            return;
        }
        if self.exit_status().is_some() {
            return;
        }
        if let Some(container) = &self.container {
            // Through the runtime: SIGTERM to the container's process, SIGKILL after the grace.
            container.kill("TERM").await;
            if !self.exited_within(grace).await {
                container.kill("KILL").await;
                self.exited_within(Duration::from_secs(5)).await;
            }
            return;
        }
        signal_group(self.pid, libc::SIGTERM);
        let mut rx = self.exited.clone();
        let exited = tokio::time::timeout(grace, async {
            while rx.borrow_and_update().is_none() {
                if rx.changed().await.is_err() {
                    break;
                }
            }
        })
        .await;
        if exited.is_err() {
            signal_group(self.pid, libc::SIGKILL);
        }
    }
}

impl Instance {
    /// Whether it exits within `wait`.
    async fn exited_within(&self, wait: Duration) -> bool {
        let mut rx = self.exited.clone();
        tokio::time::timeout(wait, async {
            while rx.borrow_and_update().is_none() {
                if rx.changed().await.is_err() {
                    break;
                }
            }
        })
        .await
        .is_ok()
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        if let Some(server) = &self.adapter {
            server.abort();
        }
        if let Some(container) = &self.container {
            // The container, its overlay and its bundle go with the instance (the shell under
            // it ends when its container does).
            container.clean_up();
            return;
        }
        // The child itself is killed on drop; its process group too.
        if self.exit_status().is_none() {
            signal_group(self.pid, libc::SIGKILL);
        }
    }
}

pub(crate) fn signal_group(pid: u32, signal: i32) {
    if let Ok(pid) = i32::try_from(pid)
        && pid > 0
    {
        // SAFETY: kill(2) with a negative pid signals that process group.
        unsafe {
            libc::kill(-pid, signal);
        }
    }
}

pub(crate) fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        _ => status.to_string(),
    }
}

/// A loopback port free right now.
pub(crate) fn free_port() -> std::io::Result<u16> {
    let l = std::net::TcpListener::bind(("127.0.0.1", 0))?;
    Ok(l.local_addr()?.port())
}

async fn probe_once(probe: &Probe, addr: SocketAddr) -> bool {
    match probe {
        Probe::Tcp => tokio::net::TcpStream::connect(addr).await.is_ok(),
        Probe::Http { path } => http_probe(addr, path).await,
    }
}

async fn http_probe(addr: SocketAddr, path: &str) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(Ok(mut stream)) =
        tokio::time::timeout(Duration::from_secs(1), tokio::net::TcpStream::connect(addr)).await
    else {
        return false;
    };
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: ember-probe\r\nConnection: close\r\n\r\n"
    );
    if stream.write_all(request.as_bytes()).await.is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    match tokio::time::timeout(Duration::from_secs(1), stream.read_exact(&mut head)).await {
        // `HTTP/1.1 2xx` or `3xx`.
        Ok(Ok(_)) => matches!(head.get(9), Some(b'2' | b'3')),
        _ => false,
    }
}

/// Copies one output stream into the log, line by line, keeping the last lines.
pub(crate) async fn forward(
    stream: impl AsyncRead + Unpin,
    name: &'static str,
    revision: Arc<String>,
    instance: u64,
    kept: Arc<Mutex<VecDeque<String>>>,
) {
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        tracing::info!(target: "ember::function", revision = %revision, instance, stream = name, "{line}");
        let mut kept = kept.lock().unwrap_or_else(|e| e.into_inner());
        if kept.len() == KEPT_LINES {
            kept.pop_front();
        }
        kept.push_back(line);
    }
}
