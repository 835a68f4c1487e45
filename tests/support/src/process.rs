//! Child processes for tests: started with their output in a log file,
//! waited on with the log's tail in every error, killed and reaped on drop;
//! and the workspace's own binaries, found beside the running test.

use std::fs::File;
use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use crate::net::{accepts_tcp, poll_until};
use crate::Error;

/// A binary of this workspace (`kube-sim`, `kubescribe-proxy`, …), found
/// beside the running test or e2e executable in cargo's target directory.
pub fn workspace_bin(name: &str) -> Result<PathBuf, Error> {
    let exe = std::env::current_exe().map_err(Error::io("locating the test executable"))?;
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
        .ok_or_else(|| Error::WorkspaceBinMissing {
            name: name.to_owned(),
            searched: exe.display().to_string(),
        })
}

/// Runs `command` (stdin closed, stdout and stderr captured) until it exits, killing it after
/// `timeout`, which is an error naming the program (a client that hangs is
/// killed, and the test says so instead of hanging with it).
pub fn with_deadline(command: &mut Command, timeout: Duration) -> Result<Output, Error> {
    let program = command.get_program().to_string_lossy().into_owned();
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| Error::Spawn {
            name: program.clone(),
            program: program.clone().into(),
            source,
        })?;
    let reader = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            bytes
        })
    };
    let stdout = reader(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = reader(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child
            .try_wait()
            .map_err(Error::io(format!("waiting for {program}")))?
        {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(Error::Timeout {
                name: program,
                waiting_for: "finishing".to_owned(),
                timeout,
                log_tail: String::new(),
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Ok(Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    })
}

/// A running child process, killed and reaped when dropped; its stdout and
/// stderr go to a log file.
#[derive(Debug)]
pub struct Spawned {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Spawned {
    /// Starts `program` with `args` (and `envs` added to the environment),
    /// logging stdout and stderr to `log_dir/<name>.log`.
    pub fn start(
        name: &str,
        program: &Path,
        args: &[String],
        envs: &[(&str, &str)],
        log_dir: &Path,
    ) -> Result<Self, Error> {
        let log = log_dir.join(format!("{name}.log"));
        let out = File::options()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(Error::io(format!("opening {}", log.display())))?;
        let err = out
            .try_clone()
            .map_err(Error::io(format!("sharing {}", log.display())))?;
        let mut command = Command::new(program);
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        for (key, value) in envs {
            command.env(key, value);
        }
        let child = command.spawn().map_err(|source| Error::Spawn {
            name: name.to_owned(),
            program: program.to_path_buf(),
            source,
        })?;
        Ok(Self {
            name: name.to_owned(),
            child,
            log,
        })
    }

    /// The name given at start (also the log file's stem).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Waits until `ready` returns true, polling every `interval`; fails
    /// early if the process exits, and after `timeout`, each time with the
    /// tail of its log. `waiting_for` completes "… did not happen".
    pub fn wait_until(
        &mut self,
        waiting_for: &str,
        timeout: Duration,
        interval: Duration,
        ready: impl FnMut() -> bool,
    ) -> Result<(), Error> {
        let exited = |status: ExitStatus, log_tail: String| Error::Exited {
            name: self.name.clone(),
            status,
            waiting_for: waiting_for.to_owned(),
            log_tail,
        };
        let child = &mut self.child;
        let log = &self.log;
        let gone = || match child.try_wait() {
            Ok(Some(status)) => Err(exited(status, tail(log))),
            Ok(None) => Ok(()),
            Err(source) => Err(Error::Io {
                what: format!("checking whether {} is running", self.name),
                source,
            }),
        };
        if poll_until(timeout, interval, gone, ready)? {
            Ok(())
        } else {
            Err(Error::Timeout {
                name: self.name.clone(),
                waiting_for: waiting_for.to_owned(),
                timeout,
                log_tail: self.log_tail(),
            })
        }
    }

    /// Waits until `addr` accepts TCP connections.
    pub fn wait_for_tcp(&mut self, addr: SocketAddr, timeout: Duration) -> Result<(), Error> {
        self.wait_until(
            &format!("listening on {addr}"),
            timeout,
            Duration::from_millis(50),
            || accepts_tcp(addr),
        )
    }

    /// Waits until `path` exists (a unix socket, a file the process writes).
    pub fn wait_for_path(&mut self, path: &Path, timeout: Duration) -> Result<(), Error> {
        self.wait_until(
            &format!("creating {}", path.display()),
            timeout,
            Duration::from_millis(50),
            || path.exists(),
        )
    }

    /// The last 40 lines of the process's log.
    pub fn log_tail(&self) -> String {
        tail(&self.log)
    }

    /// The whole log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Where the log is written.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The process ID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The resident set size in KiB (`VmRSS` in `/proc/<pid>/status`), if
    /// the process is running and this is Linux.
    pub fn rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
    }

    /// Asks the process to stop (SIGTERM) and waits up to `timeout`, then kills it.
    pub fn stop(&mut self, timeout: Duration) -> Result<(), Error> {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.is_running() {
                std::thread::sleep(Duration::from_millis(25));
            } else {
                return Ok(());
            }
        }
        self.kill()
    }

    /// Kills the process at once (SIGKILL), as a crash would, and reaps it.
    pub fn kill(&mut self) -> Result<(), Error> {
        let _ = self.child.kill();
        self.child
            .wait()
            .map_err(Error::io(format!("reaping {}", self.name)))?;
        Ok(())
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

/// The CPU time (user and system, in clock ticks: [`clock_ticks_per_second`]) process `pid` has
/// used so far, from `/proc/<pid>/stat` (Linux).
pub fn cpu_ticks(pid: u32) -> Result<u64, Error> {
    stat_ticks(&pid.to_string(), 2)
}

/// The CPU time of this process and of its children it has waited for (a load generator run
/// to completion), in clock ticks, from `/proc/self/stat`.
pub fn own_and_reaped_children_cpu_ticks() -> Result<u64, Error> {
    stat_ticks("self", 4)
}

/// The sum of the `count` clock-tick fields from utime on (utime, stime, cutime, cstime) of
/// `/proc/<process>/stat`.
fn stat_ticks(process: &str, count: usize) -> Result<u64, Error> {
    let path = format!("/proc/{process}/stat");
    let stat = std::fs::read_to_string(&path).map_err(Error::io(format!("reading {path}")))?;
    // The command name (field 2) may hold spaces and parentheses: the fields after it start at
    // field 3 (state); utime is field 14.
    let ticks: Vec<u64> = stat
        .rsplit_once(')')
        .map(|(_, rest)| {
            rest.split_whitespace()
                .skip(11)
                .take(count)
                .filter_map(|f| f.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    if ticks.len() == count {
        Ok(ticks.iter().sum())
    } else {
        Err(Error::io(format!("parsing {path}"))(std::io::Error::other(
            "no CPU times",
        )))
    }
}

/// Busy (not idle, not waiting for I/O) clock ticks of all the machine's CPUs so far, from
/// `/proc/stat`.
pub fn machine_busy_ticks() -> Result<u64, Error> {
    let stat = std::fs::read_to_string("/proc/stat").map_err(Error::io("reading /proc/stat"))?;
    // cpu user nice system idle iowait irq softirq steal ...
    let fields: Vec<u64> = stat
        .lines()
        .next()
        .map(|line| {
            line.split_whitespace()
                .skip(1)
                .take(8)
                .filter_map(|f| f.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    if fields.len() < 8 {
        return Err(Error::io("parsing /proc/stat")(std::io::Error::other(
            "no cpu line",
        )));
    }
    Ok(fields.iter().sum::<u64>() - fields[3] - fields[4])
}

/// The parent process ID of process `pid`, from `/proc/<pid>/stat`; `None` when it is gone.
fn parent_pid(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// The processes whose parent is `pid` (nginx's workers, say), from `/proc`.
pub fn child_pids(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|child| parent_pid(*child) == Some(pid))
        .collect()
}

/// Clock ticks per second, the unit of [`cpu_ticks`] and of `/proc/stat` (`getconf CLK_TCK`).
pub fn clock_ticks_per_second() -> Result<u64, Error> {
    let out = Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .map_err(Error::io("running getconf CLK_TCK"))?;
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .map_err(|e| Error::io("parsing getconf CLK_TCK")(std::io::Error::other(e)))
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}
