//! `wirelab check PATH...`: parses and validates scenario files and scripts without running them, for editors and pre-commit hooks; exit 0 when every file is sound, 2 with each error (file:line:column first) when one is not.

use std::path::PathBuf;
use std::process::ExitCode;

use wirelab::scenario::folder;
use wirelab::Registry;

use crate::BAD_INPUT;

/// Checks every file at or under `paths` and reports each broken one.
pub fn run(paths: &[PathBuf], stacks: &Registry) -> ExitCode {
    let found = folder::find(paths, stacks);
    for error in &found.errors {
        eprintln!("{error}\n");
    }
    println!(
        "{} scenario files and {} scripts are sound; {} files are not",
        found.scenarios.len(),
        found.scripts.len(),
        found.errors.len()
    );
    if !found.errors.is_empty() {
        ExitCode::from(BAD_INPUT)
    } else if found.scenarios.is_empty() && found.scripts.is_empty() {
        eprintln!("error: no scenario file (.toml) or script (.pkt) under the paths given");
        ExitCode::from(BAD_INPUT)
    } else {
        ExitCode::SUCCESS
    }
}
