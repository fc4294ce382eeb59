//! The plug-ins file (`wirelab-plugins.toml`): stacks that run as plug-in processes, by the name scenarios and command lines use, with the command that starts each.
//!
//! ```toml
//! [stacks."smoltcp@0.12"]
//! command = ["target/release/wirelab-plugin-smoltcp-0-12"]   # relative paths: from this file
//! description = "smoltcp 0.12.0 from crates.io, as a plug-in process"
//! missing = "build it with: cargo build --release -p wirelab-plugin-smoltcp-0-12"
//! build = ["cargo", "build", "--quiet", "--release", "-p", "wirelab-plugin-smoltcp-0-12"]
//!
//! [stacks.pytcp]
//! command = ["target/wirelab-venv/bin/python", "plugins/pytcp/adapter.py"]
//! env = { PYTHONHASHSEED = "0" }
//! timeout_s = 30
//! tick_us = 1000   # it sends only from a 1 ms timer: scripts accept its packets 1 ms late
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use stack::Registry;

use crate::client::{PluginFactory, DEFAULT_TIMEOUT};

/// The file's name, looked for in the folder a command runs from.
pub const FILE_NAME: &str = "wirelab-plugins.toml";

/// Set to a plug-ins file to use instead of `wirelab-plugins.toml` in the current folder.
pub const ENV: &str = "WIRELAB_PLUGINS";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    stacks: BTreeMap<String, Entry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    command: Vec<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    missing: Option<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    timeout_s: Option<u64>,
    #[serde(default)]
    build: Option<Vec<String>>,
    #[serde(default)]
    tick_us: u64,
}

/// Reads the plug-ins file at `path`: one factory per stack it names, in name order.
pub fn load(path: &Path) -> Result<Vec<PluginFactory>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{}: cannot be read: {e}", path.display()))?;
    let file: File = toml::from_str(&text).map_err(|e| {
        let at = e
            .span()
            .map(|s| {
                let before = &text[..s.start.min(text.len())];
                format!(
                    ":{}:{}",
                    before.matches('\n').count() + 1,
                    before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1
                )
            })
            .unwrap_or_default();
        format!("{}{at}: {}", path.display(), e.message())
    })?;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let mut factories = Vec::new();
    for (name, entry) in file.stacks {
        stack::check_name(&name).map_err(|e| format!("{}: {e}", path.display()))?;
        if entry.command.is_empty() {
            return Err(format!(
                "{}: stack `{name}` has an empty command",
                path.display()
            ));
        }
        // Relative paths in arguments are taken from the file's folder, where the plug-in runs.
        let mut factory = PluginFactory::new(&name, entry.command, &dir);
        if let Some(description) = entry.description {
            factory.description = description;
        }
        factory.missing_hint = entry.missing;
        factory.command.env = entry.env.into_iter().collect();
        factory.build = entry.build;
        factory.tick_us = entry.tick_us;
        factory.timeout = entry.timeout_s.map_or(DEFAULT_TIMEOUT, Duration::from_secs);
        factories.push(factory);
    }
    Ok(factories)
}

/// The plug-ins file a command uses: `$WIRELAB_PLUGINS`, or `wirelab-plugins.toml` in the
/// current folder when it exists.
pub fn default_path() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(ENV) {
        return Some(PathBuf::from(path));
    }
    let here = PathBuf::from(FILE_NAME);
    here.is_file().then_some(here)
}

/// Registers every stack of the plug-ins file at `path` in `registry`.
pub fn register_from(path: &Path, registry: &mut Registry) -> Result<(), String> {
    for factory in load(path)? {
        let name = factory.name.clone();
        registry.register(name, factory);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_gives_one_factory_per_stack_and_mistakes_name_their_place() {
        let dir = std::env::temp_dir().join(format!("wirelab-plugins-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(FILE_NAME);
        std::fs::write(
            &path,
            "[stacks.\"smoltcp@0.12\"]\ncommand = [\"bin/plugin\"]\nmissing = \"build it\"\n\n[stacks.py]\ncommand = [\"python3\", \"a.py\"]\ntimeout_s = 3\nenv = { PYTHONHASHSEED = \"0\" }\n",
        )
        .unwrap();
        let factories = load(&path).unwrap();
        let names: Vec<&str> = factories.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["py", "smoltcp@0.12"]);
        assert_eq!(factories[0].timeout, Duration::from_secs(3));
        assert_eq!(
            factories[0].command.env,
            [("PYTHONHASHSEED".into(), "0".into())]
        );
        // The plug-in's program is missing: the stack says so, with the hint.
        let missing = stack::StackFactory::available(&factories[1]).unwrap_err();
        assert!(missing.contains("does not exist; build it"), "{missing}");

        std::fs::write(&path, "[stacks.x]\ncomand = [\"a\"]\n").unwrap();
        let e = load(&path).unwrap_err();
        assert!(
            e.contains("wirelab-plugins.toml:2:1: unknown field `comand`"),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
