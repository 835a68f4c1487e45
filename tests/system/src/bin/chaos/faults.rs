//! The fault loop: every few seconds the recorder (or, with S3 storage, the S3 server; a coin
//! toss each time) is killed (SIGKILL, then restarted on the same address and storage) or
//! stopped (SIGSTOP, then SIGCONT), for a random time; or, in `kill-proxy` mode, one of two proxy
//! replicas is killed and restarted on its addresses and spool. The times come from a seeded
//! generator, so a run can be repeated (`--seed`).

use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use kubescribe_system_tests::stack::Stack;
use kubescribe_system_tests::Error;
use test_support::seaweed::Seaweed;

/// Time between faults (everything up), drawn from this range: sometimes a fault hits a
/// recorder that has only just come back.
const UP: (Duration, Duration) = (Duration::from_millis(300), Duration::from_millis(4000));
/// How long a killed process stays down before its restart begins.
const DOWN_KILLED: (Duration, Duration) = (Duration::from_millis(200), Duration::from_millis(3000));
/// How long a stopped process stays stopped: below and above the proxy's 3 s deadline per
/// recorder attempt.
const DOWN_STOPPED: (Duration, Duration) =
    (Duration::from_millis(500), Duration::from_millis(5000));

/// At most this many faults per run (a bound on count besides time).
const MAX_FAULTS: usize = 2_000;

/// What a fault does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FaultMode {
    /// SIGKILL, then a restart.
    Kill,
    /// SIGSTOP, then SIGCONT.
    Stop,
    /// SIGKILL of the second of two proxy replicas, then a restart on its spool.
    KillProxy,
}

impl std::fmt::Display for FaultMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FaultMode::Kill => "kill",
            FaultMode::Stop => "stop",
            FaultMode::KillProxy => "kill-proxy",
        })
    }
}

/// Which process a fault hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    Recorder,
    S3,
    /// The second proxy replica.
    Proxy,
}

/// One fault done.
#[derive(Debug, Clone)]
pub(crate) struct Fault {
    pub(crate) target: Target,
    /// When the signal was about to be sent, and when the process was gone (wall clock, as the
    /// load's times): what was in flight through it between the two died with it.
    pub(crate) at: SystemTime,
    pub(crate) gone_at: SystemTime,
    /// From the signal to the process being back (restarted and ready, or continued).
    pub(crate) down: Duration,
}

/// The fault loop's state: what is down now, and what was done.
pub(crate) struct Faults {
    mode: FaultMode,
    rng: u64,
    recorder_stopped: bool,
    s3_stopped: bool,
    s3_killed: bool,
    proxy_killed: bool,
    /// Every fault, in order.
    pub(crate) log: Vec<Fault>,
}

impl Faults {
    pub(crate) fn new(mode: FaultMode, seed: u64) -> Self {
        Faults {
            mode,
            // xorshift64* needs a non-zero state.
            rng: seed | 1,
            recorder_stopped: false,
            s3_stopped: false,
            s3_killed: false,
            proxy_killed: false,
            log: Vec::new(),
        }
    }

    /// Faults for `window` (the last fault may end a little after it); each fault is undone
    /// before the next.
    pub(crate) fn run(
        &mut self,
        stack: &mut Stack,
        mut weed: Option<&mut Seaweed>,
        window: Duration,
    ) -> Result<(), Error> {
        let until = Instant::now() + window;
        loop {
            let up = self.between(UP);
            let left = until.saturating_duration_since(Instant::now());
            if self.log.len() >= MAX_FAULTS {
                std::thread::sleep(left);
                return Ok(());
            }
            if left <= up {
                std::thread::sleep(left);
                return Ok(());
            }
            std::thread::sleep(up);
            let target = match weed.as_deref_mut() {
                _ if self.mode == FaultMode::KillProxy => Target::Proxy,
                Some(_) if self.next() % 2 == 1 => Target::S3,
                _ => Target::Recorder,
            };
            let down = self.between(match self.mode {
                FaultMode::Kill | FaultMode::KillProxy => DOWN_KILLED,
                FaultMode::Stop => DOWN_STOPPED,
            });
            let (started, at) = (Instant::now(), SystemTime::now());
            self.hit(stack, weed.as_deref_mut(), target)?;
            let gone_at = SystemTime::now();
            std::thread::sleep(down);
            self.restore_all(stack, weed.as_deref_mut())?;
            self.log.push(Fault {
                target,
                at,
                gone_at,
                down: started.elapsed(),
            });
        }
    }

    /// Kills or stops `target`.
    fn hit(
        &mut self,
        stack: &mut Stack,
        weed: Option<&mut Seaweed>,
        target: Target,
    ) -> Result<(), Error> {
        match (self.mode, target) {
            (_, Target::Proxy) => {
                stack.kill_replica(0)?;
                self.proxy_killed = true;
            }
            (FaultMode::Kill | FaultMode::KillProxy, Target::Recorder) => stack.kill_recorder()?,
            (FaultMode::Stop, Target::Recorder) => {
                let pid = stack
                    .recorder
                    .as_ref()
                    .ok_or("the recorder is not running")?
                    .pid();
                signal("STOP", pid)?;
                self.recorder_stopped = true;
            }
            (FaultMode::Kill | FaultMode::KillProxy, Target::S3) => {
                weed.ok_or("no S3 server")?.kill()?;
                self.s3_killed = true;
            }
            (FaultMode::Stop, Target::S3) => {
                signal("STOP", weed.ok_or("no S3 server")?.pid())?;
                self.s3_stopped = true;
            }
        }
        Ok(())
    }

    /// Brings back whatever is down: the S3 server first (a recorder starting checks its
    /// storage), then the recorder.
    pub(crate) fn restore_all(
        &mut self,
        stack: &mut Stack,
        weed: Option<&mut Seaweed>,
    ) -> Result<(), Error> {
        if let Some(weed) = weed {
            if self.s3_stopped {
                signal("CONT", weed.pid())?;
                self.s3_stopped = false;
            }
            if self.s3_killed {
                weed.restart()?;
                self.s3_killed = false;
            }
        }
        if self.recorder_stopped {
            if let Some(recorder) = &stack.recorder {
                signal("CONT", recorder.pid())?;
            }
            self.recorder_stopped = false;
        }
        stack.start_recorder()?;
        if self.proxy_killed {
            stack.start_replica(0)?;
            self.proxy_killed = false;
        }
        Ok(())
    }

    /// Whether a proxy replica was being killed at some moment between `from` and `to`: what
    /// was in flight through it then (connections it had accepted included) died with it.
    pub(crate) fn proxy_killed_during(&self, from: SystemTime, to: SystemTime) -> bool {
        self.log
            .iter()
            .filter(|f| f.target == Target::Proxy)
            .any(|f| from <= f.gone_at && f.at <= to)
    }

    /// Faults by target, with the mean time down.
    pub(crate) fn summary(&self) -> String {
        [Target::Recorder, Target::S3, Target::Proxy]
            .iter()
            .filter_map(|target| {
                let downs: Vec<Duration> = self
                    .log
                    .iter()
                    .filter(|f| f.target == *target)
                    .map(|f| f.down)
                    .collect();
                (!downs.is_empty()).then(|| {
                    let mean = downs.iter().sum::<Duration>() / downs.len() as u32;
                    format!(
                        "{} × {} {}, down {:.1} s on average",
                        downs.len(),
                        self.mode,
                        match target {
                            Target::Recorder => "recorder",
                            Target::S3 => "S3 server",
                            Target::Proxy => "proxy replica",
                        },
                        mean.as_secs_f64()
                    )
                })
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn next(&mut self) -> u64 {
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn between(&mut self, (low, high): (Duration, Duration)) -> Duration {
        let span = (high - low).as_millis().max(1) as u64;
        low + Duration::from_millis(self.next() % span)
    }
}

/// Sends `SIG<name>` to `pid`.
fn signal(name: &str, pid: u32) -> Result<(), Error> {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .map_err(|e| format!("kill -{name} {pid}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("kill -{name} {pid}: {status}").into())
    }
}
