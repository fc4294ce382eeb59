//! This crate's stack in the `wirelab` command like a built-in one: moved onto with `--stack`, compared with smoltcp by `--diff`, and a column of the conformance matrix.

use std::path::{Path, PathBuf};
use std::process::Command;

fn library() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios")
}

fn out(name: &str) -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join(name)
}

/// Runs the crate's `wirelab` with `args`: exit code and standard output.
fn custom_wirelab(args: &[&str]) -> (i32, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_custom-wirelab"))
        .args(args)
        .output()
        .expect("custom-wirelab runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    (
        output.status.code().unwrap_or(-1),
        format!("{stdout}{stderr}"),
    )
}

#[test]
fn the_stack_is_registered_and_runs_the_library_against_this_crates_goldens() {
    let (code, text) = custom_wirelab(&["stacks"]);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.lines().any(|l| l.starts_with("capped-smoltcp")),
        "{text}"
    );

    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let handshake = library().join("tcp/handshake.toml");
    let (code, text) = custom_wirelab(&[
        "run",
        &handshake.to_string_lossy(),
        "--stack",
        "capped-smoltcp",
        "--golden",
        &golden.to_string_lossy(),
        "--out",
        &out("run").to_string_lossy(),
    ]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("ok   tcp/handshake"), "{text}");
}

#[test]
fn diff_compares_it_with_smoltcp() {
    let dir = out("diff");
    let (code, text) = custom_wirelab(&[
        "run",
        &library().join("tcp/bulk_1mib.toml").to_string_lossy(),
        "--diff",
        "smoltcp,capped-smoltcp",
        "--out",
        &dir.to_string_lossy(),
    ]);
    // Each side compares its goldens in the library's golden/, which has none for this stack:
    // that side fails (exit 1); the comparison is made all the same.
    assert_eq!(code, 1, "{text}");
    let report = std::fs::read_to_string(dir.join("diff.json")).expect("diff.json");
    assert!(
        report.contains("\"capped-smoltcp\"") && report.contains("\"smoltcp\""),
        "{report}"
    );
    // The capped buffers show in the windows each side offers.
    let text_report = std::fs::read_to_string(dir.join("diff.txt")).expect("diff.txt");
    assert!(text_report.contains("window"), "{text_report}");
}

#[test]
fn it_is_a_column_of_the_conformance_matrix() {
    let dir = out("conformance");
    let markdown = dir.join("CONFORMANCE.md");
    let (code, text) = custom_wirelab(&[
        "conformance",
        &library().to_string_lossy(),
        "--stacks",
        "smoltcp,capped-smoltcp",
        "--out",
        &dir.to_string_lossy(),
        "--markdown",
        &markdown.to_string_lossy(),
    ]);
    assert_eq!(code, 0, "{text}");
    let matrix = std::fs::read_to_string(&markdown).expect("the matrix");
    assert!(matrix.contains("| capped-smoltcp |"), "{matrix}");
    // The library was given by a roundabout path (`../../scenarios`): the scripts' artifacts
    // still go under --out, never beside the scripts.
    assert!(dir.join("scripts/tcp/active_open@capped-smoltcp.pcapng").is_file());
    let beside: Vec<_> = std::fs::read_dir(library().join("scripts/tcp"))
        .expect("the scripts")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains('@'))
        .collect();
    assert!(beside.is_empty(), "artifacts written beside the scripts: {beside:?}");
}
