//! `cargo xtask scenarios --diff smoltcp,lwip` end to end: both backends pass tcp/handshake, their applications agree, and the report names the differences the two stacks are known to have (SACK offered or not, TTL 64 or 255, lwIP's gratuitous ARP).

use std::path::Path;
use std::process::Command;

fn smoltcp_and_lwip_differ_where_they_are_known_to() {
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("diff-handshake");
    let output = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args([
            "scenarios",
            "--diff",
            "smoltcp,lwip",
            "--filter",
            "tcp/handshake",
            "--out",
        ])
        .arg(&out)
        .output()
        .expect("xtask runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    let report: serde_json::Value = serde_json::from_slice(
        &std::fs::read(out.join("diff.json")).expect("the JSON report is written"),
    )
    .expect("the report is JSON");
    assert_eq!(report["stacks"], serde_json::json!(["smoltcp", "lwip"]));
    let scenarios = report["scenarios"].as_array().expect("a list");
    assert_eq!(scenarios.len(), 1);
    let entry = &scenarios[0];
    assert_eq!(entry["name"], "tcp/handshake");
    for run in entry["runs"].as_array().expect("two runs") {
        assert_eq!(run["passed"], true, "{run}");
    }
    let comparison = &entry["comparison"];
    for app in comparison["apps"].as_array().expect("apps side by side") {
        assert_eq!(app[1], app[2], "the applications see the same: {app}");
    }
    let differences: Vec<(String, String, String)> = comparison["differences"]
        .as_array()
        .expect("differences")
        .iter()
        .map(|d| {
            let text = |k: &str| d[k].as_str().unwrap_or_default().to_string();
            (text("fact"), text("a"), text("b"))
        })
        .collect();
    let has = |fact: &str, a: &str, b: &str| {
        differences
            .iter()
            .any(|(f, x, y)| f == fact && x == a && y == b)
    };
    assert!(
        has(
            "tcp client:eph1 > server:5001: SYN options",
            "mss 1460, wscale 1, sackOK",
            "mss 1460, wscale 1"
        ),
        "{differences:?}"
    );
    assert!(has("host client: ttl", "64", "255"), "{differences:?}");
    assert!(
        has("host server: ARP gratuitous announcements", "(none)", "1"),
        "{differences:?}"
    );
    // What both stacks do alike is not listed.
    assert!(
        !differences
            .iter()
            .any(|(f, _, _)| f.ends_with("answer to SYN")),
        "{differences:?}"
    );
    let text = std::fs::read_to_string(out.join("diff.txt")).expect("the text report");
    assert!(text.contains("== tcp/handshake (seed 1)"), "{text}");
    // Both backends' applications are judged against turmoil's reference.
    for run in scenarios[0]["runs"].as_array().into_iter().flatten() {
        assert_eq!(run["reference"]["verdict"], "agree", "{run}");
    }
    for stack in ["smoltcp", "lwip"] {
        assert!(
            text.contains(&format!(
                "turmoil reference, {stack}: agrees with turmoil on 2 application(s)"
            )),
            "{text}"
        );
    }
    assert!(
        text.contains("verdict: smoltcp pass (completed), lwip pass (completed)"),
        "{text}"
    );
}

fn main() {
    let need0 = wirelab::backends::lwip::available()
        .err()
        .map(|e| e.to_string());
    wirelab::needs::run(vec![wirelab::needs::test(
        "smoltcp_and_lwip_differ_where_they_are_known_to",
        smoltcp_and_lwip_differ_where_they_are_known_to,
    )
    .needs(need0.clone())])
}
