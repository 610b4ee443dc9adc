//! A guard for a child process started by a test.
//!
//! Its stdout and stderr go to files (appended, so a restarted process keeps
//! one history) in the test's directory. On drop the process is killed and
//! reaped; if the test is panicking, the tail of both logs is printed first,
//! so a failure shows what the process said.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How many bytes of each log to print when a test fails.
const TAIL_BYTES: u64 = 6000;

pub struct ChildGuard {
    name: String,
    child: Option<Child>,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl ChildGuard {
    /// Spawn `cmd` with stdin closed and its output captured to
    /// `LOG_DIR/NAME.stdout.log` and `LOG_DIR/NAME.stderr.log`.
    pub fn spawn(name: &str, cmd: &mut Command, log_dir: &Path) -> ChildGuard {
        let stdout = log_dir.join(format!("{name}.stdout.log"));
        let stderr = log_dir.join(format!("{name}.stderr.log"));
        let open = |p: &Path| {
            OpenOptions::new().create(true).append(true).open(p).unwrap_or_else(|e| panic!("open {}: {e}", p.display()))
        };
        let child = cmd
            .stdin(Stdio::null())
            .stdout(open(&stdout))
            .stderr(open(&stderr))
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name} ({cmd:?}): {e}"));
        ChildGuard { name: name.to_string(), child: Some(child), stdout, stderr }
    }

    /// `Some(status)` if the process has exited (or was stopped).
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        match self.child.as_mut() {
            Some(c) => c.try_wait().expect("try_wait"),
            None => Some(ExitStatus::default()),
        }
    }

    pub fn is_running(&mut self) -> bool {
        self.exit_status().is_none()
    }

    /// The process id, while the guard still owns the process.
    pub fn id(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// SIGTERM, then SIGKILL if it has not exited within `grace`.
    pub fn stop(&mut self, grace: Duration) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        if child.try_wait().ok().flatten().is_none() {
            let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
            let start = Instant::now();
            while start.elapsed() < grace {
                if let Ok(Some(status)) = child.try_wait() {
                    return Some(status);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = child.kill();
        child.wait().ok()
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn stdout_path(&self) -> &Path {
        &self.stdout
    }

    pub fn stderr_path(&self) -> &Path {
        &self.stderr
    }

    /// The last few KiB of both logs, labelled.
    pub fn log_tail(&self) -> String {
        let mut out = String::new();
        for (label, path) in [("stdout", &self.stdout), ("stderr", &self.stderr)] {
            out.push_str(&format!(
                "----- {} {label} ({}) -----\n{}\n",
                self.name,
                path.display(),
                tail(path, TAIL_BYTES)
            ));
        }
        out
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}(set OCIREGISTRY_KEEP_TEST_DIRS=1 to keep these files)", self.log_tail());
        }
        self.kill();
    }
}

/// The last `n` bytes of a file, lossily decoded.
pub fn tail(path: &Path, n: u64) -> String {
    let Ok(mut f) = File::open(path) else {
        return String::from("<no log>");
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(n)));
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

/// Run a short-lived command to completion; panic with its output if it
/// fails. Returns stdout.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd.stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    if !out.status.success() {
        panic!(
            "{cmd:?} failed with {}\nstdout:\n{}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Run a short-lived command; `Err(stdout+stderr)` if it fails.
pub fn try_run(cmd: &mut Command) -> Result<String, String> {
    let out = cmd.stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if out.status.success() {
        Ok(text)
    } else {
        Err(format!("{cmd:?} failed with {}:\n{text}", out.status))
    }
}
