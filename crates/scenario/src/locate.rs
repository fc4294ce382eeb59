//! Finding the exact key or value a scenario file's deserialization error is about, saying it in plain words, and showing a source line safely.
//!
//! serde buffers internally tagged tables (`[[apps]]`, `[[events]]`, `[[expect]]`, `loss`)
//! before it knows their variant, so the errors raised inside them carry no position, and the
//! TOML parser can only blame the whole array. [`refine`] finds the culprit itself, by
//! experiment on the parsed document: inside a table, the key whose removal changes the error
//! holds it (serde raises a type or value error while visiting a key, before it checks what
//! is missing, so removing any other key leaves the error as it was); inside an array, the
//! first element that alone still gives the error. The culprit's value, read from the
//! document, is then quoted in the message with a hint that is right for its key.

use serde::de::DeserializeOwned;
use sim::config::closest;
use toml::Value;

/// At most this many trial deserializations are made to find a culprit, so a huge file
/// cannot make the search slow; past it, the nearest culprit found so far is blamed.
const MAX_TRIALS: usize = 400;

/// One step of the way to a value in a TOML document.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Step {
    Key(String),
    Index(usize),
}

/// Where an error is and what it says, once located.
pub(crate) struct Refined {
    pub offset: usize,
    pub message: String,
}

fn error_of<T: DeserializeOwned>(doc: &toml::Table) -> Option<String> {
    match T::deserialize(Value::Table(doc.clone())) {
        Ok(_) => None,
        Err(e) => Some(e.message().lines().next().unwrap_or_default().to_string()),
    }
}

fn get<'a>(value: &'a Value, path: &[Step]) -> Option<&'a Value> {
    path.iter().try_fold(value, |v, step| match (step, v) {
        (Step::Key(k), Value::Table(t)) => t.get(k),
        (Step::Index(i), Value::Array(a)) => a.get(*i),
        _ => None,
    })
}

fn get_mut<'a>(value: &'a mut Value, path: &[Step]) -> Option<&'a mut Value> {
    path.iter().try_fold(value, |v, step| match (step, v) {
        (Step::Key(k), Value::Table(t)) => t.get_mut(k),
        (Step::Index(i), Value::Array(a)) => a.get_mut(*i),
        _ => None,
    })
}

/// Keys that say which variant a table is; removing one always changes the error, so it is
/// blamed only when nothing else is.
const TAGS: &[&str] = &["kind", "check", "action", "model"];

/// Finds where the error serde reports for `text` (as type `T`) is, and says it plainly.
/// `None` when the text is not TOML or deserializes fine (then the caller's error stands).
pub(crate) fn refine<T: DeserializeOwned>(text: &str) -> Option<Refined> {
    let doc: toml::Table = text.parse().ok()?;
    let base = error_of::<T>(&doc)?;
    let missing = base.starts_with("missing field");
    let root = Value::Table(doc.clone());
    let mut path: Vec<Step> = Vec::new();
    let mut trials = 0usize;
    'descend: loop {
        let current = get(&root, &path)?;
        // A table or an array that gives the same error when emptied is itself the culprit
        // (an array where one value belongs, say), not anything inside it.
        let empty = match current {
            Value::Table(_) if !path.is_empty() => Some(Value::Table(toml::Table::new())),
            Value::Array(_) => Some(Value::Array(Vec::new())),
            _ => None,
        };
        if let Some(empty) = empty {
            trials += 1;
            let mut trial = root.clone();
            if let Some(slot) = get_mut(&mut trial, &path) {
                *slot = empty;
            }
            if let Value::Table(trial) = trial {
                if error_of::<T>(&trial).as_deref() == Some(base.as_str()) {
                    break;
                }
            }
        }
        match current {
            Value::Table(table) => {
                let mut candidates: Vec<(String, bool)> = Vec::new();
                for (key, value) in table {
                    if trials >= MAX_TRIALS {
                        break 'descend;
                    }
                    trials += 1;
                    let mut trial = root.clone();
                    if let Some(Value::Table(t)) = get_mut(&mut trial, &path) {
                        t.remove(key);
                    }
                    let Value::Table(trial) = trial else {
                        break 'descend;
                    };
                    if error_of::<T>(&trial).as_deref() != Some(base.as_str()) {
                        let container = matches!(value, Value::Table(_) | Value::Array(_));
                        candidates.push((key.clone(), container));
                    }
                }
                if missing {
                    // A missing key is blamed on the table that lacks it: descend only into
                    // the container that holds that table, the one whose emptying changes
                    // the error (emptying another leaves the same key missing).
                    let mut holder = None;
                    for (key, value) in table {
                        let empty = match value {
                            Value::Table(_) => Value::Table(toml::Table::new()),
                            Value::Array(_) => Value::Array(Vec::new()),
                            _ => continue,
                        };
                        if trials >= MAX_TRIALS {
                            break 'descend;
                        }
                        trials += 1;
                        let mut trial = root.clone();
                        if let Some(slot) = get_mut(&mut trial, &path).and_then(|t| match t {
                            Value::Table(t) => t.get_mut(key),
                            _ => None,
                        }) {
                            *slot = empty;
                        }
                        let Value::Table(trial) = trial else {
                            break 'descend;
                        };
                        if error_of::<T>(&trial).as_deref() != Some(base.as_str()) {
                            holder = Some(key.clone());
                            break;
                        }
                    }
                    match holder {
                        Some(key) => path.push(Step::Key(key)),
                        None => break,
                    }
                    continue;
                }
                let chosen = match candidates.len() {
                    0 => break,
                    1 => candidates.remove(0).0,
                    _ => candidates
                        .iter()
                        .rfind(|(k, _)| !TAGS.contains(&k.as_str()))
                        .unwrap_or(&candidates[0])
                        .0
                        .clone(),
                };
                path.push(Step::Key(chosen));
            }
            Value::Array(items) => {
                let mut found = None;
                for index in 0..items.len() {
                    if trials >= MAX_TRIALS {
                        break 'descend;
                    }
                    trials += 1;
                    let mut trial = root.clone();
                    if let Some(Value::Array(a)) = get_mut(&mut trial, &path) {
                        let only = a[index].clone();
                        *a = vec![only];
                    }
                    let Value::Table(trial) = trial else {
                        break 'descend;
                    };
                    if error_of::<T>(&trial).as_deref() == Some(base.as_str()) {
                        found = Some(index);
                        break;
                    }
                }
                match found {
                    Some(index) => path.push(Step::Index(index)),
                    None => break,
                }
            }
            _ => break,
        }
    }
    let offset = span_of(text, &path, base.starts_with("unknown field"))?;
    let value = get(&root, &path);
    let key = path.iter().rev().find_map(|s| match s {
        Step::Key(k) => Some(k.as_str()),
        Step::Index(_) => None,
    });
    Some(Refined {
        offset,
        message: plain_message(&base, key, value, &path),
    })
}

/// The byte offset of the value at `path` (or of its key, with `at_key`), from the spans of
/// the parsed document; the nearest parent's when a step cannot be followed.
fn span_of(text: &str, path: &[Step], at_key: bool) -> Option<usize> {
    let root = toml::de::DeTable::parse(text).ok()?;
    let mut offset = root.span().start;
    let mut table = Some(root.get_ref());
    let mut value: Option<&toml::de::DeValue<'_>> = None;
    for (i, step) in path.iter().enumerate() {
        let last = i + 1 == path.len();
        let next = match step {
            Step::Key(key) => table
                .and_then(|t| t.get_key_value(key.as_str()))
                .map(|(k, v)| {
                    if last && at_key {
                        offset = k.span().start;
                    } else {
                        offset = v.span().start;
                    }
                    v
                }),
            Step::Index(index) => value
                .and_then(|v| v.as_array())
                .and_then(|a| a.get(*index))
                .inspect(|v| offset = v.span().start),
        };
        let Some(next) = next else { break };
        value = Some(next.get_ref());
        table = next.get_ref().as_table();
    }
    Some(offset)
}

/// A value as it would be written in the file, shortened and with control characters escaped.
pub(crate) fn quote(value: &Value) -> String {
    let text = match value {
        Value::String(s) => format!("\"{}\"", escape(s)),
        Value::Integer(i) => i.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Boolean(b) => b.to_string(),
        Value::Datetime(d) => d.to_string(),
        Value::Array(_) => "an array".to_string(),
        Value::Table(_) => "a table".to_string(),
    };
    shorten(&text, 60)
}

fn what_it_is(value: &Value) -> &'static str {
    match value {
        Value::String(_) => "a string",
        Value::Integer(_) => "an integer",
        Value::Float(_) => "a fractional number",
        Value::Boolean(_) => "a boolean",
        Value::Datetime(_) => "a TOML date/time",
        Value::Array(_) => "an array",
        Value::Table(_) => "a table",
    }
}

/// serde's name for an expected type, in the words a scenario author uses.
fn plain_expected(expected: &str) -> String {
    let expected = expected.trim();
    let range = |max: &str| format!("a whole number from 0 to {max}");
    match expected {
        "u8" => range("255"),
        "u16" => range("65535"),
        "u32" => range("4294967295"),
        "u64" => range("18446744073709551615"),
        "f64" | "f32" => "a number".to_string(),
        "a boolean" => "true or false".to_string(),
        "a sequence" => "an array".to_string(),
        "a string" => "a string in quotes".to_string(),
        e if e.starts_with("struct ")
            || e.starts_with("internally tagged enum")
            || e.starts_with("enum ")
            || e == "a map" =>
        {
            "a table".to_string()
        }
        "socket address" => "an address and a port in quotes".to_string(),
        "IP address" => "an IP address in quotes".to_string(),
        e if e.contains("variant") => "a string in quotes naming one of its kinds".to_string(),
        e if e.contains(char::is_uppercase) && !e.contains(' ') => "a value of another kind".into(),
        e => e.to_string(),
    }
}

/// What a value under `key` must look like, with an example; empty when there is nothing
/// useful to add.
pub(crate) fn hint_for(key: &str, problem: &str) -> String {
    let text = match key {
        "target" if problem.contains("socket address") => {
            "an address and a port, like \"10.0.0.2:80\" (or \"[2001:db8::2]:80\")"
        }
        "target" if problem.contains("IP address") => {
            "an IP address without a port, like \"10.0.0.2\" (a ping has no port)"
        }
        "target" => {
            "an IP address, like \"10.0.0.2\"; a TCP or UDP target also takes a port, like \"10.0.0.2:80\""
        }
        "port" => "a port number from 1 to 65535",
        "ipv4" | "first_ipv4" => "an IPv4 address with its prefix length, like \"10.0.0.1/24\"",
        "ipv6" | "first_ipv6" => "an IPv6 address with its prefix length, like \"2001:db8::1/64\"",
        "ipv4_gateway" => "an IPv4 address, like \"10.0.0.254\"",
        "ipv6_gateway" => "an IPv6 address, like \"2001:db8::fe\"",
        "mac" => "a MAC address, like \"02:00:00:00:00:01\"",
        "seed" => "a whole number from 0 to 18446744073709551615",
        "count" => "a whole number, at least 1",
        "description" => "a sentence in quotes saying what the scenario shows",
        "apps" => "at least one [[apps]] table, with `kind`, `host` and the kind's own keys",
        "segments" => "at least one [[segments]] table, with `name` and `kind`",
        "name" | "host" | "segment" | "prefix" | "stack" => {
            "a string in quotes, like \"client\""
        }
        "echo" | "expect_echo" | "enabled" => "true or false",
        "requirements" => "an array of requirement IDs, like [\"rfc9293:MUST-8\"]",
        k if k.ends_with("_us") => {
            "a time in microseconds, a whole number (1_000_000 is one second)"
        }
        k if k.ends_with("_bytes") => "a size in bytes, a whole number",
        k if k.ends_with("probability") => "a probability from 0 to 1, like 0.01",
        k if k.ends_with("_bits_per_s") => {
            "a rate in bits per second, a whole number (1_000_000_000 is 1 Gbit/s)"
        }
        _ => "",
    };
    text.to_string()
}

fn with_hint(message: String, key: &str, problem: &str) -> String {
    let hint = hint_for(key, problem);
    if hint.is_empty() || message.contains(&hint) {
        message
    } else {
        format!("{message}; write {hint}")
    }
}

/// The backquoted names in one of serde's messages, in order.
fn quoted(message: &str) -> Vec<&str> {
    message.split('`').skip(1).step_by(2).collect()
}

fn table_name(path: &[Step]) -> String {
    let array = path.iter().rev().find_map(|s| match s {
        Step::Key(k) => Some(k.as_str()),
        Step::Index(_) => None,
    });
    match (path.last(), array) {
        (Some(Step::Index(i)), Some(array)) => format!("[[{array}]] number {}", i + 1),
        (Some(Step::Key(k)), _) => format!("`{k}`"),
        _ => "the file's top level".to_string(),
    }
}

fn plain_message(base: &str, key: Option<&str>, value: Option<&Value>, path: &[Step]) -> String {
    if let Some(rest) = base.strip_prefix("missing field ") {
        let field = rest.trim_matches('`');
        let variant = value
            .and_then(Value::as_table)
            .and_then(|t| TAGS.iter().find_map(|tag| Some((*tag, t.get(*tag)?))))
            .map(|(tag, v)| format!(" ({tag} = {})", quote(v)))
            .unwrap_or_default();
        return with_hint(
            format!("{}{variant} needs `{field}`", table_name(path)),
            field,
            "",
        );
    }
    let key_name = key.unwrap_or("value");
    if base.starts_with("unknown field") || base.starts_with("unknown variant") {
        let names = quoted(base);
        let Some((unknown, expected)) = names.split_first() else {
            return base.to_string();
        };
        let guess = closest(unknown, expected.iter().copied())
            .map(|g| format!("; did you mean `{g}`?"))
            .unwrap_or_default();
        let list = expected
            .iter()
            .map(|e| format!("`{e}`"))
            .collect::<Vec<_>>()
            .join(", ");
        return if base.starts_with("unknown field") {
            format!(
                "`{}` is not a key of {}{guess} (its keys: {list})",
                shorten(&escape(unknown), 60),
                table_name(&path[..path.len().saturating_sub(1)])
            )
        } else {
            format!(
                "`{key_name}` is \"{}\", which is not one of {list}{guess}",
                shorten(&escape(unknown), 60)
            )
        };
    }
    let shown = value.map(quote).unwrap_or_default();
    if let Some(rest) = base
        .strip_prefix("invalid type: ")
        .or_else(|| base.strip_prefix("invalid value: "))
    {
        let expected = rest
            .rsplit_once(", expected ")
            .map(|(_, e)| e)
            .unwrap_or("");
        let kind = value.map(what_it_is).unwrap_or("this");
        let container = matches!(value, Some(Value::Array(_) | Value::Table(_)));
        let message = if base.starts_with("invalid type") && !container {
            format!(
                "`{key_name}` is {kind} ({shown}), but it must be {}",
                plain_expected(expected)
            )
        } else if base.starts_with("invalid type") {
            format!(
                "`{key_name}` is {kind}, but it must be {}",
                plain_expected(expected)
            )
        } else {
            format!(
                "`{key_name}` is {shown}, but it must be {}",
                plain_expected(expected)
            )
        };
        return with_hint(message, key_name, base);
    }
    // A message of our own or of a parser (`invalid socket address syntax`).
    let problem = base.trim_end_matches('.');
    let message = if shown.is_empty() || problem.contains(&shown) {
        format!("`{key_name}`: {problem}")
    } else {
        format!("`{key_name}` is {shown}: {problem}")
    };
    with_hint(message, key_name, base)
}

/// Control characters (and the backslash before them) shown as escapes, so that nothing a
/// file holds can move the terminal's cursor or change its colours.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let head: String = text.chars().take(max).collect();
    format!("{head}…")
}

/// How many characters of a source line are shown at most; a longer line is cut around the
/// column.
const WINDOW: usize = 100;

/// A source line ready to print under an error, and the 1-based column of the caret in it:
/// control characters escaped, and a long line cut to a window around `column` (1-based, in
/// characters of `line`), with `…` where it was cut.
pub(crate) fn snippet(line: &str, column: usize) -> (String, usize) {
    let mut pieces: Vec<String> = line
        .chars()
        .map(|c| {
            let mut buffer = [0u8; 4];
            if c.is_control() {
                escape(c.encode_utf8(&mut buffer))
            } else {
                c.to_string()
            }
        })
        .collect();
    let index = column.saturating_sub(1).min(pieces.len());
    if pieces.len() <= WINDOW {
        let caret = pieces[..index]
            .iter()
            .map(|p| p.chars().count())
            .sum::<usize>()
            + 1;
        return (pieces.concat(), caret);
    }
    let start = index.saturating_sub(WINDOW / 2);
    let end = (start + WINDOW).min(pieces.len());
    let start = end.saturating_sub(WINDOW).min(start);
    let mut caret = pieces[start..index]
        .iter()
        .map(|p| p.chars().count())
        .sum::<usize>()
        + 1;
    let mut shown = String::new();
    if start > 0 {
        shown.push('…');
        caret += 1;
    }
    shown.push_str(&pieces[start..end].concat());
    if end < pieces.len() {
        shown.push('…');
    }
    pieces.clear();
    (shown, caret)
}

/// Where the first byte that is not UTF-8 sits: its byte value, 1-based line and column (in
/// characters of the valid text before it).
pub(crate) fn utf8_problem(bytes: &[u8]) -> Option<(u8, usize, usize, String)> {
    let error = std::str::from_utf8(bytes).err()?;
    let valid = error.valid_up_to();
    let before = std::str::from_utf8(&bytes[..valid]).unwrap_or_default();
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    let rest = &bytes[line_start..];
    let end = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
    let shown = String::from_utf8_lossy(&rest[..end]).into_owned();
    Some((bytes[valid], line, column, shown))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_line_is_cut_around_the_column() {
        let line = "x".repeat(10_000) + "BAD" + &"y".repeat(10_000);
        let (shown, caret) = snippet(&line, 10_001);
        assert!(shown.chars().count() <= WINDOW + 2, "{}", shown.len());
        assert_eq!(shown.chars().nth(caret - 1), Some('B'));
    }

    #[test]
    fn control_characters_are_escaped_and_the_caret_follows() {
        let (shown, caret) = snippet("a\u{1b}[31mb = 1", 7);
        assert_eq!(shown, "a\\u{1b}[31mb = 1");
        assert_eq!(shown.chars().nth(caret - 1), Some('b'));
    }

    #[test]
    fn the_first_bad_byte_is_found() {
        let (byte, line, column, _) = utf8_problem(b"a = 1\nb\xc3\xa9 = \xff\n").unwrap();
        assert_eq!((byte, line, column), (0xff, 2, 6));
    }
}
