//! The containers' processes: running a command in a pod's sandbox (with or without a
//! pseudo-terminal), and the long-running main process that `attach` connects to. Below the
//! shared state and the exec/attach protocol handlers, which both use it.

pub(crate) mod attach;
pub(crate) mod process;
