//! `attach`: each container has a long-running "main process" (an interactive `sh` in
//! the pod's sandbox, in a pseudo-terminal when the container spec says `tty: true`),
//! started on the first attach and shared by every later attach session: all attachers
//! see its output and may type into it. Detaching (closing the session or stdin) leaves
//! it running; when it exits, attached sessions end with its exit status and the next
//! attach starts a new one. Deleting the pod or stopping the simulator kills it.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use super::process::{self, Exit, Input, Output, Session, SessionOptions};

/// One container's main process.
struct MainProcess {
    input: mpsc::Sender<Input>,
    output: broadcast::Sender<(Output, Bytes)>,
    exit: watch::Receiver<Option<Exit>>,
    _kill: oneshot::Sender<()>,
}

/// The running main processes, by (pod uid, container).
#[derive(Default)]
pub struct AttachRegistry {
    processes: Mutex<HashMap<(String, String), Arc<MainProcess>>>,
}

impl std::fmt::Debug for AttachRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttachRegistry")
            .field("running", &self.lock().len())
            .finish()
    }
}

impl AttachRegistry {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Arc<MainProcess>>> {
        self.processes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Attaches to the container's main process, starting it if needed.
    pub fn attach(
        self: &Arc<Self>,
        pod_uid: &str,
        container: &str,
        tty: bool,
        dir: &Path,
        pod: &str,
    ) -> Session {
        let key = (pod_uid.to_string(), container.to_string());
        let main = {
            let mut processes = self.lock();
            let alive = processes
                .get(&key)
                .filter(|m| m.exit.borrow().is_none())
                .cloned();
            match alive {
                Some(main) => main,
                None => {
                    let main = start(self.clone(), key.clone(), tty, dir, pod);
                    processes.insert(key, main.clone());
                    main
                }
            }
        };
        session_for(&main)
    }

    /// Kills the main processes of a pod (it was deleted).
    pub fn forget_pod(&self, pod_uid: &str) {
        self.lock().retain(|(uid, _), _| uid != pod_uid);
    }

    /// Kills every main process.
    pub fn clear(&self) {
        self.lock().clear();
    }
}

fn start(
    registry: Arc<AttachRegistry>,
    key: (String, String),
    tty: bool,
    dir: &Path,
    pod: &str,
) -> Arc<MainProcess> {
    let command = if tty {
        vec!["sh".to_string()]
    } else {
        vec!["sh".to_string(), "-i".to_string()]
    };
    let options = SessionOptions {
        command,
        tty,
        stdin: true,
        stdout: true,
        stderr: !tty,
        size: (80, 24),
    };
    let Session {
        input,
        mut output,
        exit,
        kill,
    } = process::spawn(&options, dir, pod);
    let (output_tx, _) = broadcast::channel(1024);
    let (exit_tx, exit_rx) = watch::channel(None);
    let main = Arc::new(MainProcess {
        input,
        output: output_tx.clone(),
        exit: exit_rx,
        _kill: kill,
    });
    let weak = Arc::downgrade(&main);
    tokio::spawn(async move {
        while let Some(chunk) = output.recv().await {
            let _ = output_tx.send(chunk);
        }
        let status = exit.await.unwrap_or(Exit::Code(137));
        let _ = exit_tx.send(Some(status));
        let mut processes = registry.lock();
        if let Some(current) = processes.get(&key) {
            if weak.upgrade().is_some_and(|m| Arc::ptr_eq(&m, current)) {
                processes.remove(&key);
            }
        }
    });
    main
}

/// A [`Session`] view of the shared process for one attacher.
fn session_for(main: &Arc<MainProcess>) -> Session {
    let (input_tx, mut input_rx) = mpsc::channel::<Input>(64);
    let (output_tx, output_rx) = mpsc::channel(64);
    let (exit_tx, exit_rx) = oneshot::channel();
    let (detach_tx, mut detach_rx) = oneshot::channel::<()>();
    let shared_input = main.input.clone();
    tokio::spawn(async move {
        while let Some(message) = input_rx.recv().await {
            // Closing an attacher's stdin detaches it; it does not end the process.
            if message != Input::Eof && shared_input.send(message).await.is_err() {
                break;
            }
        }
    });
    let mut chunks = main.output.subscribe();
    let mut exit = main.exit.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                chunk = chunks.recv() => match chunk {
                    Ok(chunk) => {
                        if output_tx.send(chunk).await.is_err() {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => break,
                },
                changed = exit.changed() => {
                    if changed.is_err() || exit.borrow().is_some() {
                        // All output was broadcast before the exit: deliver what is left.
                        while let Ok(chunk) = chunks.try_recv() {
                            if output_tx.send(chunk).await.is_err() {
                                return;
                            }
                        }
                        break;
                    }
                }
                _ = &mut detach_rx => return,
            }
        }
        drop(output_tx);
        let status = exit
            .wait_for(Option::is_some)
            .await
            .ok()
            .and_then(|s| s.clone())
            .unwrap_or(Exit::Code(137));
        let _ = exit_tx.send(status);
    });
    Session {
        input: input_tx,
        output: output_rx,
        exit: exit_rx,
        kill: detach_tx,
    }
}
