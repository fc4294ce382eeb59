//! Finding scenario files and conformance scripts under the paths a user gives, naming each by its path under the root it was found in, and reading them all, every broken file reported on its own.
//!
//! A root is a folder of scenarios: wirelab's own `scenarios/`, or a user's. Names are paths
//! under it without the extension (`tcp/handshake`); scripts under `<root>/scripts/` are named
//! under that folder (`tcp/passive_open`), so that a script keeps its name whether its own
//! folder or the whole library is run. Goldens live in a `golden/` folder beside the root,
//! mirroring the names.
//!
//! Given a path inside a root (`scenarios/tcp`, or one file), the root is found by walking up
//! to the nearest folder that has a `golden/` beside it, never past a crate or repository
//! folder; where there is none (a folder that was never blessed), the folder given is the
//! root, and a file's own folder is.

use std::path::{Path, PathBuf};

use stack::Registry;

use crate::format::{self, Scenario};
use crate::script::{self, Script};

/// The name of the folder beside a root that holds its goldens.
pub const GOLDEN_DIR: &str = "golden";

/// The folder under a root whose scripts are named from it.
pub const SCRIPTS_DIR: &str = "scripts";

/// What was found under the paths given: the scenarios and scripts that read well, and one
/// message (with file, line and column) per file that did not.
#[derive(Debug, Default)]
pub struct Found {
    pub scenarios: Vec<Scenario>,
    pub scripts: Vec<Script>,
    /// Every file that could not be read or parsed, each its own message.
    pub errors: Vec<String>,
    /// The root of the first path given, whose `golden/` is the default.
    pub first_root: Option<PathBuf>,
}

impl Found {
    /// True when nothing runnable and nothing broken was found.
    pub fn is_empty(&self) -> bool {
        self.scenarios.is_empty() && self.scripts.is_empty() && self.errors.is_empty()
    }

    /// Keeps only the scenarios and scripts whose name contains `filter`.
    pub fn retain_matching(&mut self, filter: &str) {
        self.scenarios.retain(|s| s.name.contains(filter));
        self.scripts.retain(|s| s.name.contains(filter));
    }
}

/// The root that names what is found at `path`: the nearest folder at or above it with a
/// `golden/` beside it, or else `path` itself (a folder) or its folder (a file).
pub fn root_of(path: &Path) -> PathBuf {
    let start = if path.is_dir() {
        path.to_path_buf()
    } else {
        path.parent()
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
    };
    let start = if start.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        start
    };
    let absolute = std::fs::canonicalize(&start).unwrap_or_else(|_| start.clone());
    let mut candidate = Some(absolute.as_path());
    while let Some(dir) = candidate {
        // A crate or a repository is never inside a scenario folder: the walk stops there,
        // so that a folder of a project is not named from a `golden/` of the project around it.
        if dir.join("Cargo.toml").exists() || dir.join(".git").exists() {
            break;
        }
        if dir
            .parent()
            .is_some_and(|parent| parent.join(GOLDEN_DIR).is_dir())
        {
            return relative_like(&start, &absolute, dir);
        }
        candidate = dir.parent();
    }
    start
}

/// `found`, an ancestor of `absolute` (the canonical form of `given`), written the way `given`
/// was: relative paths stay relative, so that messages show what the user typed.
fn relative_like(given: &Path, absolute: &Path, found: &Path) -> PathBuf {
    if given.is_absolute() {
        return found.to_path_buf();
    }
    let Ok(below) = absolute.strip_prefix(found) else {
        return found.to_path_buf();
    };
    let mut path = given.to_path_buf();
    for _ in below.components() {
        path.push("..");
    }
    normalize(&path)
}

/// Removes `x/..` pairs and `.` from a relative path (`a/b/../..` is `.`).
fn normalize(path: &Path) -> PathBuf {
    let mut parts: Vec<std::path::Component<'_>> = Vec::new();
    for part in path.components() {
        match part {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir
                if matches!(parts.last(), Some(std::path::Component::Normal(_))) =>
            {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    if parts.is_empty() {
        return PathBuf::from(".");
    }
    parts.iter().collect()
}

/// The golden folder of a root: `golden/` beside it.
pub fn golden_of(root: &Path) -> PathBuf {
    match root.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.join(GOLDEN_DIR),
        _ => {
            let absolute = std::fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
            absolute
                .parent()
                .map_or_else(|| PathBuf::from(GOLDEN_DIR), |p| p.join(GOLDEN_DIR))
        }
    }
}

/// A script's name: its path under `<root>/scripts/` when it is there, else under `root`,
/// without `.pkt`.
pub fn script_name(path: &Path, root: &Path) -> String {
    let under = format::path_under(path, &root.join(SCRIPTS_DIR))
        .or_else(|| format::path_under(path, root))
        // Never a path that could lead outside an output folder: the file's own name.
        .unwrap_or_else(|| path.file_name().map_or_else(PathBuf::new, PathBuf::from));
    under
        .with_extension("")
        .to_string_lossy()
        .replace('\\', "/")
}

/// Every scenario file (`.toml`) and script (`.pkt`) at or under `path`, sorted.
fn files_under(path: &Path) -> std::io::Result<Vec<PathBuf>> {
    if !path.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files = Vec::new();
    let mut pending = vec![path.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "toml" || e == "pkt") {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// Reads every scenario and script at or under `paths`; their hosts' stacks must be
/// registered in `stacks`. A file given twice (or found twice) is read once.
pub fn find(paths: &[PathBuf], stacks: &Registry) -> Found {
    let mut found = Found::default();
    let mut seen = std::collections::BTreeSet::new();
    for path in paths {
        if !path.exists() {
            found.errors.push(format!(
                "{}: no such file or folder (give scenario files, .pkt scripts or folders of them)",
                path.display()
            ));
            continue;
        }
        let root = root_of(path);
        if found.first_root.is_none() {
            found.first_root = Some(root.clone());
        }
        let files = match files_under(path) {
            Ok(files) => files,
            Err(e) => {
                found
                    .errors
                    .push(format!("{}: cannot be listed: {e}", path.display()));
                continue;
            }
        };
        for file in files {
            let key = std::fs::canonicalize(&file).unwrap_or_else(|_| file.clone());
            if !seen.insert(key) {
                continue;
            }
            match file.extension().and_then(|e| e.to_str()) {
                Some("pkt") => {
                    let name = script_name(&file, &root);
                    match script::load_named(&file, &name) {
                        Ok(s) => found.scripts.push(s),
                        Err(e) => found.errors.push(e.to_string()),
                    }
                }
                Some("toml") => match format::load(&file, &root, stacks) {
                    Ok(s) => found.scenarios.push(s),
                    Err(e) => found.errors.push(e.to_string()),
                },
                _ => found.errors.push(format!(
                    "{}: not a scenario file (.toml) or a conformance script (.pkt)",
                    file.display()
                )),
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_are_tidied() {
        assert_eq!(normalize(Path::new("a/b/../..")), PathBuf::from("."));
        assert_eq!(normalize(Path::new("./a/./b/..")), PathBuf::from("a"));
        assert_eq!(normalize(Path::new("../x")), PathBuf::from("../x"));
    }

    #[test]
    fn scripts_under_the_scripts_folder_are_named_from_it() {
        let root = Path::new("lib");
        assert_eq!(
            script_name(Path::new("lib/scripts/tcp/a.pkt"), root),
            "tcp/a"
        );
        assert_eq!(script_name(Path::new("lib/udp/b.pkt"), root), "udp/b");
    }

    #[test]
    fn a_path_written_another_way_than_its_root_is_still_named_under_it() {
        let base = std::env::temp_dir().join(format!("wirelab-names-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(base.join("lib/scripts/tcp")).unwrap();
        std::fs::create_dir_all(base.join("other")).unwrap();
        std::fs::write(base.join("lib/scripts/tcp/a.pkt"), "").unwrap();
        let root = std::fs::canonicalize(base.join("lib")).unwrap();
        let roundabout = base.join("other/../lib/scripts/tcp/a.pkt");
        assert_eq!(script_name(&roundabout, &root), "tcp/a");
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn the_root_is_the_folder_with_goldens_beside_it() {
        let base = std::env::temp_dir().join(format!("wirelab-folder-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(base.join("lib/tcp")).unwrap();
        std::fs::write(base.join("lib/tcp/x.toml"), "").unwrap();
        // Never blessed: the folder given is the root.
        assert_eq!(root_of(&base.join("lib/tcp")), base.join("lib/tcp"));
        assert_eq!(root_of(&base.join("lib/tcp/x.toml")), base.join("lib/tcp"));
        std::fs::create_dir_all(base.join("golden")).unwrap();
        let root = std::fs::canonicalize(base.join("lib")).unwrap();
        assert_eq!(root_of(&base.join("lib/tcp")), root);
        assert_eq!(root_of(&base.join("lib/tcp/x.toml")), root);
        assert_eq!(
            std::fs::canonicalize(golden_of(&root)).unwrap(),
            std::fs::canonicalize(base.join("golden")).unwrap()
        );
        std::fs::remove_dir_all(&base).unwrap();
    }
}
