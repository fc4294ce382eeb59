//! An lwIP assertion in one child run of `cargo xtask scenarios --stack lwip` fails that scenario, with its seed and lwIP's own message, while every other scenario runs on and passes.
//!
//! The assertion is real: the hidden `--test-lwip-assert <scenario>` hook makes the first host
//! of that scenario's child process call `tcp_recved` on a listening pcb, which Debian's
//! lwIP 2.1.3 rejects with `LWIP_ASSERT` and `abort()`.

use std::path::Path;
use std::process::Command;

fn an_lwip_assertion_fails_only_its_own_run() {
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("lwip-abort");
    let output = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["scenarios", "--stack", "lwip", "--filter", "tcp/"])
        .args(["--test-lwip-assert", "tcp/handshake", "--out"])
        .arg(&out)
        .output()
        .expect("xtask runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    let summary: serde_json::Value = serde_json::from_slice(
        &std::fs::read(out.join("summary.json")).expect("the summary is written"),
    )
    .expect("the summary is JSON");
    let results = summary["results"].as_array().expect("a list of runs");
    assert!(results.len() >= 17, "{summary}");
    let failed: Vec<&serde_json::Value> = results
        .iter()
        .filter(|r| r["passed"] != serde_json::Value::Bool(true))
        .collect();
    assert_eq!(failed.len(), 1, "{stdout}");
    let dead = failed[0];
    assert_eq!(dead["name"], "tcp/handshake");
    assert_eq!(dead["seed"], 1);
    assert_eq!(dead["outcome"], "aborted: the process died of signal 6");
    let problems = dead["problems"].to_string();
    for needle in [
        "running on lwip at seed 1",
        r#"Assertion \"don't call tcp_recved for listen-pcbs\" failed"#,
        "the lwIP copy of host `client` called abort()",
        "reproduce: cargo xtask scenarios --stack lwip --filter tcp/handshake --seed 1",
    ] {
        assert!(problems.contains(needle), "{needle} not in {problems}");
    }
    // The same lines are what the user sees.
    assert!(
        stdout.contains("FAIL tcp/handshake") && stdout.contains("tcp_recved for listen-pcbs"),
        "{stdout}"
    );
}

/// The same for a conformance script: the run that aborted is reported with lwIP's own
/// message (printed on standard output, just before the abort), and the command fails.
fn an_lwip_assertion_in_a_script_is_reported_with_lwips_message() {
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("lwip-abort-script");
    // The scripted peer's stack is the host `under-test`; the hook reaches the child process
    // through the environment it inherits.
    let output = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args([
            "scenarios",
            "--stack",
            "lwip",
            "--filter",
            "tcp/passive_open",
            "--out",
        ])
        .arg(&out)
        .env(wirelab::backends::lwip::TEST_ASSERT_ENV, "under-test")
        .output()
        .expect("xtask runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    for needle in [
        "FAILED  script tcp/passive_open@lwip",
        "the lwip run died of signal 6 (seed 1)",
        r#"Assertion "don't call tcp_recved for listen-pcbs" failed"#,
        "1 unexpected",
    ] {
        assert!(stdout.contains(needle), "{needle} not in {stdout}");
    }
}

fn main() {
    let need0 = wirelab::backends::lwip::available()
        .err()
        .map(|e| e.to_string());
    wirelab::needs::run(vec![
        wirelab::needs::test(
            "an_lwip_assertion_fails_only_its_own_run",
            an_lwip_assertion_fails_only_its_own_run,
        )
        .needs(need0.clone()),
        wirelab::needs::test(
            "an_lwip_assertion_in_a_script_is_reported_with_lwips_message",
            an_lwip_assertion_in_a_script_is_reported_with_lwips_message,
        )
        .needs(need0.clone()),
    ])
}
