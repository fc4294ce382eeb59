//! `cargo xtask scenarios --stack linux` and `--diff smoltcp,linux` end to end on tcp/handshake: the kernel passes it in real time, the differential report names what the kernel does differently (TCP timestamps offered, its own SYN window), and no namespace is left behind.

use std::path::Path;
use std::process::Command;

fn xtask(args: &[&str], out: &Path) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .arg("--out")
        .arg(out)
        .output()
        .expect("xtask runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

fn leftovers() -> Vec<String> {
    // The children that ran the kernel hosts have exited: none of their namespaces may stay.
    wirelab::backends::linux::netns::leftover_namespaces()
        .into_iter()
        .filter(|n| {
            let pid = n.split('-').nth(1).unwrap_or_default();
            !Path::new(&format!("/proc/{pid}")).exists()
        })
        .collect()
}

fn the_kernel_runs_a_scenario_and_differs_from_smoltcp_where_it_is_known_to() {
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("linux-handshake");
    let (ok, text) = xtask(
        &["scenarios", "--stack", "linux", "--filter", "tcp/handshake"],
        &out,
    );
    assert!(ok, "{text}");
    assert!(text.contains("ok   tcp/handshake"), "{text}");
    let snapshot = std::fs::read_to_string(out.join("linux/tcp/handshake/snapshot.txt"))
        .expect("the linux run's snapshot");
    assert!(snapshot.contains("\nreal time: "), "{snapshot}");

    // A scenario that cannot run on the kernel is skipped with its reason.
    let (ok, text) = xtask(
        &["scenarios", "--stack", "linux", "--filter", "scale/fifty"],
        &out,
    );
    assert!(ok, "a skipped scenario is not a failure: {text}");
    assert!(
        text.contains("not on linux: 51 hosts run on stack `linux`, which allows at most 16"),
        "{text}"
    );

    let diff_out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("diff-linux-handshake");
    let (ok, text) = xtask(
        &[
            "scenarios",
            "--diff",
            "smoltcp,linux",
            "--filter",
            "tcp/handshake",
        ],
        &diff_out,
    );
    assert!(ok, "{text}");
    let report: serde_json::Value = serde_json::from_slice(
        &std::fs::read(diff_out.join("diff.json")).expect("the JSON report is written"),
    )
    .expect("the report is JSON");
    assert_eq!(report["stacks"], serde_json::json!(["smoltcp", "linux"]));
    let entry = &report["scenarios"][0];
    for run in entry["runs"].as_array().expect("two runs") {
        assert_eq!(run["passed"], true, "{run}");
    }
    let differences = entry["comparison"]["differences"]
        .as_array()
        .expect("differences");
    let syn_options = differences
        .iter()
        .find(|d| d["fact"] == "tcp client:eph1 > server:5001: SYN options")
        .unwrap_or_else(|| panic!("the SYN options differ: {differences:?}"));
    assert_eq!(syn_options["a"], "mss 1460, wscale 1, sackOK");
    assert_eq!(syn_options["b"], "mss 1460, sackOK, timestamps, wscale 1");
    assert_eq!(leftovers(), Vec::<String>::new(), "namespaces left behind");
}

fn main() {
    let need0 = wirelab::backends::linux::available().err();
    wirelab::needs::run(vec![wirelab::needs::test(
        "the_kernel_runs_a_scenario_and_differs_from_smoltcp_where_it_is_known_to",
        the_kernel_runs_a_scenario_and_differs_from_smoltcp_where_it_is_known_to,
    )
    .needs(need0.clone())])
}
