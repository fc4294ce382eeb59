//! Scenario files: TOML parsing with file:line:column errors, expansion into a world and its applications, and the expectations a run is checked against.
//!
//! A scenario file is the unit users write. [`parse`] turns its text into a [`Scenario`]
//! (a validated [`WorldConfig`], the applications and the expectations) or into one
//! [`ScenarioError`] that points at the offending line and column and suggests a fix.
//! Running and checking a scenario lives in [`crate::check`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use judge::expect::{check_expectation, Expectation};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sim::apps::AppConfig;
use sim::config::{
    closest, default_ip_mtu_bytes, default_stack, default_tcp_buffer_bytes, did_you_mean,
    CaptureConfig, Cidr, CongestionControlConfig, HostConfig, KeyPath, LinkConfig, PathPart,
    ScheduledEvent, SegmentConfig, TraceLevel, WorldConfig,
};
use stack::Registry;

/// The seed a scenario runs with when its file names none.
pub const DEFAULT_SEED: u64 = 1;

fn default_seed() -> u64 {
    DEFAULT_SEED
}

fn default_time_limit_us() -> u64 {
    60_000_000
}

/// The contents of one scenario file, as written.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScenarioFile {
    /// The scenario's path under the folder it is run from, without `.toml`, for example
    /// `tcp/handshake`; it may be left out, and then it is that path.
    #[serde(default)]
    pub name: Option<String>,
    /// What the scenario shows, in sentences; findings against a stack are named here.
    pub description: String,
    /// Requirement IDs the scenario exercises, for example `rfc9293:MUST-8` or `rfc792:echo`.
    #[serde(default)]
    pub requirements: Vec<String>,
    /// The root seed; `--seed` and `--seeds` override it.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// The run fails with `TimeLimit` when virtual time would pass this.
    #[serde(default = "default_time_limit_us")]
    #[schemars(range(min = 1))]
    pub time_limit_us: u64,
    /// The run fails with `StepLimit` after this many loop steps.
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub step_limit: Option<u64>,
    pub segments: Vec<SegmentConfig>,
    #[serde(default)]
    pub hosts: Vec<HostConfig>,
    /// Many alike hosts at once: `count` hosts named `<prefix><n>` with consecutive addresses.
    #[serde(default)]
    pub host_groups: Vec<HostGroup>,
    #[serde(default)]
    pub events: Vec<ScheduledEvent>,
    #[serde(default)]
    pub capture: Option<CaptureConfig>,
    /// Applications; a `host` ending in `*` gives one application per host whose name starts
    /// with what comes before the `*`.
    pub apps: Vec<AppConfig>,
    #[serde(default)]
    pub expect: Vec<Expectation>,
    /// Expectations a stack is known to fail, because it breaks a requirement: with every host
    /// on that stack, each must fail exactly so, and the run passes on that account.
    #[serde(default)]
    pub known_failures: Vec<KnownFailure>,
}

/// An `[[expect]]` a stack is known to fail. With every host of the run on `stack`, the
/// expectation must fail (and, with `observed`, show exactly that); the failure is then
/// reported but does not fail the run. Should the expectation hold, or fail otherwise, the run
/// fails: a fixed or changed stack is noticed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KnownFailure {
    /// The registered name of the stack that fails, like `"smoltcp"` or `"lwip"`.
    pub stack: String,
    /// Which `[[expect]]` fails: 1 for the first in the file.
    pub expect: usize,
    /// The requirement the stack breaks, like `rfc6298:5.5`.
    pub requirement: String,
    /// What the failing expectation observes, word for word as the report shows it; when
    /// given, any other observation fails the run.
    #[serde(default)]
    pub observed: Option<String>,
}

/// `count` hosts named `<prefix>1` ... `<prefix><count>`, addressed upwards from the first
/// addresses given, each with the group's settings. The settings are those of `[[hosts]]`,
/// under the same keys and with the same defaults.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HostGroup {
    pub prefix: String,
    pub count: u32,
    pub segment: String,
    /// The first host's IPv4 address with its prefix length; the others count up from it.
    #[serde(default)]
    pub first_ipv4: Option<Cidr>,
    #[serde(default)]
    pub first_ipv6: Option<Cidr>,
    #[serde(default = "default_stack")]
    pub stack: String,
    #[serde(default)]
    pub ipv4_gateway: Option<Ipv4Addr>,
    #[serde(default)]
    pub ipv6_gateway: Option<Ipv6Addr>,
    #[serde(default = "default_ip_mtu_bytes")]
    pub ip_mtu_bytes: u32,
    #[serde(default)]
    pub congestion_control: CongestionControlConfig,
    #[serde(default = "default_tcp_buffer_bytes")]
    pub tcp_buffer_bytes: u32,
    /// Impairments between each host of the group and the segment, alike for all of them;
    /// each host's link draws from its own random stream.
    #[serde(default)]
    pub link: LinkConfig,
}

/// Keys a host from a group takes from its group under the same name: an error about one of
/// them points at the group's key.
const GROUP_HOST_KEYS: &[&str] = &[
    "stack",
    "segment",
    "ipv4_gateway",
    "ipv6_gateway",
    "ip_mtu_bytes",
    "congestion_control",
    "tcp_buffer_bytes",
    "link",
];

/// A scenario ready to run: its world, applications and expectations, all validated.
#[derive(Clone, Debug, PartialEq)]
pub struct Scenario {
    pub name: String,
    /// The file it came from, as given to [`load`].
    pub path: PathBuf,
    pub description: String,
    pub requirements: Vec<String>,
    pub config: WorldConfig,
    pub apps: Vec<AppConfig>,
    pub expectations: Vec<Expectation>,
    /// For each expectation that names an application, its index in `apps`.
    pub expectation_apps: Vec<Option<usize>>,
    /// For each expectation, its number in the file (1 for the first `[[expect]]`), which
    /// [`KnownFailure::expect`] refers to; [`Scenario::on_stack`] drops some expectations.
    pub expectation_numbers: Vec<usize>,
    pub known_failures: Vec<KnownFailure>,
}

/// Parses a stack's name as `--stack` and `--diff` take it: one registered in `stacks`.
pub fn parse_stack(text: &str, stacks: &Registry) -> Result<String, String> {
    if stacks.contains(text) {
        return Ok(text.to_string());
    }
    let names: Vec<&str> = stacks.names().collect();
    Err(format!(
        "`{text}` is not a registered stack{}: one of {}",
        did_you_mean(text, names.iter().copied()),
        names.join(", ")
    ))
}

impl Scenario {
    /// What turmoil's application-level reference reads of it: the world and the apps.
    pub fn workload(&self) -> judge::reference::Workload<'_> {
        judge::reference::Workload {
            config: &self.config,
            apps: &self.apps,
        }
    }

    /// The stack every host runs, if they all run the same one.
    pub fn run_stack(&self) -> Option<&str> {
        let first = &self.config.hosts.first()?.stack;
        self.config
            .hosts
            .iter()
            .all(|h| h.stack == *first)
            .then_some(first.as_str())
    }
}

/// A scenario file that cannot be used, with where and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScenarioError {
    pub file: PathBuf,
    /// 1-based; 0 when the error concerns the file as a whole.
    pub line: usize,
    pub column: usize,
    pub message: String,
    /// The offending line, for display.
    pub source_line: String,
}

impl std::fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.line == 0 {
            return write!(f, "{}: {}", self.file.display(), self.message);
        }
        write!(
            f,
            "{}:{}:{}: {}",
            self.file.display(),
            self.line,
            self.column,
            self.message
        )?;
        if !self.source_line.is_empty() {
            let gutter = self.line.to_string().len();
            let (shown, caret) = crate::locate::snippet(&self.source_line, self.column);
            write!(
                f,
                "\n{:gutter$} |\n{} | {}\n{:gutter$} | {:>col$}",
                "",
                self.line,
                shown,
                "",
                "^",
                col = caret
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for ScenarioError {}

/// Byte offset to 1-based line and column (in characters).
fn line_column(text: &str, offset: usize) -> (usize, usize, String) {
    let offset = offset.min(text.len());
    let offset = (0..=offset)
        .rev()
        .find(|&o| text.is_char_boundary(o))
        .unwrap_or(0);
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = text[line_start..offset].chars().count() + 1;
    let source_line = text[line_start..]
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    (line, column, source_line)
}

fn error_at(file: &Path, text: &str, offset: Option<usize>, message: String) -> ScenarioError {
    match offset {
        Some(offset) => {
            let (line, column, source_line) = line_column(text, offset);
            ScenarioError {
                file: file.to_path_buf(),
                line,
                column,
                message,
                source_line,
            }
        }
        None => ScenarioError {
            file: file.to_path_buf(),
            line: 0,
            column: 0,
            message,
            source_line: String::new(),
        },
    }
}

/// The byte offset where the value at `path` starts, or where its nearest existing parent
/// starts when the key itself is absent (a default was used).
fn locate(text: &str, path: &KeyPath) -> Option<usize> {
    let root = toml::de::DeTable::parse(text).ok()?;
    let mut span = root.span();
    let mut value: Option<&toml::de::DeValue<'_>> = None;
    let mut table = Some(root.get_ref());
    for part in &path.0 {
        let next = match part {
            PathPart::Key(key) => table.and_then(|t| t.get(key.as_str())),
            PathPart::Index(index) => value.and_then(|v| v.as_array()).and_then(|a| a.get(*index)),
        };
        let Some(next) = next else { break };
        span = next.span();
        value = Some(next.get_ref());
        table = next.get_ref().as_table();
    }
    Some(span.start)
}

/// Adds "did you mean" to serde's "unknown field `x`, expected one of `a`, `b`" messages.
fn with_suggestion(message: &str) -> String {
    let first_line = message
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .to_string();
    if !(first_line.starts_with("unknown field") || first_line.starts_with("unknown variant")) {
        return first_line;
    }
    let quoted: Vec<&str> = first_line.split('`').skip(1).step_by(2).collect();
    let Some((unknown, expected)) = quoted.split_first() else {
        return first_line;
    };
    match closest(unknown, expected.iter().copied()) {
        Some(guess) => format!("{first_line}; did you mean `{guess}`?"),
        None => first_line,
    }
}

/// Reads and parses the scenario file at `path`; `scenarios_root` is the folder whose
/// relative paths name scenarios; its hosts' stacks must be registered in `stacks`.
pub fn load(
    path: &Path,
    scenarios_root: &Path,
    stacks: &Registry,
) -> Result<Scenario, ScenarioError> {
    let bytes = std::fs::read(path).map_err(|e| {
        error_at(
            path,
            "",
            None,
            format!("cannot read the scenario file: {e}"),
        )
    })?;
    if let Some((byte, line, column, source_line)) = crate::locate::utf8_problem(&bytes) {
        return Err(ScenarioError {
            file: path.to_path_buf(),
            line,
            column,
            message: format!(
                "the file is not UTF-8 text: byte 0x{byte:02x} here cannot start a character; save the file as UTF-8"
            ),
            source_line,
        });
    }
    let text = String::from_utf8(bytes).unwrap_or_default();
    let expected_name = scenario_name(path, scenarios_root);
    parse(&text, path, expected_name.as_deref(), stacks)
}

/// The name a file at `path` must declare: its path under the root, without `.toml`.
pub fn scenario_name(path: &Path, scenarios_root: &Path) -> Option<String> {
    let relative = path_under(path, scenarios_root)?;
    let text = relative.with_extension("").to_str()?.replace('\\', "/");
    Some(text)
}

/// Why `name` cannot name a scenario: artifacts and goldens are written at `<folder>/<name>.*`,
/// so a name is a relative path of plain folder names.
fn name_problem(name: &str) -> Option<String> {
    let bad = name.is_empty()
        || name.starts_with('/')
        || name.contains('\\')
        || name
            .split('/')
            .any(|part| part.is_empty() || part == "." || part == "..");
    bad.then(|| {
        format!(
            "`{name}` cannot name a scenario: a name is a relative path of folder names separated by `/`, like `tcp/handshake`"
        )
    })
}

/// `path` relative to `root`, whichever way each is written (relative, absolute, with `..`):
/// compared as given first, then as the files they name.
pub fn path_under(path: &Path, root: &Path) -> Option<PathBuf> {
    if let Ok(relative) = path.strip_prefix(root) {
        return Some(relative.to_path_buf());
    }
    let path = std::fs::canonicalize(path).ok()?;
    let root = std::fs::canonicalize(root).ok()?;
    path.strip_prefix(root).ok().map(Path::to_path_buf)
}

/// Parses scenario `text` read from `file`. With `expected_name` (the file's path under the
/// root it was found in), a declared `name` must match it; without a declared name, the
/// scenario is called so (or after the file, when there is no expected name either). The
/// stacks its hosts and known failures name must be registered in `stacks`.
pub fn parse(
    text: &str,
    file: &Path,
    expected_name: Option<&str>,
    stacks: &Registry,
) -> Result<Scenario, ScenarioError> {
    let parsed: ScenarioFile = toml::from_str(text).map_err(|e| {
        // A value error is located by experiment (serde loses the positions inside tagged
        // tables); a syntax error keeps the parser's own position.
        match crate::locate::refine::<ScenarioFile>(text) {
            Some(refined) => error_at(file, text, Some(refined.offset), refined.message),
            None => {
                let offset = e.span().map(|s| s.start);
                error_at(file, text, offset, with_suggestion(e.message()))
            }
        }
    })?;
    let at = |path: KeyPath, message: String| error_at(file, text, locate(text, &path), message);
    let root = KeyPath::default();
    let name = match (&parsed.name, expected_name) {
        (Some(declared), Some(expected)) if declared != expected => {
            return Err(at(
                root.key("name"),
                format!(
                    "the scenario is called `{declared}` but its path says it is `{expected}`; \
                     write name = \"{expected}\" or leave `name` out (a name is the file's \
                     path under the folder it is run from)"
                ),
            ));
        }
        (Some(declared), _) => {
            if let Some(problem) = name_problem(declared) {
                return Err(at(root.key("name"), problem));
            }
            declared.clone()
        }
        (None, Some(expected)) => expected.to_string(),
        (None, None) => file
            .file_stem()
            .map(|stem| stem.to_string_lossy().into_owned())
            .unwrap_or_else(|| "scenario".to_string()),
    };
    let mut config = WorldConfig::new(parsed.seed);
    config.time_limit_us = parsed.time_limit_us;
    if let Some(steps) = parsed.step_limit {
        config.step_limit = steps;
    }
    config.segments = parsed.segments.clone();
    config.hosts = parsed.hosts.clone();
    config.events = parsed.events.clone();
    config.trace = TraceLevel::Frames;
    if let Some(capture) = &parsed.capture {
        config.capture = capture.clone();
    }
    // Where each host of the expanded world was written: its own table or its group.
    let mut host_origin: Vec<KeyPath> = (0..parsed.hosts.len())
        .map(|i| root.key("hosts").index(i))
        .collect();
    for (g, group) in parsed.host_groups.iter().enumerate() {
        let group_path = root.key("host_groups").index(g);
        if group.count == 0 || group.count > 100_000 {
            return Err(at(
                group_path.key("count"),
                format!(
                    "a host group needs between 1 and 100000 hosts, not {}",
                    group.count
                ),
            ));
        }
        if group.first_ipv4.is_none() && group.first_ipv6.is_none() {
            return Err(at(
                group_path,
                "a host group needs `first_ipv4` or `first_ipv6`".to_string(),
            ));
        }
        for n in 0..group.count {
            let mut host = HostConfig::new(format!("{}{}", group.prefix, n + 1), &group.segment);
            host.stack = group.stack.clone();
            host.ipv4_gateway = group.ipv4_gateway;
            host.ipv6_gateway = group.ipv6_gateway;
            host.ip_mtu_bytes = group.ip_mtu_bytes;
            host.congestion_control = group.congestion_control;
            host.tcp_buffer_bytes = group.tcp_buffer_bytes;
            host.link = group.link.clone();
            host.ipv4 = match group.first_ipv4 {
                Some(first) => Some(offset_cidr(first, n).ok_or_else(|| {
                    at(
                        group_path.key("first_ipv4"),
                        format!(
                            "{} hosts from {} run past the end of the address space",
                            group.count,
                            String::from(first)
                        ),
                    )
                })?),
                None => None,
            };
            host.ipv6 = match group.first_ipv6 {
                Some(first) => Some(offset_cidr(first, n).ok_or_else(|| {
                    at(
                        group_path.key("first_ipv6"),
                        format!(
                            "{} hosts run past the end of the address space",
                            group.count
                        ),
                    )
                })?),
                None => None,
            };
            config.hosts.push(host);
            host_origin.push(group_path.clone());
        }
    }
    let located = config
        .validate_located()
        .and_then(|()| config.check_stacks(stacks));
    located.map_err(|(path, error)| {
        // Errors about expanded hosts point at the table the host came from, and at the key
        // there when the group has it.
        let path = match path.0.as_slice() {
            [PathPart::Key(k), PathPart::Index(i), rest @ ..] if k == "hosts" => {
                let origin = host_origin[*i].clone();
                let group_key = match rest.first() {
                    Some(PathPart::Key(key)) if GROUP_HOST_KEYS.contains(&key.as_str()) => {
                        Some(rest.to_vec())
                    }
                    Some(PathPart::Key(key)) if key == "ipv4" || key == "ipv6" => {
                        Some(vec![PathPart::Key(format!("first_{key}"))])
                    }
                    _ => None,
                };
                if *i < parsed.hosts.len() {
                    KeyPath(origin.0.into_iter().chain(rest.iter().cloned()).collect())
                } else if let Some(key) = group_key {
                    KeyPath(origin.0.into_iter().chain(key).collect())
                } else {
                    origin
                }
            }
            _ => path,
        };
        at(path, error.to_string())
    })?;

    let host_names: Vec<&str> = config.hosts.iter().map(|h| h.name.as_str()).collect();
    let unknown_host = |path: KeyPath, name: &str| {
        let hint = did_you_mean(name, host_names.iter().copied());
        at(path, format!("there is no host called `{name}`{hint}"))
    };
    let mut apps = Vec::new();
    for (i, app) in parsed.apps.iter().enumerate() {
        let app_path = root.key("apps").index(i);
        let first = apps.len();
        let path = app_path.key("host");
        match app.host().strip_suffix('*') {
            Some(prefix) => {
                let matching: Vec<&str> = host_names
                    .iter()
                    .copied()
                    .filter(|h| h.starts_with(prefix))
                    .collect();
                if matching.is_empty() {
                    return Err(at(path, format!("no host name starts with `{prefix}`")));
                }
                for host in matching {
                    let mut app = app.clone();
                    *app.host_mut() = host.to_string();
                    apps.push(app);
                }
            }
            None => {
                if !host_names.contains(&app.host()) {
                    return Err(unknown_host(path, app.host()));
                }
                apps.push(app.clone());
            }
        }
        for app in &apps[first..] {
            let mtu = config
                .hosts
                .iter()
                .find(|h| h.name == app.host())
                .map_or(default_ip_mtu_bytes(), |h| h.ip_mtu_bytes);
            app.check(mtu)
                .map_err(|(key, message)| at(app_path.key(key), message))?;
        }
    }

    let mut expectation_apps = Vec::new();
    for (i, expectation) in parsed.expect.iter().enumerate() {
        let path = root.key("expect").index(i);
        let (host, kind) = match expectation {
            Expectation::Counter { host, app, .. }
            | Expectation::State { host, app, .. }
            | Expectation::Error { host, app, .. }
            | Expectation::Done { host, app, .. } => (Some(host), app.as_deref()),
            _ => (None, None),
        };
        let app_index = match host {
            Some(host) => {
                if !host_names.contains(&host.as_str()) {
                    return Err(unknown_host(path.key("host"), host));
                }
                let candidates: Vec<usize> = apps
                    .iter()
                    .enumerate()
                    .filter(|(_, a)| a.host() == host && kind.is_none_or(|k| a.kind_name() == k))
                    .map(|(i, _)| i)
                    .collect();
                match candidates.as_slice() {
                    [one] => Some(*one),
                    [] => {
                        return Err(at(
                            path.key(if kind.is_some() { "app" } else { "host" }),
                            format!(
                                "host `{host}` runs no {} application",
                                kind.unwrap_or("such")
                            ),
                        ))
                    }
                    _ => {
                        return Err(at(
                            path.key("host"),
                            format!(
                                "host `{host}` runs several applications; add `app = \"<kind>\"` to say which"
                            ),
                        ))
                    }
                }
            }
            None => None,
        };
        check_expectation(expectation, app_index.map(|a| &apps[a]), &host_names)
            .map_err(|(key, message)| at(path.key(key), message))?;
        expectation_apps.push(app_index);
    }

    // A finding or known failure may name a stack this program does not have (a plug-in the
    // library records findings of): it then never applies here. A name close to a registered
    // one is a misspelling, which would never apply anywhere.
    let misspelled = |path: KeyPath, name: &str| -> Option<ScenarioError> {
        if stacks.contains(name) || stack::check_name(name).is_err() {
            return stack::check_name(name)
                .err()
                .map(|problem| at(path.clone(), problem));
        }
        let guess = closest(name, stacks.names())?;
        Some(at(
            path,
            format!(
                "there is no stack called `{name}`; did you mean `{guess}`? (registered: {})",
                stacks.names().collect::<Vec<_>>().join(", ")
            ),
        ))
    };
    for (i, expectation) in parsed.expect.iter().enumerate() {
        if let Expectation::Finding {
            stack: Some(only), ..
        } = expectation
        {
            if let Some(error) = misspelled(root.key("expect").index(i).key("stack"), only) {
                return Err(error);
            }
        }
    }
    for (i, known) in parsed.known_failures.iter().enumerate() {
        let path = root.key("known_failures").index(i);
        if let Some(error) = misspelled(path.key("stack"), &known.stack) {
            return Err(error);
        }
        let Some(expectation) = known
            .expect
            .checked_sub(1)
            .and_then(|e| parsed.expect.get(e))
        else {
            return Err(at(
                path.key("expect"),
                format!(
                    "`expect` is the number of an [[expect]] table, 1 to {}, not {}",
                    parsed.expect.len(),
                    known.expect
                ),
            ));
        };
        if let Expectation::Finding {
            stack: Some(only), ..
        } = expectation
        {
            if *only != known.stack {
                return Err(at(
                    path.key("stack"),
                    format!(
                        "[[expect]] number {} is a finding of {only} only, so {} never runs it",
                        known.expect, known.stack
                    ),
                ));
            }
        }
        if known.requirement.is_empty() {
            return Err(at(
                path.key("requirement"),
                "name the requirement the stack breaks, like `rfc6298:5.5`".to_string(),
            ));
        }
        if parsed.known_failures[..i]
            .iter()
            .any(|k| k.stack == known.stack && k.expect == known.expect)
        {
            return Err(at(
                path,
                format!(
                    "[[expect]] number {} is already a known failure of {}",
                    known.expect, known.stack
                ),
            ));
        }
    }

    Ok(Scenario {
        name,
        path: file.to_path_buf(),
        description: parsed.description,
        requirements: parsed.requirements,
        config,
        apps,
        expectation_numbers: (1..=parsed.expect.len()).collect(),
        expectations: parsed.expect,
        expectation_apps,
        known_failures: parsed.known_failures,
    })
}

fn offset_cidr(first: Cidr, n: u32) -> Option<Cidr> {
    let addr = match first.addr {
        IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(a).checked_add(n)?)),
        IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(u128::from(a).checked_add(u128::from(n))?)),
    };
    Some(Cidr {
        addr,
        prefix_len: first.prefix_len,
    })
}

/// The JSON Schema of scenario files, as checked in at `scenarios/schema.json`.
pub fn json_schema() -> String {
    let schema = schemars::schema_for!(ScenarioFile);
    let mut text = serde_json::to_string_pretty(&schema).unwrap_or_default();
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check_on;
    use sim::world::RunOptions;

    fn stacks() -> Registry {
        backends::builtin()
    }

    const GOOD: &str = r#"
name = "t/ok"
description = "two hosts"

[[segments]]
name = "lan"
kind = "switch"

[[hosts]]
name = "client"
segment = "lan"
ipv4 = "10.0.0.1/24"

[[hosts]]
name = "server"
segment = "lan"
ipv4 = "10.0.0.2/24"

[[apps]]
kind = "ping"
host = "client"
target = "10.0.0.2"

[[expect]]
check = "counter"
host = "client"
counter = "replies_received"
equals = 4
"#;

    fn err(text: &str) -> ScenarioError {
        parse(text, Path::new("s.toml"), None, &stacks()).expect_err("the scenario is invalid")
    }

    #[test]
    fn a_good_file_parses() {
        let s = parse(GOOD, Path::new("s.toml"), Some("t/ok"), &stacks()).expect("valid");
        assert_eq!(s.config.hosts.len(), 2);
        assert_eq!(s.apps.len(), 1);
        assert_eq!(s.expectation_apps, vec![Some(0)]);
    }

    #[test]
    fn unknown_keys_point_at_their_line_and_suggest() {
        let e = err(&GOOD.replace("ipv4 = \"10.0.0.2/24\"", "ipv44 = \"10.0.0.2/24\""));
        assert_eq!((e.line, e.column), (17, 1), "{e}");
        assert!(e.message.contains("did you mean `ipv4`?"), "{e}");
    }

    #[test]
    fn a_misspelled_segment_is_located_and_suggested() {
        let text = GOOD.replacen("segment = \"lan\"", "segment = \"lna\"", 1);
        let e = err(&text);
        assert_eq!((e.line, e.column), (11, 11), "{e}");
        assert!(e.message.contains("did you mean `lan`?"), "{e}");
        let shown = e.to_string();
        assert!(shown.starts_with("s.toml:11:11: "), "{shown}");
        assert!(shown.contains("segment = \"lna\""), "{shown}");
    }

    #[test]
    fn a_misspelled_app_host_is_located() {
        let e = err(&GOOD.replace("host = \"client\"\ntarget", "host = \"clent\"\ntarget"));
        assert_eq!(e.line, 21, "{e}");
        assert!(e.message.contains("did you mean `client`?"), "{e}");
    }

    #[test]
    fn a_misspelled_counter_is_caught() {
        let e = err(&GOOD.replace("replies_received", "replys_received"));
        assert_eq!(e.line, 27, "{e}");
        assert!(
            e.message.contains("did you mean `replies_received`?"),
            "{e}"
        );
    }

    #[test]
    fn bad_values_name_their_place() {
        let e = err(&GOOD.replace("ipv4 = \"10.0.0.1/24\"", "ipv4 = \"10.0.0.1\""));
        assert_eq!(e.line, 12, "{e}");
        assert!(e.message.contains("prefix length"), "{e}");
        let e = err(&GOOD.replace("10.0.0.2/24", "10.0.0.1/24"));
        assert_eq!(e.line, 17, "{e}");
        assert!(e.message.contains("both have address"), "{e}");
        let e = err(&format!(
            "{GOOD}\n[[events]]\nat_us = 5\naction = \"link_down\"\nhost = \"sever\"\n"
        ));
        assert_eq!(e.line, 33, "{e}");
        assert!(e.message.contains("did you mean `server`?"), "{e}");
    }

    #[test]
    fn a_name_that_would_lead_out_of_a_folder_is_refused() {
        for name in ["../escape", "/abs", "a//b", "a/./b", ""] {
            let e = err(&GOOD.replace("name = \"t/ok\"", &format!("name = {name:?}")));
            assert_eq!(e.line, 2, "{name}: {e}");
            assert!(e.message.contains("cannot name a scenario"), "{name}: {e}");
        }
    }

    #[test]
    fn a_wrong_name_is_reported() {
        let e =
            parse(GOOD, Path::new("s.toml"), Some("t/other"), &stacks()).expect_err("name differs");
        assert_eq!(e.line, 2, "{e}");
    }

    #[test]
    fn broken_toml_is_an_error_not_a_panic() {
        for text in [
            "name = ",
            "[[hosts]\n",
            "\u{0}",
            "name = \"a\"\nname = \"b\"",
            "",
        ] {
            let e = err(text);
            assert!(!e.message.is_empty());
        }
    }

    /// GOOD with the ping's reply count expected to be `equals`, and these tables added.
    fn with_known(equals: u32, extra: &str) -> Result<Scenario, ScenarioError> {
        let text = GOOD.replace("equals = 4", &format!("equals = {equals}"));
        parse(
            &format!("{text}\n{extra}"),
            Path::new("s.toml"),
            None,
            &stacks(),
        )
    }

    const KNOWN: &str =
        "[[known_failures]]\nstack = \"smoltcp\"\nexpect = 1\nrequirement = \"rfc792:echo\"\n";

    #[test]
    fn a_known_failure_must_fail_exactly_as_recorded() {
        let run = |s: &Scenario, stack| {
            check_on(s, stack, 1, &stacks(), &RunOptions::default()).expect("runs")
        };
        // Four replies arrive; expecting five fails, and the known failure accepts that.
        let known = with_known(5, KNOWN).expect("valid");
        let checked = run(&known, None);
        assert!(checked.passed(), "{:?}", checked.problems);
        assert!(!checked.expectations[0].passed);
        assert!(checked.expectations[0]
            .expectation
            .ends_with("[known failure of smoltcp: rfc792:echo]"));
        // With the observation recorded, another one fails the run.
        let exact = with_known(5, &format!("{KNOWN}observed = \"4\"\n")).expect("valid");
        assert!(run(&exact, None).passed());
        let other = with_known(5, &format!("{KNOWN}observed = \"3\"\n")).expect("valid");
        let problems = run(&other, None).problems;
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].starts_with("expected "), "{problems:?}");
        assert!(problems[1].contains("fails differently"), "{problems:?}");
        // A stack that is fixed is noticed.
        let fixed = with_known(4, KNOWN).expect("valid");
        let problems = run(&fixed, None).problems;
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("no longer fails"), "{problems:?}");
        // Another stack's known failure does not apply: the expectation fails plainly.
        let lwip_only = with_known(5, &KNOWN.replace("smoltcp", "lwip")).expect("valid");
        let checked = run(&lwip_only, None);
        assert_eq!(checked.problems.len(), 1, "{:?}", checked.problems);
        assert!(
            checked.problems[0].starts_with("expected "),
            "{:?}",
            checked.problems
        );
    }

    #[test]
    fn known_failures_and_stack_findings_are_checked_when_read() {
        let e = with_known(4, &KNOWN.replace("expect = 1", "expect = 2")).expect_err("no 2nd");
        assert!(e.message.contains("1 to 1, not 2"), "{e}");
        assert_eq!(e.line, 32, "{e}");
        let e = with_known(4, &KNOWN.replace("rfc792:echo", "")).expect_err("empty");
        assert!(e.message.contains("requirement"), "{e}");
        let e = with_known(4, &format!("{KNOWN}{KNOWN}")).expect_err("twice");
        assert!(e.message.contains("already a known failure"), "{e}");
        let e = with_known(4, &KNOWN.replace("stack = \"smoltcp\"", "stack = \"lwp\""))
            .expect_err("no such stack");
        assert!(e.message.contains("did you mean `lwip`?"), "{e}");
        // A stack this program does not have, and not a misspelling: recorded, never applied.
        let other = with_known(
            4,
            &KNOWN.replace("stack = \"smoltcp\"", "stack = \"pytcp\""),
        )
        .expect("a plug-in's known failure reads without the plug-in");
        assert!(other.on_stack(None).known_failures.is_empty());
        let e = with_known(
            4,
            &KNOWN.replace("stack = \"smoltcp\"", "stack = \"my stack\""),
        )
        .expect_err("not a name");
        assert!(e.message.contains("is not a stack name"), "{e}");
        let finding = "[[expect]]\ncheck = \"finding\"\nrule = \"checksum\"\nrequirement = \"r\"\nstack = \"lwip\"\nequals = 0\n";
        let e = with_known(
            4,
            &format!("{finding}{}", KNOWN.replace("expect = 1", "expect = 2")),
        )
        .expect_err("smoltcp never runs an lwIP finding");
        assert!(e.message.contains("finding of lwip only"), "{e}");
        // A stack's finding is judged only with every host on that stack.
        let s = with_known(4, finding).expect("valid");
        assert_eq!(s.on_stack(None).expectations.len(), 1);
        assert_eq!(s.on_stack(Some("lwip")).expectations.len(), 2);
        assert_eq!(s.on_stack(Some("lwip")).expectation_numbers, [1, 2]);
        assert_eq!(parse_stack("lwip", &stacks()), Ok("lwip".to_string()));
        assert!(parse_stack("lwipp", &stacks()).is_err_and(|e| e.contains("did you mean `lwip`?")));
    }

    #[test]
    fn host_groups_expand_with_consecutive_addresses() {
        let text = GOOD.replace(
            "[[apps]]",
            "[[host_groups]]\nprefix = \"h\"\ncount = 3\nsegment = \"lan\"\nfirst_ipv4 = \"10.0.1.254/16\"\n\n[[apps]]\nkind = \"ping\"\nhost = \"h*\"\ntarget = \"10.0.0.2\"\n\n[[apps]]",
        );
        let s = parse(&text, Path::new("s.toml"), None, &stacks()).expect("valid");
        let names: Vec<&str> = s.config.hosts.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["client", "server", "h1", "h2", "h3"]);
        assert_eq!(
            s.config.hosts[4].ipv4.map(|c| c.addr.to_string()),
            Some("10.0.2.0".to_string())
        );
        assert_eq!(s.apps.len(), 4);
    }

    #[test]
    fn a_host_group_gives_its_settings_to_every_host_and_errors_point_at_its_keys() {
        let group = "[[host_groups]]\nprefix = \"h\"\ncount = 2\nsegment = \"lan\"\n\
                     first_ipv4 = \"10.0.1.1/16\"\nip_mtu_bytes = 576\n\
                     congestion_control = \"reno\"\ntcp_buffer_bytes = 4096\n\
                     ipv4_gateway = \"10.0.0.254\"\n\
                     link.to_segment.loss = { model = \"independent\", probability = 0.01 }\n\n\
                     [[apps]]";
        let text = GOOD.replacen("[[apps]]", group, 1);
        let s = parse(&text, Path::new("s.toml"), None, &stacks()).expect("valid");
        for host in &s.config.hosts[2..] {
            assert_eq!(host.ip_mtu_bytes, 576);
            assert_eq!(host.congestion_control, CongestionControlConfig::Reno);
            assert_eq!(host.tcp_buffer_bytes, 4096);
            assert_eq!(host.ipv4_gateway, Some("10.0.0.254".parse().unwrap()));
            assert_eq!(
                host.link.to_segment.loss,
                sim::config::LossModel::Independent { probability: 0.01 }
            );
            assert!(host.link.from_segment.is_transparent());
        }
        // The hosts of [[hosts]] keep their own defaults.
        assert_eq!(s.config.hosts[0].ip_mtu_bytes, 1500);

        // An MTU the group gives its hosts is reported at the group's value.
        let e = err(&text.replace("ip_mtu_bytes = 576", "ip_mtu_bytes = 60"));
        let line = text
            .lines()
            .position(|l| l.starts_with("ip_mtu_bytes"))
            .expect("the key is there")
            + 1;
        assert_eq!(
            (e.line, e.column),
            (line, "ip_mtu_bytes = ".len() + 1),
            "{e}"
        );
        assert!(e.to_string().contains("ip_mtu_bytes"), "{e}");
    }
}
