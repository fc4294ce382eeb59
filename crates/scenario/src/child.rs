//! Child processes that run one stack each, so that a stack which aborts (an lwIP assertion) ends only its own run: how such a process ended, and its last words.

use std::process::{Command, ExitStatus, Output, Stdio};

/// Lines of standard output kept in [`last_words`]: lwIP prints a failed assertion there, just
/// before it aborts.
const STDOUT_LINES: usize = 3;

/// Runs this executable again with `key=value` in its environment, no standard input and no
/// backtraces (the child's own report says more), and waits for it. The child finds `key`
/// set, does one run and ends with [`exit_with`].
pub fn rerun_self(key: &str, value: &str) -> Result<Output, String> {
    let exe = std::env::current_exe().map_err(|e| format!("finding this executable: {e}"))?;
    Command::new(exe)
        .env(key, value)
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("starting a child process: {e}"))
}

/// The end of a child started by [`rerun_self`]: exit status 0 for `Ok`, or the message on
/// standard error and exit status 1.
pub fn exit_with(result: Result<(), String>) -> ! {
    match result {
        Ok(()) => std::process::exit(0),
        Err(message) => {
            eprintln!("{message}");
            std::process::exit(1)
        }
    }
}

/// How a child process ended: `died of signal 6`, or `exited with exit status: 1`.
pub fn how_it_ended(status: ExitStatus) -> String {
    match std::os::unix::process::ExitStatusExt::signal(&status) {
        Some(signal) => format!("died of signal {signal}"),
        None => format!("exited with {status}"),
    }
}

/// The end of what a child process said: the last `stderr_lines` lines of its standard error
/// (wirelab's glue and Rust write there), then the last lines of its standard output (where
/// lwIP writes a failed assertion), one per line.
pub fn last_words(output: &Output, stderr_lines: usize) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let mut lines: Vec<&str> = tail(&stderr, stderr_lines);
    lines.extend(tail(&stdout, STDOUT_LINES));
    lines.join("\n")
}

fn tail(text: &str, count: usize) -> Vec<&str> {
    let mut lines: Vec<&str> = text.lines().rev().take(count).collect();
    lines.reverse();
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn a_killed_child_is_described_with_its_signal_and_both_streams() {
        let output = Command::new("sh")
            .args([
                "-c",
                "echo one >&2; echo two >&2; echo three >&2; echo 'Assertion failed'; kill -6 $$",
            ])
            .output()
            .expect("sh runs");
        assert_eq!(how_it_ended(output.status), "died of signal 6");
        assert_eq!(last_words(&output, 2), "two\nthree\nAssertion failed");
    }

    #[test]
    fn an_exit_code_is_described_as_such() {
        let output = Command::new("sh")
            .args(["-c", "exit 3"])
            .output()
            .expect("sh runs");
        assert_eq!(how_it_ended(output.status), "exited with exit status: 3");
        assert_eq!(last_words(&output, 5), "");
    }
}
