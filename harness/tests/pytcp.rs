//! PyTCP (plugins/pytcp, a pure-Python stack) as a plug-in in simulated worlds: it answers ARP and smoltcp's pings, takes a TCP transfer from smoltcp and sends one to it, and gives byte-identical captures for one seed.
//!
//! Every test needs the PyTCP virtual environment (`target/pytcp-venv` with `pip install
//! pytcp==2.7.6`, which `.ci/run` makes); without it each is `ignored` with one line saying
//! so, unless `WIRELAB_NO_SKIP` is set (as CI sets it), which makes a missing PyTCP a failure.

mod common;

use std::path::{Path, PathBuf};

use wirelab::sim::library::tcp_transfer_apps;
use wirelab::sim::world::{run, RunOptions};
use wirelab::Registry;

use common::{assert_clean, pair, ping};

fn plugins_file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/pytcp/wirelab-plugins.toml")
}

fn stacks() -> Registry {
    wirelab::stacks_with_plugins(&plugins_file()).expect("wirelab-plugins.toml reads")
}

/// What this machine lacks for PyTCP hosts, if anything (the venv, or pytcp inside it).
fn pytcp_missing() -> Option<String> {
    let venv_python = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/pytcp-venv/bin/python");
    let hint =
        "python3 -m venv target/pytcp-venv && target/pytcp-venv/bin/pip install pytcp==2.7.6";
    if !venv_python.is_file() {
        return Some(format!(
            "PyTCP's virtual environment target/pytcp-venv is missing: {hint}"
        ));
    }
    let has_pytcp = std::process::Command::new(&venv_python)
        .args(["-c", "import pytcp"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_pytcp {
        return Some(format!(
            "pytcp is not installed in target/pytcp-venv: {hint}"
        ));
    }
    match stacks().get("pytcp") {
        Some(factory) => factory.available().err(),
        None => Some("plugins/pytcp/wirelab-plugins.toml registers no stack `pytcp`".to_string()),
    }
}

fn a_pytcp_host_answers_arp_and_smoltcp_pings() {
    let report = run(
        pair(1, "smoltcp", "pytcp"),
        &[ping("client", "10.0.0.2", 4, 1_000_000, 1_000_000)],
        &stacks(),
        &RunOptions::default(),
    )
    .unwrap();
    assert_clean(&report, "smoltcp pings pytcp");
    assert_eq!(report.apps[0].counter("replies_received"), 4);
    let text = report.trace_text();
    assert!(
        text.contains("ARP reply 10.0.0.2 is-at 02:00:00:00:00:02"),
        "{text}"
    );
    assert!(text.contains("ICMP echo reply"), "{text}");
}

fn smoltcp_sends_100_kib_to_pytcp_over_tcp() {
    let report = run(
        pair(2, "smoltcp", "pytcp"),
        &tcp_transfer_apps(100 * 1024),
        &stacks(),
        &RunOptions::default(),
    )
    .unwrap();
    assert_clean(&report, "smoltcp -> pytcp");
    assert_eq!(report.apps[0].counter("bytes_received"), 100 * 1024);
    let text = report.trace_text();
    assert!(text.contains("TCP [S.]"), "PyTCP answers the SYN: {text}");
}

fn pytcp_sends_100_kib_to_smoltcp_over_tcp() {
    let report = run(
        pair(3, "pytcp", "smoltcp"),
        &tcp_transfer_apps(100 * 1024),
        &stacks(),
        &RunOptions::default(),
    )
    .unwrap();
    assert_clean(&report, "pytcp -> smoltcp");
    assert_eq!(report.apps[0].counter("bytes_received"), 100 * 1024);
}

fn two_runs_of_one_seed_give_identical_captures() {
    let once = || {
        run(
            pair(4, "pytcp", "smoltcp"),
            &tcp_transfer_apps(20_000),
            &stacks(),
            &RunOptions::default(),
        )
        .unwrap()
    };
    let (a, b) = (once(), once());
    assert_clean(&a, "first run");
    assert_eq!(a.trace_text(), b.trace_text());
    assert_eq!(a.captures[0].bytes, b.captures[0].bytes);
}

fn main() {
    let missing = pytcp_missing();
    wirelab::needs::run(vec![
        wirelab::needs::test(
            "a_pytcp_host_answers_arp_and_smoltcp_pings",
            a_pytcp_host_answers_arp_and_smoltcp_pings,
        )
        .needs(missing.clone()),
        wirelab::needs::test(
            "smoltcp_sends_100_kib_to_pytcp_over_tcp",
            smoltcp_sends_100_kib_to_pytcp_over_tcp,
        )
        .needs(missing.clone()),
        wirelab::needs::test(
            "pytcp_sends_100_kib_to_smoltcp_over_tcp",
            pytcp_sends_100_kib_to_smoltcp_over_tcp,
        )
        .needs(missing.clone()),
        wirelab::needs::test(
            "two_runs_of_one_seed_give_identical_captures",
            two_runs_of_one_seed_give_identical_captures,
        )
        .needs(missing),
    ])
}
