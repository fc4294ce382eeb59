//! The malformed-input corpus: every file under `tests/malformed/` is rejected with exactly the message in its `.expected` file, at the position its first line declares.
//!
//! Each input opens with a comment `# at: LINE:COLUMN` (`// at: LINE:COLUMN` in a `.pkt`
//! script): where the error must point, written by hand when the file was made, so the
//! position is checked independently of the blessed message. `WIRELAB_BLESS=1 cargo test
//! --test malformed` rewrites the `.expected` files; nothing else does.

use std::path::{Path, PathBuf};

/// Where the error of `input` must point, from its first line.
fn declared_position(input: &[u8]) -> Option<(usize, usize)> {
    let first = input.split(|&b| b == b'\n').next()?;
    let first = std::str::from_utf8(first).ok()?;
    let at = first.split_once("at: ")?.1.trim();
    let (line, column) = at.split_once(':')?;
    Some((line.parse().ok()?, column.parse().ok()?))
}

/// The error `path` gives as the command line shows it, with its line and column.
fn rejection(path: &Path) -> Result<(String, usize, usize), String> {
    let stacks = backends::builtin();
    match path.extension().and_then(|e| e.to_str()) {
        Some("toml") => {
            let root = Path::new("tests/malformed");
            match wirelab_scenario::load(path, root, &stacks) {
                Ok(_) => Err("the scenario was accepted".into()),
                Err(e) => Ok((e.to_string(), e.line, e.column)),
            }
        }
        Some("pkt") => {
            let name = path.file_stem().unwrap_or_default().to_string_lossy();
            match wirelab_scenario::script::load_named(path, &name) {
                Ok(_) => Err("the script was accepted".into()),
                Err(e) => Ok((e.to_string(), e.line, e.column)),
            }
        }
        _ => Err("not a .toml or .pkt file".into()),
    }
}

#[test]
fn every_malformed_file_is_rejected_exactly_as_expected() {
    let bless = std::env::var_os("WIRELAB_BLESS").is_some_and(|v| v == "1");
    let folder = PathBuf::from("tests/malformed");
    let mut inputs: Vec<PathBuf> = std::fs::read_dir(&folder)
        .expect("tests/malformed exists")
        .map(|entry| entry.expect("a readable folder").path())
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("toml" | "pkt")))
        .collect();
    inputs.sort();
    assert!(inputs.len() >= 100, "only {} inputs", inputs.len());
    let mut problems = Vec::new();
    let mut positioned = 0;
    for input in &inputs {
        let bytes = std::fs::read(input).expect("a readable input");
        let Some(declared) = declared_position(&bytes) else {
            problems.push(format!(
                "{}: no `at: LINE:COLUMN` first line",
                input.display()
            ));
            continue;
        };
        let (shown, line, column) = match rejection(input) {
            Ok(found) => found,
            Err(why) => {
                problems.push(format!("{}: {why}", input.display()));
                continue;
            }
        };
        if (line, column) == declared {
            positioned += 1;
        } else {
            problems.push(format!(
                "{}: points at {line}:{column}, not at {}:{}:\n{shown}",
                input.display(),
                declared.0,
                declared.1
            ));
        }
        let expected_path = input.with_extension(format!(
            "{}.expected",
            input.extension().unwrap_or_default().to_string_lossy()
        ));
        let shown = format!("{shown}\n");
        if bless {
            std::fs::write(&expected_path, &shown).expect("a writable .expected file");
            continue;
        }
        match std::fs::read_to_string(&expected_path) {
            Ok(expected) if expected == shown => {}
            Ok(expected) => problems.push(format!(
                "{}: the message changed (WIRELAB_BLESS=1 rewrites it):\n--- expected\n{expected}--- got\n{shown}",
                input.display()
            )),
            Err(_) => problems.push(format!(
                "{}: no {} (WIRELAB_BLESS=1 writes it)",
                input.display(),
                expected_path.display()
            )),
        }
    }
    assert!(
        problems.is_empty(),
        "{} of {} inputs at the declared position; {} problems:\n\n{}",
        positioned,
        inputs.len(),
        problems.len(),
        problems.join("\n\n")
    );
}
