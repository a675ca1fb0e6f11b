//! The supervised child: started with its secrets in its environment (and
//! without the credentials that read them), signalled, or stopped with
//! SIGTERM, a grace period and SIGKILL.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt as _;
use std::process::ExitStatus;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::process::{Child, Command};
use zeroize::Zeroizing;

/// Environment variable name → value.
pub type Env = Vec<(String, Zeroizing<Vec<u8>>)>;

pub fn start(command: &[String], env: &Env) -> Result<Child, String> {
    let (program, args) = command
        .split_first()
        .ok_or_else(|| "no command to run".to_string())?;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env_remove("VAULT_TOKEN")
        .env_remove("VAULT_TOKEN_FILE")
        .kill_on_drop(true);
    for (name, value) in env {
        cmd.env(name, OsStr::from_bytes(value));
    }
    cmd.spawn()
        .map_err(|e| format!("cannot run {program}: {}", e.kind()))
}

/// Sends `signal` to the child (nothing when it has already exited).
pub fn signal(child: &Child, signal: Signal) -> Result<(), String> {
    let Some(pid) = child.id().and_then(|id| i32::try_from(id).ok()) else {
        return Ok(());
    };
    kill(Pid::from_raw(pid), signal).map_err(|e| format!("cannot send {signal}: {e}"))
}

/// SIGTERM, up to `grace` to exit, then SIGKILL; how it ended.
pub async fn stop(child: &mut Child, grace: Duration) -> Option<ExitStatus> {
    if let Ok(Some(status)) = child.try_wait() {
        return Some(status);
    }
    let _ = signal(child, Signal::SIGTERM);
    match tokio::time::timeout(grace, child.wait()).await {
        Ok(status) => status.ok(),
        Err(_) => {
            let _ = child.kill().await;
            child.wait().await.ok()
        }
    }
}

/// Runs a hook (`sh -c COMMAND`) to completion, within `limit`; a message
/// when it failed.
pub async fn hook(command: &str, limit: Duration) -> Result<(), String> {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(command)
        .env_remove("VAULT_TOKEN")
        .env_remove("VAULT_TOKEN_FILE")
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run the hook: {}", e.kind()))?;
    match tokio::time::timeout(limit, child.wait()).await {
        Ok(Ok(status)) if status.success() => Ok(()),
        Ok(Ok(status)) => Err(format!("the hook ended with {}", describe(status))),
        Ok(Err(e)) => Err(format!("the hook failed: {}", e.kind())),
        Err(_) => {
            let _ = child.kill().await;
            Err(format!(
                "the hook ran longer than {}s; killed",
                limit.as_secs()
            ))
        }
    }
}

/// `exit code N` or `signal N`.
pub fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt as _;
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit code {c}"),
        (None, Some(s)) => format!("signal {s}"),
        _ => "an unknown status".into(),
    }
}

/// The exit code to pass on for `status` (128 + signal, as shells do).
pub fn exit_code(status: ExitStatus) -> u8 {
    use std::os::unix::process::ExitStatusExt as _;
    match (status.code(), status.signal()) {
        (Some(c), _) => u8::try_from(c).unwrap_or(1),
        (None, Some(s)) => u8::try_from(128 + s).unwrap_or(1),
        _ => 1,
    }
}
