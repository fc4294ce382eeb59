//! Golden files: byte-exact comparison of captures with the blessed ones, a readable account of the first difference, and atomic writes.

use std::fmt::Write;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use wire::capture::read_capture;
use wire::format_time;
use wire::frame::{IpHeader, Net, Transport};
use wire::Decoded;

use crate::format::Scenario;

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
            let (golden, actual) = (Decoded::parse(&e.data), Decoded::parse(&a.data));
            let _ = writeln!(
                detail,
                "  golden: {} {}",
                format_time(e.time_us),
                golden.line()
            );
            let _ = writeln!(
                detail,
                "  actual: {} {}",
                format_time(a.time_us),
                actual.line()
            );
            if e.time_us != a.time_us {
                let _ = writeln!(detail, "  time: {} vs {} µs", e.time_us, a.time_us);
            }
            for line in decoded_differences(&golden, &actual) {
                let _ = writeln!(detail, "  {line}");
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
///
/// Those are the goldens of the scenario as written. A run with every host moved onto another
/// stack (`cargo xtask scenarios --stack lwip`) has goldens of its own beside them, the same
/// names with `@<stack>` after the scenario's name: `golden/<name>@lwip.snap`,
/// `golden/<name>@lwip.pcapng`, `golden/<name>@lwip.<segment>.pcapng`. [`golden_variant`]
/// says which set a run uses; this is the one place that spells the names.
pub struct GoldenPaths {
    pub snapshot: PathBuf,
    /// `(segment, path)` in segment order.
    pub captures: Vec<(String, PathBuf)>,
}

/// What separates a stack's goldens from the scenario's own: `@` and the stack's name.
pub const VARIANT_MARK: char = '@';

/// The golden set of a run of `scenario` with every host on `stack` (`None`: as written):
/// `None` for the scenario's own goldens, which a run that changes no host also uses, or
/// `Some("lwip")` for `golden/<name>@lwip.*`.
pub fn golden_variant<'a>(scenario: &Scenario, stack: Option<&'a str>) -> Option<&'a str> {
    let stack = stack?;
    if scenario.config.hosts.iter().all(|h| h.stack == stack) {
        None
    } else {
        Some(stack)
    }
}

pub fn golden_paths(
    golden_root: &Path,
    scenario_name: &str,
    variant: Option<&str>,
    segments: &[String],
    extension: &str,
) -> GoldenPaths {
    let base = match variant {
        Some(stack) => golden_root.join(format!("{scenario_name}{VARIANT_MARK}{stack}")),
        None => golden_root.join(scenario_name),
    };
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

/// Whether `relative` (a path under `golden/`, with `/` separators) is a golden of the
/// scenario `name`: its own (`<name>.<rest>`) or that of one of `stacks`
/// (`<name>@<stack>.<rest>`), with no further folder in `<rest>`.
pub fn belongs_to<'a>(
    relative: &str,
    name: &str,
    stacks: impl IntoIterator<Item = &'a str>,
) -> bool {
    let Some(rest) = relative.strip_prefix(name) else {
        return false;
    };
    let own = |rest: &str| rest.starts_with('.') && !rest[1..].contains('/');
    match rest.strip_prefix(VARIANT_MARK) {
        Some(variant) => stacks
            .into_iter()
            .any(|stack| variant.strip_prefix(stack).is_some_and(own)),
        None => own(rest),
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

/// The header fields of a frame that a reader compares, by name, as text.
fn frame_fields(d: &Decoded) -> Vec<(&'static str, String)> {
    let mut fields = Vec::new();
    let Some(eth) = &d.ethernet else {
        return fields;
    };
    fields.push(("eth.src", format!("{:02x?}", eth.src.0)));
    fields.push(("eth.dst", format!("{:02x?}", eth.dst.0)));
    fields.push(("eth.type", format!("{:#06x}", eth.ether_type)));
    match &d.net {
        Some(Net::Ip(ip)) => match ip.header {
            IpHeader::V4 {
                id,
                total_len,
                checksum,
                ..
            } => {
                fields.push(("ip.src", ip.src.to_string()));
                fields.push(("ip.dst", ip.dst.to_string()));
                fields.push(("ip.id", id.to_string()));
                fields.push(("ip.ttl", ip.hop_limit.to_string()));
                fields.push(("ip.len", total_len.to_string()));
                fields.push(("ip.checksum", format!("{checksum:#06x}")));
            }
            IpHeader::V6 { payload_len } => {
                fields.push(("ip6.src", ip.src.to_string()));
                fields.push(("ip6.dst", ip.dst.to_string()));
                fields.push(("ip6.hlim", ip.hop_limit.to_string()));
                fields.push(("ip6.plen", payload_len.to_string()));
            }
        },
        Some(Net::Arp(arp)) => {
            fields.push(("arp.op", arp.operation.to_string()));
            // Only Ethernet/IPv4 ARP keeps its addresses; others compare by their header.
            if let Some(a) = &arp.addresses {
                fields.push(("arp.sender", format!("{:02x?}", a.sender_ip.octets())));
                fields.push(("arp.target", format!("{:02x?}", a.target_ip.octets())));
            }
        }
        None => {}
    }
    match &d.transport {
        Some(Transport::Tcp(t)) => {
            fields.push(("tcp.sport", t.src_port.to_string()));
            fields.push(("tcp.dport", t.dst_port.to_string()));
            fields.push(("tcp.seq", t.seq.to_string()));
            fields.push(("tcp.ack", t.ack.to_string()));
            fields.push(("tcp.flags", t.flags.to_string()));
            fields.push(("tcp.window", t.window.to_string()));
            fields.push(("tcp.options", format!("{:?}", t.options)));
            fields.push(("tcp.checksum", format!("{:#06x}", t.checksum)));
            fields.push(("tcp.payload_len", t.payload.len().to_string()));
        }
        Some(Transport::Udp(u)) => {
            fields.push(("udp.sport", u.src_port.to_string()));
            fields.push(("udp.dport", u.dst_port.to_string()));
            fields.push(("udp.len", u.length.to_string()));
            fields.push(("udp.checksum", format!("{:#06x}", u.checksum)));
        }
        Some(Transport::Icmpv4(i)) => {
            fields.push(("icmp.type", i.icmp_type.to_string()));
            fields.push(("icmp.code", i.code.to_string()));
            fields.push(("icmp.checksum", format!("{:#06x}", i.checksum)));
        }
        Some(Transport::Icmpv6(i)) => {
            fields.push(("icmp6.type", i.icmp_type.to_string()));
            fields.push(("icmp6.code", i.code.to_string()));
            fields.push(("icmp6.checksum", format!("{:#06x}", i.checksum)));
        }
        _ => {}
    }
    fields
}

/// One line per header field that differs between two frames, `name: golden -> actual`.
pub fn field_differences(golden: &[u8], actual: &[u8]) -> Vec<String> {
    decoded_differences(&Decoded::parse(golden), &Decoded::parse(actual))
}

/// [`field_differences`] of two frames already decoded.
pub fn decoded_differences(golden: &Decoded, actual: &Decoded) -> Vec<String> {
    let (g, a) = (frame_fields(golden), frame_fields(actual));
    let mut out = Vec::new();
    for (name, value) in &g {
        match a.iter().find(|(n, _)| n == name) {
            Some((_, other)) if other == value => {}
            Some((_, other)) => out.push(format!("{name}: {value} -> {other}")),
            None => out.push(format!("{name}: {value} -> (absent)")),
        }
    }
    for (name, value) in &a {
        if !g.iter().any(|(n, _)| n == name) {
            out.push(format!("{name}: (absent) -> {value}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;

    fn tcp(seq: u32, window: u16) -> Vec<u8> {
        let builder = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .tcp(5000, 80, seq, window)
            .ack(7);
        let mut out = Vec::new();
        builder.write(&mut out, &[1, 2, 3]).expect("a valid frame");
        out
    }

    #[test]
    fn stack_goldens_sit_beside_the_scenarios_own() {
        let root = Path::new("golden");
        let own = golden_paths(root, "tcp/handshake", None, &["lan".into()], "pcapng");
        assert_eq!(own.snapshot, Path::new("golden/tcp/handshake.snap"));
        assert_eq!(own.captures[0].1, Path::new("golden/tcp/handshake.pcapng"));
        let lwip = golden_paths(
            root,
            "tcp/handshake",
            Some("lwip"),
            &["a".into(), "b".into()],
            "pcap",
        );
        assert_eq!(lwip.snapshot, Path::new("golden/tcp/handshake@lwip.snap"));
        assert_eq!(
            lwip.captures[1].1,
            Path::new("golden/tcp/handshake@lwip.b.pcap")
        );
        let stacks = ["smoltcp", "lwip", "smoltcp@0.12"];
        let belongs_to = |relative: &str, name: &str| belongs_to(relative, name, stacks);
        assert!(belongs_to("tcp/handshake.snap", "tcp/handshake"));
        // A stack's name may hold dots: the registered names decide where it ends.
        assert!(belongs_to(
            "tcp/handshake@smoltcp@0.12.snap",
            "tcp/handshake"
        ));
        assert!(belongs_to("tcp/handshake@lwip.snap", "tcp/handshake"));
        assert!(belongs_to("tcp/handshake@lwip.lan.pcapng", "tcp/handshake"));
        assert!(!belongs_to("tcp/handshake@nosuch.snap", "tcp/handshake"));
        assert!(!belongs_to("tcp/handshake2.snap", "tcp/handshake"));
        assert!(!belongs_to("tcp/handshake@lwip", "tcp/handshake"));
    }

    #[test]
    fn differing_fields_are_named() {
        let diffs = field_differences(&tcp(1, 100), &tcp(2, 100));
        assert!(diffs.contains(&"tcp.seq: 1 -> 2".to_string()), "{diffs:?}");
        assert!(
            diffs.iter().any(|d| d.starts_with("tcp.checksum")),
            "{diffs:?}"
        );
        assert_eq!(diffs.len(), 2, "{diffs:?}");
        assert!(field_differences(&tcp(1, 100), &tcp(1, 100)).is_empty());
        assert_eq!(
            field_differences(&tcp(1, 100), &[0u8; 3]).len(),
            frame_fields(&Decoded::parse(&tcp(1, 100))).len()
        );
    }
}
