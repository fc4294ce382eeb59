//! The `wirelab` command as a user runs it: a folder of their own scenarios from outside the repository (no goldens, bless, pass), one file of the library by path, `check` on good and broken files, a broken file beside good ones, and stack names.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A user's scenario: UDP echoes with a little latency; it declares no name, so its name is
/// its path under the folder it is run from.
const USER_SCENARIO: &str = r#"
description = "Five UDP echoes over a switch with 200 µs of latency."
requirements = ["rfc768:datagram"]

[[segments]]
name = "lan"
kind = "switch"

[[hosts]]
name = "client"
segment = "lan"
ipv4 = "10.1.0.1/24"

[[hosts]]
name = "server"
segment = "lan"
ipv4 = "10.1.0.2/24"
link.to_segment = { latency_us = 200 }

[[apps]]
kind = "udp_echo_server"
host = "server"
port = 7

[[apps]]
kind = "udp_ping_pong"
host = "client"
target = "10.1.0.2:7"
count = 5

[[expect]]
check = "counter"
host = "client"
counter = "round_trips"
equals = 5
"#;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs `wirelab` with `args` in `dir`; returns its exit code, standard output and error.
fn wirelab(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_wirelab"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("wirelab runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A fresh folder outside the repository, for a user's project.
fn project(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wirelab-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("my-scenarios/udp")).expect("a temporary folder");
    std::fs::write(dir.join("my-scenarios/udp/echo.toml"), USER_SCENARIO).expect("written");
    dir
}

#[test]
fn a_users_folder_runs_from_anywhere_blesses_goldens_beside_it_and_then_passes() {
    let dir = project("bless");
    let (code, out, _) = wirelab(&dir, &["run", "my-scenarios"]);
    assert_eq!(code, 1, "no golden yet: {out}");
    assert!(out.contains("FAIL udp/echo"), "{out}");
    assert!(out.contains("no golden at"), "{out}");
    assert!(
        out.contains("bless with: wirelab run my-scenarios --filter udp/echo --bless"),
        "{out}"
    );

    let (code, out, err) = wirelab(&dir, &["run", "my-scenarios", "--bless"]);
    assert_eq!(code, 0, "{out}{err}");
    for golden in ["golden/udp/echo.pcapng", "golden/udp/echo.snap"] {
        assert!(
            dir.join(golden).is_file(),
            "{golden} was not written: {out}"
        );
    }
    assert!(
        dir.join("target/wirelab/udp/echo/trace.txt").is_file(),
        "artifacts go under target/wirelab of the folder run from"
    );

    // Now the folder has goldens beside it: one file inside it is named from that root too.
    let (code, out, err) = wirelab(&dir, &["run", "my-scenarios/udp/echo.toml"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("ok   udp/echo"), "{out}");

    // A run that changes is caught: five echoes become six.
    let changed = USER_SCENARIO
        .replace("count = 5", "count = 6")
        .replace("equals = 5", "equals = 6");
    std::fs::write(dir.join("my-scenarios/udp/echo.toml"), changed).expect("written");
    let (code, out, _) = wirelab(&dir, &["run", "my-scenarios"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("differs from"), "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn one_file_of_the_library_is_named_from_its_root_and_matches_its_golden() {
    let (code, out, err) = wirelab(&workspace(), &["run", "scenarios/tcp/handshake.toml"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("ok   tcp/handshake"), "{out}");
    assert!(out.contains("1 scenarios, 1 runs: 1 passed"), "{out}");
}

#[test]
fn check_names_file_line_and_column_and_a_broken_file_fails_alone() {
    let dir = project("check");
    let (code, out, err) = wirelab(&dir, &["check", "my-scenarios"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("1 scenario files and 0 scripts are sound"),
        "{out}"
    );

    let broken = USER_SCENARIO.replace(
        "segment = \"lan\"\nipv4 = \"10.1.0.2/24\"",
        "segment = \"lna\"\nipv4 = \"10.1.0.2/24\"",
    );
    std::fs::write(dir.join("my-scenarios/udp/broken.toml"), broken).expect("written");
    let (code, _, err) = wirelab(&dir, &["check", "my-scenarios"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("my-scenarios/udp/broken.toml:16:11: ") && err.contains("did you mean `lan`?"),
        "{err}"
    );

    // `run` runs the sound file, reports the broken one, and exits 2.
    let (code, out, err) = wirelab(&dir, &["run", "my-scenarios", "--bless"]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(out.contains("ok   udp/echo"), "{out}");
    assert!(err.contains("broken.toml:16:11"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn stacks_are_listed_and_a_misspelled_one_is_refused_with_a_suggestion() {
    let (code, out, _) = wirelab(&workspace(), &["stacks"]);
    assert_eq!(code, 0);
    for name in ["smoltcp", "lwip", "linux"] {
        assert!(out.lines().any(|l| l.starts_with(name)), "{out}");
    }
    let (code, _, err) = wirelab(
        &workspace(),
        &["run", "scenarios/tcp/handshake.toml", "--stack", "lwp"],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("did you mean `lwip`?"), "{err}");
}
