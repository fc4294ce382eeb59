//! The parser of conformance scripts: packetdrill's line syntax, the subset wirelab runs, with errors that name the line and column.
//!
//! A script is a sequence of statements, one per line: a time, then an injected packet
//! (`<`), an expected packet (`>`) or a socket call. Comments are `//` to the end of the line
//! and `/* ... */`. Constructs of packetdrill that wirelab does not run (embedded Python,
//! shell commands, Linux-only socket options, IPv6 and ECN fields) are rejected as
//! "unsupported" with their position, never skipped.

use super::{
    Arg, CallResult, Event, IcmpPacket, KnownFailure, OptionList, Packet, ScriptErrorKind, Syscall,
    TcpFlags, TcpOption, TcpPacket, TimeSpec,
};

/// What the parser produces before the file's name is attached.
pub(super) struct Parsed {
    pub requirements: Vec<String>,
    pub tolerance_us: Option<u64>,
    pub not_on: Vec<(String, String)>,
    pub known_failures: Vec<KnownFailure>,
    pub events: Vec<Event>,
}

/// A parse error before the file's path is attached: line and column are 1-based.
pub(super) struct LocatedError {
    pub line: usize,
    pub column: usize,
    pub kind: ScriptErrorKind,
    pub message: String,
    pub hint: Option<String>,
}

type Result<T> = std::result::Result<T, LocatedError>;

/// The socket calls the scripted runtime performs (packetdrill's portable ones).
pub const SUPPORTED_CALLS: &[&str] = &[
    "socket",
    "bind",
    "listen",
    "accept",
    "connect",
    "read",
    "write",
    "shutdown",
    "close",
    "fcntl",
    "setsockopt",
    "getsockopt",
];

/// Calls packetdrill knows that wirelab does not run; naming them gives a precise message.
const UNSUPPORTED_CALLS: &[&str] = &[
    "sendto",
    "recvfrom",
    "sendmsg",
    "recvmsg",
    "send",
    "recv",
    "readv",
    "writev",
    "poll",
    "epoll_create",
    "epoll_ctl",
    "epoll_wait",
    "ioctl",
    "sendfile",
    "splice",
    "open",
    "pipe",
    "socketpair",
    "getpeername",
    "getsockname",
];

pub(super) fn parse_script(text: &str) -> Result<Parsed> {
    let mut parsed = Parsed {
        requirements: Vec::new(),
        tolerance_us: None,
        not_on: Vec::new(),
        known_failures: Vec::new(),
        events: Vec::new(),
    };
    let mut in_block_comment = false;
    // The time of the last timed line, to hold later lines to it: scripts never go back.
    let mut now_us: u64 = 0;
    for (index, raw_line) in text.lines().enumerate() {
        let line_no = index + 1;
        let code = strip_comments(raw_line, &mut in_block_comment, line_no, &mut parsed)?;
        if code.trim().is_empty() {
            continue;
        }
        let mut cursor = Cursor::new(&code, line_no);
        cursor.skip_space();
        if cursor.rest().starts_with("--") {
            if let Some(us) = parse_option_line(&mut cursor)? {
                parsed.tolerance_us = Some(us);
            }
            continue;
        }
        if cursor.rest().starts_with('`') {
            return Err(cursor.unsupported(
                "shell commands (`...`)",
                Some("wirelab configures the stack under test itself; a script cannot run commands on the host".into()),
            ));
        }
        if cursor.rest().starts_with("%{") {
            return Err(cursor.unsupported(
                "embedded Python (%{ ... }%)",
                Some("check the result with a later packet or socket call instead".into()),
            ));
        }
        let time = parse_time(&mut cursor)?;
        let start = match time {
            TimeSpec::At { relative, start_us }
            | TimeSpec::Range {
                relative, start_us, ..
            }
            | TimeSpec::Blocking {
                relative, start_us, ..
            } => Some(if relative {
                now_us.saturating_add(start_us)
            } else {
                start_us
            }),
            TimeSpec::Any => None,
        };
        if let Some(start) = start {
            if start < now_us {
                return Err(LocatedError {
                    line: line_no,
                    column: code.len() - code.trim_start().len() + 1,
                    kind: ScriptErrorKind::Parse,
                    message: format!(
                        "this line's time, {}, comes before the previous line's, {}: a script's times never go back",
                        seconds(start),
                        seconds(now_us)
                    ),
                    hint: Some(
                        "write a later absolute time, or a relative one such as `+0`".into(),
                    ),
                });
            }
            now_us = start;
            if let TimeSpec::Blocking {
                end_relative,
                end_us,
                ..
            } = time
            {
                let end = if end_relative {
                    start.saturating_add(end_us)
                } else {
                    end_us
                };
                now_us = now_us.max(end);
            }
        }
        cursor.skip_space();
        if cursor.rest().starts_with("%{") {
            return Err(cursor.unsupported(
                "embedded Python (%{ ... }%)",
                Some("check the result with a later packet or socket call instead".into()),
            ));
        }
        let action_column = cursor.column();
        let event = match cursor.peek() {
            Some('<') => {
                cursor.bump();
                let packet = parse_packet(&mut cursor, true)?;
                Event {
                    line: line_no,
                    column: action_column,
                    time,
                    action: super::Action::Inject(packet),
                    text: raw_line.trim().to_string(),
                }
            }
            Some('>') => {
                cursor.bump();
                let packet = parse_packet(&mut cursor, false)?;
                Event {
                    line: line_no,
                    column: action_column,
                    time,
                    action: super::Action::Expect(packet),
                    text: raw_line.trim().to_string(),
                }
            }
            Some('`') => {
                return Err(cursor.unsupported(
                    "shell commands (`...`)",
                    Some("configure the stack under test through the scenario or the backend, not a shell".into()),
                ))
            }
            Some(c) if c.is_ascii_alphabetic() => {
                let call = parse_syscall(&mut cursor)?;
                Event {
                    line: line_no,
                    column: action_column,
                    time,
                    action: super::Action::Call(call),
                    text: raw_line.trim().to_string(),
                }
            }
            _ => {
                return Err(cursor.error(
                    "expected `<` (inject a packet), `>` (expect a packet) or a socket call after the time",
                    None,
                ))
            }
        };
        cursor.skip_space();
        if !cursor.at_end() {
            return Err(cursor.error(
                &format!(
                    "unexpected `{}` at the end of the line",
                    short(cursor.rest().trim())
                ),
                None,
            ));
        }
        if matches!(event.time, TimeSpec::Any) && !matches!(event.action, super::Action::Expect(_))
        {
            return Err(LocatedError {
                line: line_no,
                column: 1,
                kind: ScriptErrorKind::Parse,
                message: "`*` (any time) is only allowed on expected packets (`>`)".into(),
                hint: Some("give injected packets and calls a time such as `+0` or `+0.1`".into()),
            });
        }
        parsed.events.push(event);
    }
    if parsed.events.is_empty() && !in_block_comment {
        return Err(LocatedError {
            line: 1,
            column: 1,
            kind: ScriptErrorKind::Parse,
            message: "the script has no packet and no socket call, so it would pass without testing anything".into(),
            hint: Some("add lines such as `0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3`".into()),
        });
    }
    if in_block_comment {
        return Err(LocatedError {
            line: text.lines().count().max(1),
            column: 1,
            kind: ScriptErrorKind::Parse,
            message: "a `/*` comment is never closed".into(),
            hint: Some("close it with `*/`".into()),
        });
    }
    Ok(parsed)
}

/// Removes comments from one line, reading wirelab's metadata comments on the way:
/// `// requirements: rfc9293:MUST-7 rfc5961:3.2` and
/// `// known-failure <backend> line <N>: <requirement id> <what happens>`.
fn strip_comments(
    line: &str,
    in_block: &mut bool,
    line_no: usize,
    parsed: &mut Parsed,
) -> Result<String> {
    let mut code = String::with_capacity(line.len());
    let mut rest = line;
    loop {
        if *in_block {
            match rest.find("*/") {
                Some(end) => {
                    *in_block = false;
                    rest = &rest[end + 2..];
                }
                None => return Ok(code),
            }
        }
        let line_comment = rest.find("//");
        let block_comment = rest.find("/*");
        match (line_comment, block_comment) {
            (Some(l), b) if b.is_none_or(|b| l < b) => {
                code.push_str(&rest[..l]);
                let column = line.len() - rest.len() + l + 1;
                read_metadata(rest[l + 2..].trim(), line_no, column, parsed)?;
                return Ok(code);
            }
            (_, Some(b)) => {
                code.push_str(&rest[..b]);
                code.push(' ');
                *in_block = true;
                rest = &rest[b + 2..];
            }
            _ => {
                code.push_str(rest);
                return Ok(code);
            }
        }
    }
}

fn read_metadata(comment: &str, line: usize, column: usize, parsed: &mut Parsed) -> Result<()> {
    if let Some(list) = comment.strip_prefix("requirements:") {
        parsed.requirements.extend(
            list.split([' ', ','])
                .filter(|s| !s.is_empty())
                .map(String::from),
        );
        return Ok(());
    }
    if let Some(rest) = comment.strip_prefix("not-on ") {
        let Some((backend, reason)) = rest.split_once(':') else {
            return Err(LocatedError {
                line,
                column,
                kind: ScriptErrorKind::Parse,
                message: "a not-on comment needs a `:` after the backend".into(),
                hint: Some("write `// not-on <backend>: <why the script cannot judge it>`".into()),
            });
        };
        parsed
            .not_on
            .push((backend.trim().to_string(), reason.trim().to_string()));
        return Ok(());
    }
    if let Some(rest) = comment.strip_prefix("known-failure") {
        let error = |message: &str| {
            LocatedError {
            line,
            column,
            kind: ScriptErrorKind::Parse,
            message: message.into(),
            hint: Some(
                "write `// known-failure <backend> line <N>: <requirement id> <what the stack does>`"
                    .into(),
            ),
        }
        };
        let (head, description) = rest
            .split_once(':')
            .ok_or_else(|| error("a known-failure comment needs a `:` after the line number"))?;
        let words: Vec<&str> = head.split_whitespace().collect();
        let [backend, "line", number] = words.as_slice() else {
            return Err(error("malformed known-failure comment"));
        };
        let failing_line: usize = number
            .parse()
            .map_err(|_| error("the line of a known failure is a number"))?;
        let description = description.trim();
        let (requirement, what) = description.split_once(' ').unwrap_or((description, ""));
        if !requirement.starts_with("rfc") || what.trim().is_empty() {
            return Err(error(
                "a known failure names the requirement it breaks (like rfc6298:5.5) and then says what the stack does",
            ));
        }
        parsed.known_failures.push(KnownFailure {
            backend: backend.to_string(),
            line: failing_line,
            requirement: requirement.to_string(),
            description: what.trim().to_string(),
            declared_at_line: line,
        });
    }
    Ok(())
}

/// packetdrill's command-line options written into a script: `--tolerance_usecs=N` (used by
/// real-time runs; virtual time is exact) and `--tolerance_percent` (accepted, unused);
/// anything else is refused.
fn parse_option_line(cursor: &mut Cursor) -> Result<Option<u64>> {
    let text = cursor.rest().trim().to_string();
    let name = text
        .trim_start_matches("--")
        .split('=')
        .next()
        .unwrap_or_default();
    match name {
        "tolerance_usecs" => {
            let value = text.split_once('=').map(|(_, v)| v.trim()).unwrap_or_default();
            let us = value.parse::<u64>().map_err(|_| {
                cursor.error(
                    &format!("`{value}` is not a number of microseconds for --tolerance_usecs"),
                    None,
                )
            })?;
            cursor.pos = cursor.text.len();
            Ok(Some(us))
        }
        "tolerance_percent" => {
            cursor.pos = cursor.text.len();
            Ok(None)
        }
        _ => Err(cursor.unsupported(
            &format!("the option --{name}"),
            Some("wirelab scripts use packetdrill's default addresses and ports; only --tolerance_usecs is accepted (and ignored: virtual time is exact)".into()),
        )),
    }
}

/// Microseconds as a script writes them, in seconds (`0.3 s`).
fn seconds(us: u64) -> String {
    let whole = us / 1_000_000;
    let fraction = us % 1_000_000;
    if fraction == 0 {
        format!("{whole} s")
    } else {
        let digits = format!("{fraction:06}");
        format!("{whole}.{} s", digits.trim_end_matches('0'))
    }
}

/// Text from the script shown in a message: control characters escaped, at most 40
/// characters.
fn short(text: &str) -> String {
    let escaped = crate::locate::escape(text);
    if escaped.chars().count() <= 40 {
        return escaped;
    }
    let head: String = escaped.chars().take(40).collect();
    format!("{head}…")
}

fn parse_time(cursor: &mut Cursor) -> Result<TimeSpec> {
    if cursor.eat('*') {
        return Ok(TimeSpec::Any);
    }
    let (relative, start_us) = parse_time_value(cursor)?;
    if cursor.rest().starts_with("...") {
        cursor.pos += 3;
        let (end_relative, end_us) = parse_time_value(cursor)?;
        return Ok(TimeSpec::Blocking {
            relative,
            start_us,
            end_relative,
            end_us,
        });
    }
    if cursor.eat('~') {
        let (end_relative, end_us) = parse_time_value(cursor)?;
        if end_relative == relative && end_us < start_us {
            return Err(cursor.error(
                "a time range must not end before it starts",
                Some("write the earlier time first, as in `+0.3~+0.4`".into()),
            ));
        }
        return Ok(TimeSpec::Range {
            relative,
            start_us,
            end_relative,
            end_us,
        });
    }
    Ok(TimeSpec::At { relative, start_us })
}

fn parse_time_value(cursor: &mut Cursor) -> Result<(bool, u64)> {
    let relative = cursor.eat('+');
    let column = cursor.column();
    let start = cursor.pos;
    while cursor
        .peek()
        .is_some_and(|c| c.is_ascii_digit() || c == '.')
    {
        // Stop before "..." (the blocking-call form `0...0.1`).
        if cursor.rest().starts_with("...") {
            break;
        }
        cursor.bump();
    }
    let text = &cursor.text[start..cursor.pos];
    let us = seconds_to_us(text).ok_or_else(|| LocatedError {
        line: cursor.line,
        column,
        kind: ScriptErrorKind::Parse,
        message: if text.is_empty() {
            "expected a time at the start of the line".into()
        } else {
            format!("`{text}` is not a time in seconds")
        },
        hint: Some("times look like `0`, `0.100`, `+0.2`, `+0.3~+0.4` or `*`".into()),
    })?;
    Ok((relative, us))
}

fn seconds_to_us(text: &str) -> Option<u64> {
    if text.is_empty() {
        return None;
    }
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if fraction.len() > 6 || fraction.contains('.') || (whole.is_empty() && fraction.is_empty()) {
        return None;
    }
    let whole: u64 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let mut micros: u64 = 0;
    for (i, digit) in fraction.chars().enumerate() {
        micros += u64::from(digit.to_digit(10)?) * 10u64.pow(5 - i as u32);
    }
    whole.checked_mul(1_000_000)?.checked_add(micros)
}

fn parse_packet(cursor: &mut Cursor, inbound: bool) -> Result<Packet> {
    cursor.skip_space();
    let word_column = cursor.column();
    let word = cursor.word();
    match word.as_str() {
        "udp" => {
            cursor.skip_space();
            let len = parse_parenthesized_len(cursor)?;
            Ok(Packet::Udp { payload_len: len })
        }
        "icmp" => parse_icmp(cursor),
        "" if cursor.peek() == Some('.') => {
            cursor.bump();
            parse_tcp(cursor, TcpFlags::ACK, inbound)
        }
        // packetdrill's spelling of a segment with no flags at all.
        "" if cursor.peek() == Some('-') => {
            cursor.bump();
            parse_tcp(cursor, TcpFlags(0), inbound)
        }
        "ect0" | "ect1" | "ce" | "noecn" | "ect01" => Err(LocatedError {
            line: cursor.line,
            column: word_column,
            kind: ScriptErrorKind::Unsupported,
            message: format!("ECN codepoint `{word}` on a packet"),
            hint: Some("leave out the IP ECN field; wirelab scripts are IPv4 without ECN".into()),
        }),
        _ => {
            let mut flags = TcpFlags::default();
            for c in word.chars() {
                flags |= match TcpFlags::from_packetdrill(c).filter(|_| c != '.') {
                    Some(flag) => flag,
                    None => {
                        return Err(LocatedError {
                            line: cursor.line,
                            column: word_column,
                            kind: ScriptErrorKind::Parse,
                            message: format!("`{word}` is not a packet: expected TCP flags (S F P R . U E W), `udp` or `icmp`"),
                            hint: Some("a TCP line looks like `S 0:0(0) win 32792 <mss 1000>`".into()),
                        })
                    }
                };
            }
            if cursor.eat('.') {
                flags |= TcpFlags::ACK;
            }
            if flags.0 == 0 {
                return Err(cursor.error(
                    "expected a packet after `<` or `>`",
                    Some("a TCP line looks like `S 0:0(0) win 32792 <mss 1000>`".into()),
                ));
            }
            parse_tcp(cursor, flags, inbound)
        }
    }
}

fn parse_tcp(cursor: &mut Cursor, flags: TcpFlags, inbound: bool) -> Result<Packet> {
    cursor.skip_space();
    let start = cursor.number_u32("the first sequence number of `start:end(length)`")?;
    cursor.expect(':', "`:` between the first and the end sequence number")?;
    let end = cursor.number_u32("the end sequence number")?;
    let len_column = cursor.column();
    let payload_len = parse_parenthesized_len(cursor)?;
    if end.wrapping_sub(start) != payload_len {
        return Err(LocatedError {
            line: cursor.line,
            column: len_column,
            kind: ScriptErrorKind::Parse,
            message: format!(
                "the sequence range {start}:{end} holds {} bytes but the length says {payload_len}",
                end.wrapping_sub(start)
            ),
            hint: Some(format!(
                "write {start}:{}({payload_len})",
                start.wrapping_add(payload_len)
            )),
        });
    }
    let mut packet = TcpPacket {
        flags,
        seq: start,
        payload_len,
        ack: None,
        window: None,
        urgent: None,
        options: None,
        ip: super::IpOverrides::default(),
    };
    loop {
        cursor.skip_space();
        if cursor.peek() == Some('<') {
            packet.options = Some(parse_options(cursor)?);
            continue;
        }
        let column = cursor.column();
        let word = cursor.word();
        match word.as_str() {
            "" => break,
            "ack" => packet.ack = Some(cursor.number_u32("the acknowledgement number")?),
            "win" => {
                packet.window = Some(cursor.number_u16("the window (0 to 65535)")?);
            }
            "urg" => packet.urgent = Some(cursor.number_u16("the urgent pointer")?),
            "from" | "to" if inbound => {
                cursor.skip_space();
                let start = cursor.pos;
                while cursor
                    .peek()
                    .is_some_and(|c| c.is_ascii_digit() || c == '.')
                {
                    cursor.bump();
                }
                let text = &cursor.text[start..cursor.pos];
                let address: std::net::Ipv4Addr = text.parse().map_err(|_| LocatedError {
                    line: cursor.line,
                    column,
                    kind: ScriptErrorKind::Parse,
                    message: format!("`{text}` is not an IPv4 address for `{word}`"),
                    hint: Some("as in `from 224.0.0.9` or `to 255.255.255.255`".into()),
                })?;
                if word == "from" {
                    packet.ip.source = Some(address);
                } else {
                    packet.ip.destination = Some(address);
                }
            }
            "ipopt" if inbound => {
                packet.ip.options = parse_hex(cursor, "IP option bytes")?;
                if packet.ip.options.len() > 40 {
                    return Err(cursor.error("IPv4 options hold at most 40 bytes", None));
                }
            }
            "mtu" | "ecn" | "[ect0]" | "flowlabel" | "tos" | "ttl" => {
                return Err(LocatedError {
                    line: cursor.line,
                    column,
                    kind: ScriptErrorKind::Unsupported,
                    message: format!("the IP field `{word}` on a TCP packet"),
                    hint: None,
                })
            }
            _ => {
                return Err(LocatedError {
                    line: cursor.line,
                    column,
                    kind: ScriptErrorKind::Parse,
                    message: format!("`{word}` is not part of a TCP packet"),
                    hint: Some(
                        "after `start:end(length)` come `ack N`, `win N`, `urg N` and `<options>`"
                            .into(),
                    ),
                })
            }
        }
    }
    if flags.has(TcpFlags::ACK) && packet.ack.is_none() {
        return Err(cursor.error(
            "a packet with the ACK flag (`.`) needs `ack N`",
            Some("add the acknowledgement number, as in `. 1:1(0) ack 1`".into()),
        ));
    }
    if inbound && packet.options == Some(OptionList::Any) {
        return Err(cursor.error(
            "`<...>` (any options) only makes sense on an expected packet",
            Some("list the options the injected packet carries".into()),
        ));
    }
    Ok(Packet::Tcp(packet))
}

fn parse_parenthesized_len(cursor: &mut Cursor) -> Result<u32> {
    cursor.expect('(', "`(` before the payload length")?;
    let len = cursor.number_u32("the payload length")?;
    cursor.expect(')', "`)` after the payload length")?;
    Ok(len)
}

fn parse_options(cursor: &mut Cursor) -> Result<OptionList> {
    cursor.expect('<', "`<`")?;
    cursor.skip_space();
    if cursor.rest().starts_with("...") {
        cursor.pos += 3;
        cursor.skip_space();
        cursor.expect('>', "`>` after `<...`")?;
        return Ok(OptionList::Any);
    }
    let mut options = Vec::new();
    let mut open_ended = false;
    loop {
        cursor.skip_space();
        if cursor.eat('>') {
            break;
        }
        if cursor.rest().starts_with("...") {
            cursor.pos += 3;
            open_ended = true;
            cursor.skip_space();
            cursor.expect('>', "`>`: `...` ends an option list")?;
            break;
        }
        let column = cursor.column();
        let word = cursor.word();
        let option = match word.as_str() {
            "nop" => TcpOption::Nop,
            "eol" => TcpOption::Eol,
            "mss" => TcpOption::Mss(cursor.number_u16("the MSS")?),
            "wscale" => {
                let shift = cursor.number_u32("the window scale shift")?;
                let shift = u8::try_from(shift).map_err(|_| LocatedError {
                    line: cursor.line,
                    column,
                    kind: ScriptErrorKind::Parse,
                    message: format!("window scale {shift} does not fit a byte"),
                    hint: None,
                })?;
                TcpOption::WindowScale(shift)
            }
            "sackOK" => TcpOption::SackPermitted,
            "sack" => {
                let mut blocks = Vec::new();
                loop {
                    cursor.skip_space();
                    if !cursor.peek().is_some_and(|c| c.is_ascii_digit()) {
                        break;
                    }
                    let left = cursor.number_u32("the left edge of a SACK block")?;
                    cursor.expect(':', "`:` inside a SACK block")?;
                    let right = cursor.number_u32("the right edge of a SACK block")?;
                    blocks.push((left, right));
                }
                if blocks.is_empty() || blocks.len() > 4 {
                    return Err(cursor.error("a sack option holds 1 to 4 blocks like `1:2`", None));
                }
                TcpOption::Sack(blocks)
            }
            "TS" => {
                cursor.skip_space();
                if cursor.word() != "val" {
                    return Err(cursor.error("expected `val` in `TS val N ecr N`", None));
                }
                let value = cursor.number_u32("the timestamp value")?;
                cursor.skip_space();
                if cursor.word() != "ecr" {
                    return Err(cursor.error("expected `ecr` in `TS val N ecr N`", None));
                }
                let echo = cursor.number_u32("the timestamp echo reply")?;
                TcpOption::Timestamp { value, echo }
            }
            "opt" => {
                // wirelab's extension: any option by kind and hex data, for "unknown options
                // are ignored" tests (`opt 253 0x4a7c`).
                let kind = cursor.number_u32("the option kind")?;
                let kind = u8::try_from(kind)
                    .ok()
                    .filter(|k| *k > 1)
                    .ok_or_else(|| cursor.error("an option kind is 2 to 255", None))?;
                cursor.skip_space();
                let data = if cursor.rest().starts_with("0x") {
                    parse_hex(cursor, "option data")?
                } else {
                    Vec::new()
                };
                cursor.skip_space();
                if cursor.rest().starts_with("len") {
                    cursor.word();
                    let length = cursor.number_u32("the option's length byte")?;
                    let length = u8::try_from(length)
                        .map_err(|_| cursor.error("a length byte is 0 to 255", None))?;
                    TcpOption::BadLength { kind, length, data }
                } else {
                    TcpOption::Other { kind, data }
                }
            }
            "md5" | "FO" | "FOEXP" | "mpcapable" | "dss" | "mp_join" | "add_address" => {
                return Err(LocatedError {
                    line: cursor.line,
                    column,
                    kind: ScriptErrorKind::Unsupported,
                    message: format!("the TCP option `{word}`"),
                    hint: Some("wirelab knows mss, wscale, sackOK, sack, TS, nop, eol, and `opt KIND 0xDATA` for any other".into()),
                })
            }
            _ => {
                return Err(LocatedError {
                    line: cursor.line,
                    column,
                    kind: ScriptErrorKind::Parse,
                    message: format!("`{word}` is not a TCP option"),
                    hint: Some("options are mss N, wscale N, sackOK, sack L:R, TS val N ecr N, nop, eol, opt KIND 0xDATA, or `<...>` for any".into()),
                })
            }
        };
        options.push(option);
        cursor.skip_space();
        if cursor.eat(',') {
            continue;
        }
        cursor.skip_space();
        if cursor.peek() != Some('>') && !cursor.rest().starts_with("...") {
            return Err(cursor.error("expected `,` or `>` in the option list", None));
        }
    }
    Ok(if open_ended {
        OptionList::AtLeast(options)
    } else {
        OptionList::Exactly(options)
    })
}

fn parse_icmp(cursor: &mut Cursor) -> Result<Packet> {
    cursor.skip_space();
    let column = cursor.column();
    let kind = cursor.word();
    let mut packet = match kind.as_str() {
        "echo_request" | "echo_reply" => IcmpPacket {
            icmp_type: if kind == "echo_request" { 8 } else { 0 },
            code: 0,
            payload_len: None,
            mtu: None,
        },
        "source_quench" => IcmpPacket {
            icmp_type: 4,
            code: 0,
            payload_len: None,
            mtu: None,
        },
        "time_exceeded" => IcmpPacket {
            icmp_type: 11,
            code: 0,
            payload_len: None,
            mtu: None,
        },
        "unreachable" => {
            cursor.skip_space();
            let code_column = cursor.column();
            let code_name = cursor.word();
            let code = match code_name.as_str() {
                "net_unreachable" => 0,
                "host_unreachable" => 1,
                "protocol_unreachable" => 2,
                "port_unreachable" => 3,
                "frag_needed" => 4,
                "source_route_failed" => 5,
                _ => {
                    return Err(LocatedError {
                        line: cursor.line,
                        column: code_column,
                        kind: ScriptErrorKind::Parse,
                        message: format!("`{code_name}` is not an ICMP unreachable code"),
                        hint: Some("codes are net_unreachable, host_unreachable, protocol_unreachable, port_unreachable, frag_needed, source_route_failed".into()),
                    })
                }
            };
            IcmpPacket {
                icmp_type: 3,
                code,
                payload_len: None,
                mtu: None,
            }
        }
        _ => {
            return Err(LocatedError {
                line: cursor.line,
                column,
                kind: ScriptErrorKind::Unsupported,
                message: format!("the ICMP type `{kind}`"),
                hint: Some(
                    "wirelab scripts know icmp echo_request, echo_reply, source_quench, time_exceeded and unreachable <code>"
                        .into(),
                ),
            })
        }
    };
    loop {
        cursor.skip_space();
        match cursor.peek() {
            Some('(') => packet.payload_len = Some(parse_parenthesized_len(cursor)?),
            Some('[') => {
                return Err(cursor.unsupported(
                    "a quoted inner packet in an ICMP line",
                    Some(
                        "wirelab fills in the quoted header itself: the last packet the stack sent"
                            .into(),
                    ),
                ))
            }
            Some(_) => {
                let column = cursor.column();
                let word = cursor.word();
                if word == "mtu" {
                    packet.mtu = Some(cursor.number_u16("the MTU")?);
                } else {
                    return Err(LocatedError {
                        line: cursor.line,
                        column,
                        kind: ScriptErrorKind::Parse,
                        message: format!("`{word}` is not part of an ICMP line"),
                        hint: None,
                    });
                }
            }
            None => break,
        }
    }
    Ok(Packet::Icmp(packet))
}

fn parse_syscall(cursor: &mut Cursor) -> Result<Syscall> {
    let column = cursor.column();
    let name = cursor.word();
    if !SUPPORTED_CALLS.contains(&name.as_str()) {
        let known = UNSUPPORTED_CALLS.contains(&name.as_str());
        return Err(LocatedError {
            line: cursor.line,
            column,
            kind: if known {
                ScriptErrorKind::Unsupported
            } else {
                ScriptErrorKind::Parse
            },
            message: if known {
                format!("the socket call `{name}`")
            } else {
                format!("`{name}` is not a socket call wirelab knows")
            },
            hint: Some(format!(
                "scripts may call {}{}",
                SUPPORTED_CALLS.join(", "),
                sim::config::did_you_mean(&name, SUPPORTED_CALLS.iter().copied())
            )),
        });
    }
    cursor.skip_space();
    cursor.expect('(', "`(` after the call's name")?;
    let mut args = Vec::new();
    loop {
        cursor.skip_space();
        if cursor.eat(')') {
            break;
        }
        args.push(parse_arg(cursor)?);
        cursor.skip_space();
        if cursor.eat(',') {
            continue;
        }
        cursor.expect(')', "`,` or `)` in the argument list")?;
        break;
    }
    cursor.skip_space();
    cursor.expect('=', "`= RESULT` after the call")?;
    cursor.skip_space();
    let result_column = cursor.column();
    let result = if cursor.eat('-') {
        let value = cursor.number_u32("the result")?;
        if value != 1 {
            return Err(cursor.error("a failing call returns -1 followed by an errno name", None));
        }
        cursor.skip_space();
        let errno_column = cursor.column();
        let errno = cursor.word();
        if super::errno_value(&errno).is_none() {
            return Err(LocatedError {
                line: cursor.line,
                column: errno_column,
                kind: ScriptErrorKind::Parse,
                message: format!("`{errno}` is not an errno name wirelab knows"),
                hint: Some(format!("errno names: {}", super::ERRNO_NAMES.join(", "))),
            });
        }
        CallResult::Error(errno)
    } else if cursor.peek().is_some_and(|c| c.is_ascii_digit()) {
        let value = cursor.number_i64("the result")?;
        CallResult::Value(value)
    } else {
        return Err(LocatedError {
            line: cursor.line,
            column: result_column,
            kind: ScriptErrorKind::Parse,
            message: "expected a result: a number, or -1 and an errno name".into(),
            hint: Some("as in `= 0`, `= 3` or `= -1 EAGAIN`".into()),
        });
    };
    cursor.skip_space();
    // packetdrill allows a parenthesized note after the result: `= -1 EAGAIN (Resource ...)`.
    if cursor.peek() == Some('(') {
        match cursor.rest().find(')') {
            Some(end) => cursor.pos += end + 1,
            None => return Err(cursor.error("a note after the result needs its `)`", None)),
        }
    }
    if name == "setsockopt" || name == "getsockopt" {
        if let Some(Arg::Names(option)) = args.get(2) {
            if !SUPPORTED_OPTIONS.contains(&option[0].as_str()) {
                return Err(LocatedError {
                    line: cursor.line,
                    column,
                    kind: ScriptErrorKind::Unsupported,
                    message: format!("the socket option {}", option[0]),
                    hint: Some(format!(
                        "the portable options are {}",
                        SUPPORTED_OPTIONS.join(", ")
                    )),
                });
            }
        }
    }
    Ok(Syscall {
        name,
        args,
        result,
        column,
    })
}

/// The socket options scripts may set or read: the portable ones.
pub const SUPPORTED_OPTIONS: &[&str] = &[
    "SO_REUSEADDR",
    "SO_RCVBUF",
    "SO_ERROR",
    "SO_KEEPALIVE",
    "TCP_NODELAY",
];

fn parse_arg(cursor: &mut Cursor) -> Result<Arg> {
    cursor.skip_space();
    if cursor.rest().starts_with("...") {
        cursor.pos += 3;
        return Ok(Arg::Ellipsis);
    }
    match cursor.peek() {
        Some('[') => {
            cursor.bump();
            let mut items = Vec::new();
            loop {
                cursor.skip_space();
                if cursor.eat(']') {
                    break;
                }
                items.push(parse_arg(cursor)?);
                cursor.skip_space();
                if cursor.eat(',') {
                    continue;
                }
                cursor.expect(']', "`]` closing the array")?;
                break;
            }
            Ok(Arg::Array(items))
        }
        Some('{') => Err(cursor.unsupported(
            "structure arguments (`{...}`)",
            Some("use `...` for addresses; wirelab fills in packetdrill's defaults".into()),
        )),
        Some('"') => Err(cursor.unsupported("string arguments", None)),
        Some(c) if c.is_ascii_digit() || c == '-' => {
            let negative = cursor.eat('-');
            let value = cursor.number_i64("a number")?;
            Ok(Arg::Int(if negative { -value } else { value }))
        }
        Some(c) if c.is_ascii_alphabetic() || c == '_' => {
            let mut names = vec![cursor.word()];
            loop {
                cursor.skip_space();
                if !cursor.eat('|') {
                    break;
                }
                cursor.skip_space();
                names.push(cursor.word());
            }
            Ok(Arg::Names(names))
        }
        _ => Err(cursor.error(
            "expected an argument: `...`, a number, a name or `[...]`",
            None,
        )),
    }
}

/// `0x` and whole bytes of hex digits.
fn parse_hex(cursor: &mut Cursor, what: &str) -> Result<Vec<u8>> {
    cursor.skip_space();
    if !cursor.rest().starts_with("0x") {
        return Err(cursor.error(&format!("expected {what} as 0x and hex digits"), None));
    }
    cursor.pos += 2;
    let start = cursor.pos;
    while cursor.peek().is_some_and(|c| c.is_ascii_hexdigit()) {
        cursor.bump();
    }
    let hex = &cursor.text[start..cursor.pos];
    if hex.is_empty() || !hex.len().is_multiple_of(2) {
        return Err(cursor.error(&format!("{what} are whole bytes of hex"), None));
    }
    Ok((0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap_or(0))
        .collect())
}

/// A position in one line of a script.
struct Cursor<'a> {
    text: &'a str,
    pos: usize,
    line: usize,
    /// The last (byte offset, column) a column was asked for: columns are counted on from
    /// there, so asking once per option keeps a long line linear, not quadratic.
    last_column: std::cell::Cell<(usize, usize)>,
}

impl<'a> Cursor<'a> {
    fn new(text: &'a str, line: usize) -> Cursor<'a> {
        Cursor {
            text,
            pos: 0,
            line,
            last_column: std::cell::Cell::new((0, 1)),
        }
    }

    fn rest(&self) -> &'a str {
        &self.text[self.pos..]
    }

    fn at_end(&self) -> bool {
        self.pos >= self.text.len()
    }

    fn column(&self) -> usize {
        let (from, column) = self.last_column.get();
        let (from, column) = if from <= self.pos {
            (from, column)
        } else {
            (0, 1)
        };
        let column = column + self.text[from..self.pos].chars().count();
        self.last_column.set((self.pos, column));
        column
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn bump(&mut self) {
        if let Some(c) = self.peek() {
            self.pos += c.len_utf8();
        }
    }

    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.bump();
            true
        } else {
            false
        }
    }

    fn skip_space(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.bump();
        }
    }

    /// Letters, digits and underscores (an identifier, flags or a keyword).
    fn word(&mut self) -> String {
        let start = self.pos;
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            self.bump();
        }
        self.text[start..self.pos].to_string()
    }

    fn expect(&mut self, c: char, what: &str) -> Result<()> {
        self.skip_space();
        if self.eat(c) {
            Ok(())
        } else {
            Err(self.error(&format!("expected {what}"), None))
        }
    }

    fn number_i64(&mut self, what: &str) -> Result<i64> {
        self.skip_space();
        let column = self.column();
        let start = self.pos;
        let hex = self.rest().starts_with("0x");
        if hex {
            self.pos += 2;
            while self.peek().is_some_and(|c| c.is_ascii_hexdigit()) {
                self.bump();
            }
        } else {
            while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                self.bump();
            }
        }
        let text = &self.text[start..self.pos];
        let parsed = if hex {
            i64::from_str_radix(&text[2..], 16).ok()
        } else {
            text.parse().ok()
        };
        parsed.ok_or_else(|| LocatedError {
            line: self.line,
            column,
            kind: ScriptErrorKind::Parse,
            message: if text.is_empty() {
                format!("expected {what}")
            } else {
                format!("`{text}` is not a valid number for {what}")
            },
            hint: None,
        })
    }

    fn number_u32(&mut self, what: &str) -> Result<u32> {
        let column = self.column();
        let value = self.number_i64(what)?;
        u32::try_from(value).map_err(|_| LocatedError {
            line: self.line,
            column,
            kind: ScriptErrorKind::Parse,
            message: format!("{value} is out of range for {what} (0 to 4294967295)"),
            hint: None,
        })
    }

    fn number_u16(&mut self, what: &str) -> Result<u16> {
        let column = self.column();
        let value = self.number_i64(what)?;
        u16::try_from(value).map_err(|_| LocatedError {
            line: self.line,
            column,
            kind: ScriptErrorKind::Parse,
            message: format!("{value} is out of range for {what}"),
            hint: None,
        })
    }

    fn error(&self, message: &str, hint: Option<String>) -> LocatedError {
        LocatedError {
            line: self.line,
            column: self.column(),
            kind: ScriptErrorKind::Parse,
            message: message.to_string(),
            hint,
        }
    }

    fn unsupported(&self, what: &str, hint: Option<String>) -> LocatedError {
        LocatedError {
            line: self.line,
            column: self.column(),
            kind: ScriptErrorKind::Unsupported,
            message: what.to_string(),
            hint,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_line(line: &str) -> Result<Event> {
        parse_script(line).map(|mut p| p.events.remove(0))
    }

    #[test]
    fn times_in_all_forms() {
        assert!(matches!(
            parse_line("0.100 close(3) = 0").map(|e| e.time),
            Ok(TimeSpec::At {
                relative: false,
                start_us: 100_000
            })
        ));
        assert!(matches!(
            parse_line("+.5 close(3) = 0").map(|e| e.time),
            Ok(TimeSpec::At {
                relative: true,
                start_us: 500_000
            })
        ));
        assert!(matches!(
            parse_line("+0.3~+0.4 > . 1:1(0) ack 1").map(|e| e.time),
            Ok(TimeSpec::Range {
                start_us: 300_000,
                end_us: 400_000,
                ..
            })
        ));
        assert!(matches!(
            parse_line("+0...0.1 read(4, ..., 10) = 10").map(|e| e.time),
            Ok(TimeSpec::Blocking {
                end_us: 100_000,
                ..
            })
        ));
        assert!(matches!(
            parse_line("* > F. 1:1(0) ack 1").map(|e| e.time),
            Ok(TimeSpec::Any)
        ));
    }

    #[test]
    fn a_syn_with_options_parses_field_by_field() {
        let event = parse_line("+0 < S 0:0(0) win 32792 <mss 1000,sackOK,nop,nop,nop,wscale 7>")
            .ok()
            .unwrap();
        let super::super::Action::Inject(Packet::Tcp(tcp)) = event.action else {
            panic!("not an injected TCP packet");
        };
        assert_eq!(tcp.flags, TcpFlags::SYN);
        assert_eq!(tcp.window, Some(32792));
        assert_eq!(
            tcp.options,
            Some(OptionList::Exactly(vec![
                TcpOption::Mss(1000),
                TcpOption::SackPermitted,
                TcpOption::Nop,
                TcpOption::Nop,
                TcpOption::Nop,
                TcpOption::WindowScale(7)
            ]))
        );
    }

    #[test]
    fn errors_name_line_and_column() {
        let error = parse_script("0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n+0 > S 0:5(4)")
            .err()
            .unwrap();
        assert_eq!((error.line, error.column), (2, 11));
        assert!(error.message.contains("holds 5 bytes"), "{}", error.message);

        let error = parse_script("+0 < . 1:1(0) win 100").err().unwrap();
        assert!(error.message.contains("needs `ack N`"), "{}", error.message);
    }

    #[test]
    fn constructs_outside_the_subset_are_unsupported_not_skipped() {
        for (text, what) in [
            ("0 `sysctl -q net.ipv4.tcp_sack=0`", "shell"),
            ("%{ print(tcpi_rto) }%", "Python"),
            ("+0 sendto(3, ..., 10, 0, ..., ...) = 10", "sendto"),
            ("+0 < S 0:0(0) win 100 <md5 1234>", "md5"),
            ("--ip_version=ipv6", "ip_version"),
        ] {
            let error = parse_script(text).err().unwrap();
            assert_eq!(error.kind, ScriptErrorKind::Unsupported, "{text}");
            assert!(error.message.contains(what), "{text}: {}", error.message);
        }
    }

    #[test]
    fn wirelab_extensions_for_addresses_ip_options_and_bad_lengths() {
        let event = parse_line(
            "+0 < S 0:0(0) win 100 <opt 253 0x00 len 40> to 224.0.0.1 from 10.0.0.9 ipopt 0x0101",
        )
        .ok()
        .unwrap();
        let super::super::Action::Inject(Packet::Tcp(tcp)) = event.action else {
            panic!("not an injected TCP packet");
        };
        assert_eq!(
            tcp.ip.destination,
            Some(std::net::Ipv4Addr::new(224, 0, 0, 1))
        );
        assert_eq!(tcp.ip.source, Some(std::net::Ipv4Addr::new(10, 0, 0, 9)));
        assert_eq!(tcp.ip.options, vec![1, 1]);
        assert_eq!(
            tcp.options,
            Some(OptionList::Exactly(vec![TcpOption::BadLength {
                kind: 253,
                length: 40,
                data: vec![0]
            }]))
        );
        // Only injected packets may change addresses.
        assert!(parse_script("+0 > S 0:0(0) to 224.0.0.1").is_err());
    }

    #[test]
    fn metadata_comments_are_read() {
        let parsed = parse_script(
            "// requirements: rfc9293:MUST-7, rfc5961:3.2\n// known-failure lwip line 9: rfc6298:5.5 the timer does not double\n0 close(3) = -1 EBADF\n",
        )
        .ok()
        .unwrap();
        assert_eq!(parsed.requirements, ["rfc9293:MUST-7", "rfc5961:3.2"]);
        assert_eq!(parsed.known_failures[0].backend, "lwip");
        assert_eq!(parsed.known_failures[0].line, 9);
        assert_eq!(parsed.known_failures[0].requirement, "rfc6298:5.5");
    }
}

#[cfg(test)]
mod long_lines {
    use super::*;

    /// A line of 256 K options parses (each option's column is found without rescanning the
    /// line, so the time is linear in the line's length).
    #[test]
    fn a_quarter_million_options_parse() {
        let options = vec!["nop"; 256 * 1024].join(",");
        let text = format!(
            "0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n+0 < S 0:0(0) win 32792 <{options}>\n"
        );
        let parsed = match parse_script(&text) {
            Ok(parsed) => parsed,
            Err(e) => panic!("{}:{}: {}", e.line, e.column, e.message),
        };
        match &parsed.events[1].action {
            super::super::Action::Inject(_) => {}
            other => panic!("not an injected packet: {other:?}"),
        }
    }
}
