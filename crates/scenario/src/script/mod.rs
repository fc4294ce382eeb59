//! Conformance scripts: packetdrill-style scripts (`scenarios/scripts/**/*.pkt`) that a scripted peer plays against one stack in virtual time.
//!
//! A script injects exactly the packets a test wants (`<`), expects exactly the packets the
//! RFCs require at exactly the time they require (`>`), and makes socket calls on the stack
//! under test with their expected results. [`load`] parses a file (errors name the line and
//! column), [`run`] plays it against a backend, and [`judge`] compares the run with the
//! failures the script declares as known findings for that backend.
//!
//! Addresses and ports are packetdrill's defaults: the stack under test is 192.168.0.1/16
//! with the gateway 192.168.0.2, the scripted peer is 192.0.2.1 behind it, the stack listens
//! on (or connects to) port 8080. Sequence numbers in `<` lines are relative to the peer's
//! initial sequence number (the injected SYN's number is the base), those in `>` lines to
//! the stack's, learned from its first SYN.

mod parse;
mod run;

use std::fmt;
use std::path::{Path, PathBuf};

pub use parse::SUPPORTED_CALLS;
pub use run::{run, ScriptRun, LOCAL_IP, REMOTE_IP};

/// One parsed script.
#[derive(Clone, Debug)]
pub struct Script {
    /// The path under `scenarios/scripts/` without the extension, like `tcp/rst_closed_port`.
    pub name: String,
    pub path: PathBuf,
    /// The requirement ids the script exercises (`// requirements: ...` comments).
    pub requirements: Vec<String>,
    /// Failures the script is known to show on some backend, each a finding against a
    /// requirement (`// known-failure <backend> line <N>: <id> <what happens>`).
    pub known_failures: Vec<KnownFailure>,
    /// packetdrill's `--tolerance_usecs`, for real-time (linux) runs; virtual time is exact.
    pub tolerance_us: Option<u64>,
    /// Backends the script cannot judge, each with the reason (`// not-on <backend>: <why>`);
    /// the run reports the reason instead of playing.
    pub not_on: Vec<(String, String)>,
    pub events: Vec<Event>,
}

impl Script {
    /// The failure this script is known to show on `backend`, if any.
    pub fn known_failure(&self, backend: &str) -> Option<&KnownFailure> {
        self.known_failures.iter().find(|f| f.backend == backend)
    }
}

/// A finding recorded in a script: on `backend`, the script fails at `line`, breaking
/// `requirement`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KnownFailure {
    pub backend: String,
    pub line: usize,
    pub requirement: String,
    pub description: String,
    /// Where the comment is, for messages.
    pub declared_at_line: usize,
}

/// One timed line of a script.
#[derive(Clone, Debug)]
pub struct Event {
    pub line: usize,
    pub column: usize,
    pub time: TimeSpec,
    pub action: Action,
    /// The line as written, for messages and traces.
    pub text: String,
}

/// When an event happens, in microseconds; relative times count from the previous event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeSpec {
    At {
        relative: bool,
        start_us: u64,
    },
    /// An expected packet may appear anywhere in this range (`+0.3~+0.4`).
    Range {
        relative: bool,
        start_us: u64,
        end_relative: bool,
        end_us: u64,
    },
    /// A blocking call that starts at the first time and must return at the second
    /// (`+0...0.1`).
    Blocking {
        relative: bool,
        start_us: u64,
        end_relative: bool,
        end_us: u64,
    },
    /// `*`: an expected packet at any time.
    Any,
}

#[derive(Clone, Debug)]
pub enum Action {
    Inject(Packet),
    Expect(Packet),
    Call(Syscall),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Packet {
    Tcp(TcpPacket),
    Udp { payload_len: u32 },
    Icmp(IcmpPacket),
}

/// TCP flags as their bits in the header, spelled as packetdrill does when displayed.
pub use wire::TcpFlags;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcpPacket {
    pub flags: TcpFlags,
    /// Relative to the sender's initial sequence number.
    pub seq: u32,
    pub payload_len: u32,
    /// Relative to the receiver's initial sequence number.
    pub ack: Option<u32>,
    /// The raw window field; an expected packet without `win` accepts any.
    pub window: Option<u16>,
    pub urgent: Option<u16>,
    /// `None`: an injected packet carries none, an expected one must carry none.
    pub options: Option<OptionList>,
    /// wirelab's extension for injected packets: other addresses and IP options.
    pub ip: IpOverrides,
}

/// What an injected TCP packet changes at the IP layer (wirelab's extension, for the
/// requirements about invalid addresses and IP options): `from 224.0.0.9`, `to 255.255.255.255`,
/// `ipopt 0x9404000001000000` (raw option bytes, padded to whole words).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IpOverrides {
    pub source: Option<std::net::Ipv4Addr>,
    pub destination: Option<std::net::Ipv4Addr>,
    pub options: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OptionList {
    /// `<...>`: any options.
    Any,
    /// These options in this order (NOP and EOL padding are compared too when listed).
    Exactly(Vec<TcpOption>),
    /// `<mss 1460, ...>`: wirelab's extension; at least these, in any order, padding ignored.
    AtLeast(Vec<TcpOption>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TcpOption {
    Nop,
    Eol,
    Mss(u16),
    WindowScale(u8),
    SackPermitted,
    /// Blocks relative to the ISN of the side whose data they acknowledge: the stack's in
    /// injected packets, the peer's in expected ones.
    Sack(Vec<(u32, u32)>),
    Timestamp {
        value: u32,
        echo: u32,
    },
    Other {
        kind: u8,
        data: Vec<u8>,
    },
    /// An injected option whose length byte lies (`opt 253 0x01 len 40`), for the requirement
    /// that impossible option lengths are survived.
    BadLength {
        kind: u8,
        length: u8,
        data: Vec<u8>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IcmpPacket {
    pub icmp_type: u8,
    pub code: u8,
    /// The echo payload length (echo lines only).
    pub payload_len: Option<u32>,
    /// The next-hop MTU of a "fragmentation needed" message.
    pub mtu: Option<u16>,
}

#[derive(Clone, Debug)]
pub struct Syscall {
    pub name: String,
    pub args: Vec<Arg>,
    pub result: CallResult,
    pub column: usize,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Arg {
    /// `...`: packetdrill's default (an address, a length).
    Ellipsis,
    Int(i64),
    /// A name or names joined with `|`: `SOCK_STREAM`, `O_RDWR|O_NONBLOCK`.
    Names(Vec<String>),
    /// `[1]`: a value passed or returned by reference.
    Array(Vec<Arg>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallResult {
    Value(i64),
    Error(String),
}

impl fmt::Display for CallResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallResult::Value(v) => write!(f, "{v}"),
            CallResult::Error(e) => write!(f, "-1 {e}"),
        }
    }
}

/// The errno names a script may expect, with Linux's numbers (what `SO_ERROR` reports).
pub const ERRNO_NAMES: &[&str] = &[
    "EPERM",
    "ENOENT",
    "EINTR",
    "EBADF",
    "EAGAIN",
    "EWOULDBLOCK",
    "EINVAL",
    "EPIPE",
    "ENOTSOCK",
    "EOPNOTSUPP",
    "EADDRINUSE",
    "ENETUNREACH",
    "ECONNABORTED",
    "ECONNRESET",
    "EISCONN",
    "ENOTCONN",
    "ETIMEDOUT",
    "ECONNREFUSED",
    "EHOSTUNREACH",
    "EALREADY",
    "EINPROGRESS",
    "ENOPROTOOPT",
    "EFAULT",
    "EACCES",
    "ENOMEM",
    "EMSGSIZE",
    "ENOBUFS",
    "EDESTADDRREQ",
    "EAFNOSUPPORT",
    "EADDRNOTAVAIL",
    "ENETDOWN",
    "EHOSTDOWN",
];

/// Linux's number for an errno name.
pub fn errno_value(name: &str) -> Option<i64> {
    Some(match name {
        "EPERM" => 1,
        "ENOENT" => 2,
        "EINTR" => 4,
        "EBADF" => 9,
        "EAGAIN" | "EWOULDBLOCK" => 11,
        "EINVAL" => 22,
        "EPIPE" => 32,
        "ENOTSOCK" => 88,
        "ENOPROTOOPT" => 92,
        "EOPNOTSUPP" => 95,
        "EADDRINUSE" => 98,
        "ENETUNREACH" => 101,
        "ECONNABORTED" => 103,
        "ECONNRESET" => 104,
        "EISCONN" => 106,
        "ENOTCONN" => 107,
        "ETIMEDOUT" => 110,
        "ECONNREFUSED" => 111,
        "EHOSTUNREACH" => 113,
        "EALREADY" => 114,
        "EINPROGRESS" => 115,
        "EFAULT" => 14,
        "EACCES" => 13,
        "ENOMEM" => 12,
        "EMSGSIZE" => 90,
        "ENOBUFS" => 105,
        "EDESTADDRREQ" => 89,
        "EAFNOSUPPORT" => 97,
        "EADDRNOTAVAIL" => 99,
        "ENETDOWN" => 100,
        "EHOSTDOWN" => 112,
        _ => return None,
    })
}

/// Why a script could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScriptErrorKind {
    Io,
    Parse,
    /// A construct of packetdrill's language outside the subset wirelab runs.
    Unsupported,
}

/// A script that cannot be read, with where and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScriptError {
    pub path: PathBuf,
    pub line: usize,
    pub column: usize,
    pub kind: ScriptErrorKind,
    pub message: String,
    pub hint: Option<String>,
    /// The offending line as written.
    pub source_line: String,
}

impl fmt::Display for ScriptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let prefix = match self.kind {
            ScriptErrorKind::Unsupported => "unsupported: ",
            _ => "",
        };
        if self.line == 0 {
            // About the file as a whole: there is no position to give.
            write!(f, "{}: {prefix}{}", self.path.display(), self.message)?;
        } else {
            write!(
                f,
                "{}:{}:{}: {prefix}{}",
                self.path.display(),
                self.line,
                self.column,
                self.message
            )?;
        }
        if self.kind == ScriptErrorKind::Unsupported {
            write!(f, " at line {}", self.line)?;
        }
        if !self.source_line.is_empty() && self.line > 0 {
            let (shown, caret) = crate::locate::snippet(&self.source_line, self.column);
            write!(
                f,
                "\n  {} | {}\n  {} | {}^",
                self.line,
                shown,
                " ".repeat(self.line.to_string().len()),
                " ".repeat(caret.saturating_sub(1))
            )?;
        }
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ScriptError {}

/// Reads and parses the script at `path`, called `name`.
pub fn load_named(path: &Path, name: &str) -> Result<Script, ScriptError> {
    let bytes = std::fs::read(path).map_err(|e| ScriptError {
        path: path.to_path_buf(),
        line: 0,
        column: 0,
        kind: ScriptErrorKind::Io,
        message: format!("cannot read the script: {e}"),
        hint: None,
        source_line: String::new(),
    })?;
    if let Some(nul) = bytes.iter().position(|&b| b == 0) {
        // A binary file: its first NUL byte is where it stops being text.
        let (line, column, source_line) = match crate::locate::utf8_problem(&bytes[..nul]) {
            Some((_, line, column, shown)) => (line, column, shown),
            None => {
                let before = std::str::from_utf8(&bytes[..nul]).unwrap_or_default();
                let line_start = before.rfind('\n').map_or(0, |i| i + 1);
                (
                    before.matches('\n').count() + 1,
                    before[line_start..].chars().count() + 1,
                    before[line_start..].to_string(),
                )
            }
        };
        return Err(ScriptError {
            path: path.to_path_buf(),
            line,
            column,
            kind: ScriptErrorKind::Parse,
            message: "the file is binary (it holds a NUL byte here), not a script".into(),
            hint: Some("a script is UTF-8 text, one time and action per line".into()),
            source_line,
        });
    }
    if let Some((byte, line, column, source_line)) = crate::locate::utf8_problem(&bytes) {
        return Err(ScriptError {
            path: path.to_path_buf(),
            line,
            column,
            kind: ScriptErrorKind::Parse,
            message: format!(
                "the file is not UTF-8 text: byte 0x{byte:02x} here cannot start a character"
            ),
            hint: Some("save the script as UTF-8".into()),
            source_line,
        });
    }
    let text = String::from_utf8(bytes).unwrap_or_default();
    parse(&text, path, name)
}

/// Parses script text; `path` and `name` are for messages and results.
pub fn parse(text: &str, path: &Path, name: &str) -> Result<Script, ScriptError> {
    let parsed = parse::parse_script(text).map_err(|e| ScriptError {
        path: path.to_path_buf(),
        line: e.line,
        column: e.column,
        kind: e.kind,
        message: e.message,
        hint: e.hint,
        source_line: text
            .lines()
            .nth(e.line.saturating_sub(1))
            .unwrap_or_default()
            .to_string(),
    })?;
    let script = Script {
        name: name.to_string(),
        path: path.to_path_buf(),
        requirements: parsed.requirements,
        known_failures: parsed.known_failures,
        tolerance_us: parsed.tolerance_us,
        not_on: parsed.not_on,
        events: parsed.events,
    };
    for failure in &script.known_failures {
        if !script.events.iter().any(|e| e.line == failure.line) {
            return Err(ScriptError {
                path: path.to_path_buf(),
                line: failure.declared_at_line,
                column: 1,
                kind: ScriptErrorKind::Parse,
                message: format!(
                    "the known failure on {} names line {}, which holds no packet or call",
                    failure.backend, failure.line
                ),
                hint: Some("name the line of the packet or call that fails".into()),
                source_line: String::new(),
            });
        }
    }
    Ok(script)
}

/// How a run compares with what the script declares for its backend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The script passed and declares no failure on this backend.
    Passed,
    /// The backend cannot play this script, for the reason given (a linux run that would take
    /// too long in real time).
    NotRun(String),
    /// The script failed exactly where it declares a known failure: a finding, still there.
    KnownFailure(KnownFailure),
    /// Anything else: a new failure, a failure at another line, or a known failure that no
    /// longer happens (the finding is fixed, so the script must say so).
    Unexpected(String),
}

/// Judges a run against the script's declarations for the run's backend.
pub fn judge(script: &Script, run: &ScriptRun) -> Verdict {
    if let Some(reason) = &run.not_run {
        return Verdict::NotRun(reason.clone());
    }
    let known = script.known_failure(&run.backend);
    match (&run.failure, known) {
        (None, None) => Verdict::Passed,
        (Some(failure), Some(known)) if failure.line == known.line => {
            Verdict::KnownFailure(known.clone())
        }
        (Some(failure), Some(known)) => Verdict::Unexpected(format!(
            "{}: failed at line {} where line {} is the known failure on {} ({}):\n{}",
            script.name, failure.line, known.line, run.backend, known.requirement, failure.message
        )),
        (Some(failure), None) => Verdict::Unexpected(format!(
            "{} on {}: line {}: {}",
            script.name, run.backend, failure.line, failure.message
        )),
        (None, Some(known)) => Verdict::Unexpected(format!(
            "{} on {} passed, but the script records a known failure at line {} ({} {}): the finding looks fixed; remove the known-failure comment",
            script.name, run.backend, known.line, known.requirement, known.description
        )),
    }
}
