//! Starting the project's binaries for a test, and stopping them on drop.

use std::fs::File;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::Error;

/// A binary of this workspace (`kube-sim`, `kubescribe-proxy`, …), found
/// beside the running test or e2e executable in cargo's target directory.
pub fn workspace_bin(name: &str) -> Result<PathBuf, Error> {
    let exe = std::env::current_exe()?;
    let mut dirs = Vec::new();
    if let Some(dir) = exe.parent() {
        dirs.push(dir.to_path_buf());
        if let Some(up) = dir.parent() {
            dirs.push(up.to_path_buf());
        }
    }
    dirs.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/debug"));
    dirs.iter()
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
        .ok_or_else(|| {
            format!(
                "binary {name} not found near {}: run `cargo build --workspace --bins`",
                exe.display()
            )
            .into()
        })
}

/// A free TCP port on 127.0.0.1 (bound and released; the caller binds it next).
pub fn free_port() -> Result<u16, Error> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A running child process, killed when dropped; its output goes to a log file.
pub struct Spawned {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Spawned {
    /// Starts `program` with `args`, logging stdout and stderr to `log_dir/<name>.log`.
    pub fn start(
        name: &str,
        program: &Path,
        args: &[String],
        envs: &[(&str, &str)],
        log_dir: &Path,
    ) -> Result<Self, Error> {
        let log = log_dir.join(format!("{name}.log"));
        let out = File::options().create(true).append(true).open(&log)?;
        let err = out.try_clone()?;
        let mut command = Command::new(program);
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        for (key, value) in envs {
            command.env(key, value);
        }
        let child = command
            .spawn()
            .map_err(|e| format!("starting {name} ({}): {e}", program.display()))?;
        Ok(Self {
            name: name.to_owned(),
            child,
            log,
        })
    }

    /// Waits until `addr` accepts TCP connections, failing early if the
    /// process exits (with the tail of its log in the error).
    pub fn wait_for_tcp(&mut self, addr: SocketAddr, timeout: Duration) -> Result<(), Error> {
        let deadline = Instant::now() + timeout;
        loop {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if let Some(status) = self.child.try_wait()? {
                return Err(format!(
                    "{} exited ({status}) before listening on {addr}:\n{}",
                    self.name,
                    self.log_tail()
                )
                .into());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{} did not listen on {addr} within {timeout:?}:\n{}",
                    self.name,
                    self.log_tail()
                )
                .into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until `path` exists (a unix socket, a file the process writes).
    pub fn wait_for_path(&mut self, path: &Path, timeout: Duration) -> Result<(), Error> {
        let deadline = Instant::now() + timeout;
        while !path.exists() {
            if let Some(status) = self.child.try_wait()? {
                return Err(format!(
                    "{} exited ({status}) before creating {}:\n{}",
                    self.name,
                    path.display(),
                    self.log_tail()
                )
                .into());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{} did not create {} within {timeout:?}",
                    self.name,
                    path.display()
                )
                .into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// The last 40 lines of the process's log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// The whole log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The process ID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Asks the process to stop (SIGTERM) and waits up to `timeout`, then kills it.
    pub fn stop(&mut self, timeout: Duration) -> Result<(), Error> {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.child.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        self.kill()
    }

    /// Kills the process at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) -> Result<(), Error> {
        let _ = self.child.kill();
        self.child.wait()?;
        Ok(())
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
