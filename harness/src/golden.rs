//! Golden files: byte-exact comparison of captures with the blessed ones, a readable account of the first difference, and atomic writes.

use std::fmt::Write;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::capture::read_capture;
use crate::decode::decode_frame;
use crate::trace::format_time;

/// How a capture differs from its golden.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GoldenMismatch {
    /// There is no golden file yet.
    Missing(PathBuf),
    /// The golden file exists but is not a capture wirelab can read.
    Broken { path: PathBuf, reason: String },
    /// Both are readable; `detail` says where they part.
    Differs { path: PathBuf, detail: String },
}

impl std::fmt::Display for GoldenMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GoldenMismatch::Missing(path) => write!(
                f,
                "no golden at {} (run with --bless to create it)",
                path.display()
            ),
            GoldenMismatch::Broken { path, reason } => write!(
                f,
                "the golden {} is broken: {reason}; restore it from git or re-bless",
                path.display()
            ),
            GoldenMismatch::Differs { path, detail } => {
                write!(f, "differs from {}:\n{detail}", path.display())
            }
        }
    }
}

/// Compares a capture with the golden at `path`, byte for byte.
pub fn compare_capture(path: &Path, actual: &[u8]) -> Result<(), GoldenMismatch> {
    let expected = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(GoldenMismatch::Missing(path.to_path_buf()))
        }
        Err(e) => {
            return Err(GoldenMismatch::Broken {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })
        }
    };
    if expected == actual {
        return Ok(());
    }
    let expected_frames = read_capture(&expected).map_err(|e| GoldenMismatch::Broken {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let actual_frames = read_capture(actual).map_err(|e| GoldenMismatch::Differs {
        path: path.to_path_buf(),
        detail: format!("this run's capture could not be read back: {e}"),
    })?;
    let mut detail = String::new();
    let first = expected_frames
        .iter()
        .zip(&actual_frames)
        .position(|(e, a)| e != a);
    match first {
        Some(index) => {
            let (e, a) = (&expected_frames[index], &actual_frames[index]);
            let _ = writeln!(
                detail,
                "  first difference at frame {} (1-based)",
                index + 1
            );
            let mut line = String::new();
            decode_frame(&e.data, &mut line);
            let _ = writeln!(detail, "  golden: {} {line}", format_time(e.time_us));
            line.clear();
            decode_frame(&a.data, &mut line);
            let _ = writeln!(detail, "  actual: {} {line}", format_time(a.time_us));
            if e.time_us != a.time_us {
                let _ = writeln!(detail, "  time: {} vs {} µs", e.time_us, a.time_us);
            }
            if let Some(byte) = e.data.iter().zip(&a.data).position(|(x, y)| x != y) {
                let _ = writeln!(
                    detail,
                    "  first differing byte: offset {byte} ({:#04x} vs {:#04x})",
                    e.data[byte], a.data[byte]
                );
            }
            if e.data.len() != a.data.len() {
                let _ = writeln!(detail, "  length: {} vs {}", e.data.len(), a.data.len());
            }
            if e.comment != a.comment {
                let _ = writeln!(detail, "  comment: {:?} vs {:?}", e.comment, a.comment);
            }
        }
        None => {
            let _ = writeln!(
                detail,
                "  the first {} frames agree; golden has {} frames, this run {}",
                expected_frames.len().min(actual_frames.len()),
                expected_frames.len(),
                actual_frames.len()
            );
        }
    }
    Err(GoldenMismatch::Differs {
        path: path.to_path_buf(),
        detail,
    })
}

/// Writes `bytes` to `path` atomically: a temporary file beside it, synced, then renamed.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp-{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)
}

/// Where a scenario's goldens live: `golden/<name>.snap` for the reviewed snapshot, and one
/// capture per segment, `golden/<name>.<ext>` when the scenario has one segment and
/// `golden/<name>.<segment>.<ext>` when it has several.
pub struct GoldenPaths {
    pub snapshot: PathBuf,
    /// `(segment, path)` in segment order.
    pub captures: Vec<(String, PathBuf)>,
}

pub fn golden_paths(
    golden_root: &Path,
    scenario_name: &str,
    segments: &[String],
    extension: &str,
) -> GoldenPaths {
    let base = golden_root.join(scenario_name);
    let with = |suffix: &str| {
        let mut os = base.clone().into_os_string();
        os.push(suffix);
        PathBuf::from(os)
    };
    let captures = segments
        .iter()
        .map(|segment| {
            let path = if segments.len() == 1 {
                with(&format!(".{extension}"))
            } else {
                with(&format!(".{segment}.{extension}"))
            };
            (segment.clone(), path)
        })
        .collect();
    GoldenPaths {
        snapshot: with(".snap"),
        captures,
    }
}

/// The file insta reads for a snapshot with these contents, so that `--bless` and
/// `cargo insta review` write the same thing.
pub fn snapshot_file_text(contents: &str) -> String {
    format!(
        "---\nsource: harness/tests/scenarios.rs\nexpression: snapshot\n---\n{}\n",
        contents.trim_end()
    )
}

/// The contents of an insta snapshot file: what follows its metadata header.
pub fn snapshot_contents(file_text: &str) -> Option<&str> {
    let rest = file_text.strip_prefix("---\n")?;
    let end = rest.find("\n---\n")?;
    Some(&rest[end + 5..])
}

/// Compares a snapshot with the golden at `path`, the way insta does (trailing whitespace
/// aside), and shows the first line that differs.
pub fn compare_snapshot(path: &Path, actual: &str) -> Result<(), GoldenMismatch> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(GoldenMismatch::Missing(path.to_path_buf()))
        }
        Err(e) => {
            return Err(GoldenMismatch::Broken {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })
        }
    };
    let expected = snapshot_contents(&text).ok_or_else(|| GoldenMismatch::Broken {
        path: path.to_path_buf(),
        reason: "it does not start with insta's `---` metadata header".to_string(),
    })?;
    let (expected, actual) = (expected.trim_end(), actual.trim_end());
    if expected == actual {
        return Ok(());
    }
    let mut detail = String::new();
    let (mut e_lines, mut a_lines) = (expected.lines(), actual.lines());
    for number in 1.. {
        match (e_lines.next(), a_lines.next()) {
            (Some(e), Some(a)) if e == a => continue,
            (e, a) => {
                let _ = writeln!(detail, "  first difference at line {number}");
                let _ = writeln!(detail, "  golden: {}", e.unwrap_or("(end of snapshot)"));
                let _ = writeln!(detail, "  actual: {}", a.unwrap_or("(end of snapshot)"));
                break;
            }
        }
    }
    Err(GoldenMismatch::Differs {
        path: path.to_path_buf(),
        detail,
    })
}
