//! `cargo xtask fuzz`: builds the cargo-fuzz targets on stable Rust, runs timed campaigns, reports executions per second and coverage, and writes the seed corpora.
//!
//! cargo-fuzz's default build asks rustc for AddressSanitizer (`-Zsanitizer=address`), which
//! stable rejects. With `--sanitizer none` cargo-fuzz passes only stable flags
//! (`-Cpasses=sancov-module` and `-Cllvm-args=-sanitizer-coverage-*`, which is what libFuzzer
//! needs for coverage feedback, plus `--cfg fuzzing` and `-Cdebug-assertions`), so the targets
//! build and run on the stable toolchain with no `RUSTC_BOOTSTRAP` and no nightly. The
//! targets are safe Rust, where AddressSanitizer would add little; overflow checks and debug
//! assertions stay on (cargo-fuzz's default profile is release with debug assertions).
//!
//! `--no-cfg-fuzzing` leaves out `--cfg fuzzing`: under it smoltcp's `verify_checksum`
//! functions return true, so a fuzz build of smoltcp takes corrupted frames that the real one
//! drops, and the trace oracles (which assume the receiver drops them) report false findings
//! (fuzz/FINDINGS.md). The targets fix checksums themselves where they want frames accepted.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::Mutex;

use anyhow::{bail, Context, Result};
use wirelab::fuzz::{ingress_advance_byte, INGRESS_HOST_MAC, TARGETS};
use wirelab::wire::capture::{read_capture, CaptureFormat, CaptureWriter};

/// Flags that make cargo-fuzz build on stable (see the module documentation).
const CARGO_FUZZ_FLAGS: [&str; 3] = ["--sanitizer", "none", "--no-cfg-fuzzing"];

pub struct Options {
    pub target: Option<String>,
    pub time_s: u64,
    pub jobs: usize,
    pub write_seeds: bool,
    /// A fixed number of executions per target and a fixed libFuzzer seed: the same inputs on
    /// every machine, so that a smoke run in CI passes or fails the same way every time.
    pub runs: Option<u64>,
    pub seed: Option<u64>,
}

/// What one campaign did, from libFuzzer's output.
#[derive(Default, Clone)]
struct CampaignResult {
    target: String,
    execs: Option<u64>,
    execs_per_s: Option<u64>,
    cov: Option<u64>,
    ft: Option<u64>,
    corpus: Option<String>,
    /// The first line of a crash report, and where libFuzzer saved the input.
    crash: Option<String>,
    artifact: Option<String>,
    log: PathBuf,
    exit_ok: bool,
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the repository root")
        .to_path_buf()
}

pub fn run(options: Options) -> Result<ExitCode> {
    let root = repo_root();
    let fuzz_dir = root.join("fuzz");
    if options.write_seeds {
        write_seeds(&root)?;
        return Ok(ExitCode::SUCCESS);
    }
    let targets: Vec<String> = match &options.target {
        Some(t) if TARGETS.contains(&t.as_str()) => vec![t.clone()],
        Some(t) => bail!(
            "no fuzz target `{t}`; the targets are: {}",
            TARGETS.join(", ")
        ),
        None => TARGETS.iter().map(|t| t.to_string()).collect(),
    };
    ensure_cargo_fuzz()?;
    println!(
        "== building the fuzz targets (stable: cargo fuzz build {})",
        CARGO_FUZZ_FLAGS.join(" ")
    );
    let status = Command::new("cargo")
        .arg("fuzz")
        .arg("build")
        .args(CARGO_FUZZ_FLAGS)
        .current_dir(&fuzz_dir)
        .stdin(Stdio::null())
        .status()
        .context("running cargo fuzz build")?;
    if !status.success() {
        bail!("cargo fuzz build failed ({status})");
    }
    let log_dir = root.join("target").join("wirelab-fuzz");
    std::fs::create_dir_all(&log_dir).context("creating target/wirelab-fuzz")?;
    println!(
        "== fuzzing {} target(s), {} each, {} at a time",
        targets.len(),
        match (options.runs, options.seed) {
            (Some(runs), Some(seed)) => format!(
                "{runs} executions from seed {seed} (at most {} s)",
                options.time_s
            ),
            (Some(runs), None) => format!("{runs} executions (at most {} s)", options.time_s),
            (None, _) => format!("{} s", options.time_s),
        },
        options.jobs
    );
    let queue = Mutex::new(targets.clone().into_iter());
    let results = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..options.jobs.max(1) {
            scope.spawn(|| loop {
                let Some(target) = queue.lock().expect("queue lock").next() else {
                    break;
                };
                let result = campaign(
                    &fuzz_dir,
                    &log_dir,
                    &target,
                    options.time_s,
                    options.runs,
                    options.seed,
                );
                match &result {
                    Ok(r) => println!("{}", summary_line(r)),
                    Err(e) => println!("{target}: error: {e:#}"),
                }
                results.lock().expect("results lock").push((target, result));
            });
        }
    });
    let mut results = results.into_inner().expect("results lock");
    results.sort_by_key(|(t, _)| TARGETS.iter().position(|x| x == t));
    println!();
    println!(
        "{:<20} {:>12} {:>9} {:>7} {:>8}  result",
        "target", "execs", "exec/s", "cov", "ft"
    );
    let mut failed = false;
    for (target, result) in &results {
        match result {
            Ok(r) => {
                let show = |v: Option<u64>| v.map_or("?".to_string(), |v| v.to_string());
                let verdict = if let Some(crash) = &r.crash {
                    failed = true;
                    format!(
                        "CRASH: {crash} (input: {}; log: {})",
                        r.artifact.as_deref().unwrap_or("?"),
                        r.log.display()
                    )
                } else if !r.exit_ok {
                    failed = true;
                    format!("FAILED (log: {})", r.log.display())
                } else {
                    "ok".to_string()
                };
                println!(
                    "{:<20} {:>12} {:>9} {:>7} {:>8}  {verdict}",
                    target,
                    show(r.execs),
                    show(r.execs_per_s),
                    show(r.cov),
                    show(r.ft)
                );
            }
            Err(e) => {
                failed = true;
                println!("{target:<20} error: {e:#}");
            }
        }
    }
    if failed {
        println!(
            "\nA crash: minimize it with `cd fuzz && cargo fuzz tmin --sanitizer none --no-cfg-fuzzing <target> <input>`, \
             commit it under fuzz/regressions/<target>/ and write it up in fuzz/FINDINGS.md."
        );
        Ok(ExitCode::FAILURE)
    } else {
        Ok(ExitCode::SUCCESS)
    }
}

fn summary_line(r: &CampaignResult) -> String {
    let mut line = format!(
        "{}: {} execs, {} exec/s, cov {}, ft {}",
        r.target,
        r.execs.map_or("?".into(), |v| v.to_string()),
        r.execs_per_s.map_or("?".into(), |v| v.to_string()),
        r.cov.map_or("?".into(), |v| v.to_string()),
        r.ft.map_or("?".into(), |v| v.to_string()),
    );
    if let Some(corpus) = &r.corpus {
        let _ = write!(line, ", corpus {corpus}");
    }
    if let Some(crash) = &r.crash {
        let _ = write!(line, " -- CRASH: {crash}");
    }
    line
}

/// Installs cargo-fuzz when `cargo fuzz --version` does not work.
fn ensure_cargo_fuzz() -> Result<()> {
    let works = Command::new("cargo")
        .args(["fuzz", "--version"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if works {
        return Ok(());
    }
    println!("== installing cargo-fuzz (cargo install cargo-fuzz --locked)");
    let status = Command::new("cargo")
        .args(["install", "cargo-fuzz", "--locked"])
        .stdin(Stdio::null())
        .status()
        .context("running cargo install cargo-fuzz")?;
    if !status.success() {
        bail!("cargo install cargo-fuzz failed ({status})");
    }
    Ok(())
}

/// The number after `key` in `line` (`cov: 123`), if any.
fn number_after(line: &str, key: &str) -> Option<u64> {
    let rest = &line[line.find(key)? + key.len()..];
    let digits: String = rest
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// Runs one target for `time_s` seconds on its corpus (`fuzz/corpus/<target>/`, grown in
/// place; only the `seed-*` files are committed) and parses libFuzzer's output.
fn campaign(
    fuzz_dir: &Path,
    log_dir: &Path,
    target: &str,
    time_s: u64,
    runs: Option<u64>,
    seed: Option<u64>,
) -> Result<CampaignResult> {
    let corpus = fuzz_dir.join("corpus").join(target);
    std::fs::create_dir_all(&corpus).context("creating the corpus directory")?;
    let mut args: Vec<String> = vec![
        format!("-max_total_time={time_s}"),
        "-print_final_stats=1".into(),
        "-timeout=30".into(),
    ];
    if let Some(runs) = runs {
        args.push(format!("-runs={runs}"));
    }
    if let Some(seed) = seed {
        args.push(format!("-seed={seed}"));
    }
    // The ingress and simulation inputs hold several whole frames or a long schedule.
    if matches!(target, "smoltcp_ingress" | "pcap_read") {
        args.push("-max_len=65536".into());
    }
    let dict = fuzz_dir.join("dicts").join(format!("{target}.dict"));
    if dict.exists() {
        args.push(format!("-dict={}", dict.display()));
    }
    let log = log_dir.join(format!("{target}.log"));
    let mut child = Command::new("cargo")
        .arg("fuzz")
        .arg("run")
        .args(CARGO_FUZZ_FLAGS)
        .arg(target)
        .arg(&corpus)
        .arg("--")
        .args(&args)
        .current_dir(fuzz_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting cargo fuzz run")?;
    let stdout = child.stdout.take().expect("piped stdout");
    let stderr = child.stderr.take().expect("piped stderr");
    let mut text = String::new();
    // libFuzzer reports on stderr; the target's own panic message goes there too. Stdout is
    // drained on a thread so that neither pipe can fill up and stall the fuzzer.
    let out_thread = std::thread::spawn(move || {
        let mut out = String::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            out.push_str(&line);
            out.push('\n');
        }
        out
    });
    let mut result = CampaignResult {
        target: target.to_string(),
        log: log.clone(),
        ..CampaignResult::default()
    };
    for line in BufReader::new(stderr).lines().map_while(Result::ok) {
        parse_line(&line, &mut result);
        text.push_str(&line);
        text.push('\n');
    }
    let status = child.wait().context("waiting for cargo fuzz run")?;
    text.push_str(&out_thread.join().unwrap_or_default());
    std::fs::write(&log, &text).with_context(|| format!("writing {}", log.display()))?;
    result.exit_ok = status.success();
    Ok(result)
}

fn parse_line(line: &str, result: &mut CampaignResult) {
    if line.starts_with('#') && line.contains("cov:") {
        result.cov = number_after(line, "cov:").or(result.cov);
        result.ft = number_after(line, "ft:").or(result.ft);
        result.execs = number_after(line, "#").or(result.execs);
        result.execs_per_s = number_after(line, "exec/s:").or(result.execs_per_s);
        if let Some(at) = line.find("corp: ") {
            result.corpus = line[at + 6..].split_whitespace().next().map(String::from);
        }
    } else if let Some(v) = line
        .strip_prefix("stat::number_of_executed_units:")
        .and_then(|v| v.trim().parse().ok())
    {
        result.execs = Some(v);
    } else if let Some(v) = line
        .strip_prefix("stat::average_exec_per_sec:")
        .and_then(|v| v.trim().parse().ok())
    {
        result.execs_per_s = Some(v);
    } else if result.crash.is_none()
        && (line.contains("panicked at") || line.starts_with("==") && line.contains("ERROR"))
    {
        result.crash = Some(line.trim().to_string());
    } else if let Some(rest) = line.split("Test unit written to ").nth(1) {
        result.artifact = Some(rest.trim().to_string());
    } else if result.crash.as_deref().is_some_and(|c| c.ends_with(':')) {
        // Rust prints the panic message on the line after `panicked at <place>:`.
        if let Some(crash) = &mut result.crash {
            crash.push(' ');
            crash.push_str(line.trim());
        }
    }
}

/// Writes a seed file, replacing what was there.
fn put(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    std::fs::write(dir.join(format!("seed-{name}")), bytes)
        .with_context(|| format!("writing seed {name} in {}", dir.display()))
}

/// Regenerates `fuzz/corpus/<target>/seed-*` from the golden captures and the scenario
/// files, and `fuzz/dicts/scenario_parse.dict` from the scenario schema.
fn write_seeds(root: &Path) -> Result<()> {
    let corpus = root.join("fuzz").join("corpus");
    for target in TARGETS {
        let dir = corpus.join(target);
        std::fs::create_dir_all(&dir)?;
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            let is_seed = path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("seed-"));
            if is_seed {
                std::fs::remove_file(&path)?;
            }
        }
    }
    let scenarios_root = root.join("scenarios");
    let found = wirelab::scenario::folder::find(
        std::slice::from_ref(&scenarios_root),
        &wirelab::builtin_stacks(),
    );
    if !found.errors.is_empty() {
        anyhow::bail!("{}", found.errors.join("\n"));
    }
    let mut counts = [0usize; 6];
    for scenario in &found.scenarios {
        let path = &scenario.path;
        let slug = scenario.name.replace('/', "-");
        // scenario_parse: the file itself.
        let text = std::fs::read(path)?;
        put(&corpus.join("scenario_parse"), &slug, &text)?;
        counts[3] += 1;
        let golden = root
            .join("golden")
            .join(format!("{}.pcapng", scenario.name));
        let Ok(bytes) = std::fs::read(&golden) else {
            continue;
        };
        let frames = read_capture(&bytes).map_err(|e| anyhow::anyhow!("{e}"))?;
        // decode_frame: the first eight frames and the last two, which cover ARP or NDP, a
        // handshake, data and the close.
        let picks: Vec<usize> = (0..frames.len().min(8))
            .chain(frames.len().saturating_sub(2)..frames.len())
            .collect();
        let mut seen = std::collections::BTreeSet::new();
        for i in picks {
            if seen.insert(frames[i].data.clone()) {
                put(
                    &corpus.join("decode_frame"),
                    &format!("{slug}-{i}"),
                    &frames[i].data,
                )?;
                counts[0] += 1;
            }
        }
        // checksum_agreement: the IP packets of the first four frames.
        for (i, frame) in frames.iter().take(4).enumerate() {
            if frame.data.len() > 14 {
                put(
                    &corpus.join("checksum_agreement"),
                    &format!("{slug}-{i}"),
                    &frame.data[14..],
                )?;
                counts[1] += 1;
            }
        }
        // pcap_read: small captures whole, and the first frames of each as classic pcap.
        if bytes.len() <= 4096 {
            put(&corpus.join("pcap_read"), &format!("{slug}.pcapng"), &bytes)?;
            counts[4] += 1;
        }
        let mut writer = CaptureWriter::to_memory(CaptureFormat::Pcap, 65_535, "lan");
        for frame in frames.iter().take(6) {
            writer.write_frame(frame.time_us, &frame.data, None)?;
        }
        if let Some(pcap) = writer.finish()? {
            put(&corpus.join("pcap_read"), &format!("{slug}.pcap"), &pcap)?;
            counts[4] += 1;
        }
        // smoltcp_ingress: what the first host sent the second, replayed to a host with the
        // second host's seed, so that its ISNs match the capture and the conversation goes on.
        if scenario.config.hosts.len() == 2 && scenario.config.host_mac(1) == INGRESS_HOST_MAC {
            if let Some(seed) = ingress_seed(scenario, &frames) {
                put(&corpus.join("smoltcp_ingress"), &slug, &seed)?;
                counts[2] += 1;
            }
        }
    }
    let sim_dir = corpus.join("simulation");
    for (name, bytes) in simulation_seeds() {
        put(&sim_dir, name, &bytes)?;
        counts[5] += 1;
    }
    let dicts = root.join("fuzz").join("dicts");
    std::fs::create_dir_all(&dicts)?;
    std::fs::write(
        dicts.join("scenario_parse.dict"),
        scenario_dictionary(&root.join("scenarios").join("schema.json"))?,
    )?;
    for (target, count) in TARGETS.iter().zip(counts) {
        println!("{target}: {count} seeds");
    }
    Ok(())
}

/// A `smoltcp_ingress` input replaying the frames host 0 sent to host 1 (or broadcast).
fn ingress_seed(
    scenario: &wirelab::scenario::format::Scenario,
    frames: &[wirelab::wire::capture::CapturedFrame],
) -> Option<Vec<u8>> {
    let host = &scenario.config.hosts[1];
    let seed =
        wirelab::sim::rng::derive_seed(scenario.config.seed, &format!("host/{}/stack", host.name));
    let host_mac = scenario.config.host_mac(1).0;
    let peer_mac = scenario.config.host_mac(0).0;
    let sent: Vec<&wirelab::wire::capture::CapturedFrame> = frames
        .iter()
        .filter(|f| f.data.len() >= 14 && f.data[6..12] == peer_mac)
        .filter(|f| f.data[0..6] == host_mac || f.data[0] & 1 == 1)
        .collect();
    if sent.is_empty() {
        return None;
    }
    // The ports the host must serve: the first TCP and UDP destinations in what was sent.
    let mut tcp_port = 0u16;
    let mut udp_port = 0u16;
    for f in &sent {
        if let Ok(p) = etherparse_ports(&f.data) {
            match p {
                (6, port) if tcp_port == 0 => tcp_port = port,
                (17, port) if udp_port == 0 => udp_port = port,
                _ => {}
            }
        }
    }
    let mut out = Vec::new();
    out.extend_from_slice(&seed.to_le_bytes());
    out.extend_from_slice(&tcp_port.to_be_bytes());
    out.extend_from_slice(&udp_port.to_be_bytes());
    out.push(0);
    let mut last_us = 0;
    for f in sent.iter().take(48) {
        if out.len() > 24_000 {
            break;
        }
        out.push(0);
        out.push(ingress_advance_byte(f.time_us.saturating_sub(last_us)));
        last_us = f.time_us;
        out.extend_from_slice(&(f.data.len() as u16).to_be_bytes());
        out.extend_from_slice(&f.data);
    }
    Some(out)
}

/// The transport protocol number and destination port of an IPv4 or IPv6 frame.
fn etherparse_ports(frame: &[u8]) -> Result<(u8, u16), ()> {
    let ethertype = u16::from_be_bytes([frame[12], frame[13]]);
    let (protocol, l4) = match ethertype {
        0x0800 if frame.len() >= 34 => {
            let ihl = usize::from(frame[14] & 0x0f) * 4;
            (frame[23], 14 + ihl)
        }
        0x86dd if frame.len() >= 54 => (frame[20], 54),
        _ => return Err(()),
    };
    let port = frame.get(l4 + 2..l4 + 4).ok_or(())?;
    Ok((protocol, u16::from_be_bytes([port[0], port[1]])))
}

/// Hand-made `simulation` inputs (see `wirelab::fuzz::simulation_world` for the layout).
fn simulation_seeds() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        // Two hosts on a switch: one ping.
        ("ping", vec![0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0]),
        // A TCP transfer of 4 KiB with echo between two clean hosts.
        (
            "tcp_echo",
            vec![0, 2, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 1, 0x10, 0, 0, 0],
        ),
        // UDP ping-pong, three hosts, IPv6.
        (
            "udp_v6",
            vec![0, 3, 0, 1, 1, 1, 1, 0, 0, 0x81, 0, 1, 0, 0, 4, 0, 64],
        ),
        // TCP under loss and latency on the client's uplink, with a link flap.
        (
            "tcp_loss_flap",
            vec![
                0, 4, 0, 0, 0x80, 0x05, 0x03, 0xe8, 0, 60, 0, 0, 2, 0x01, 0x00, 0x10, 0, 0x02, 0,
                0, 0, 2, 2, 0, 0, 0, 0, 0, 0x21, 0x20, 0x00, 1, 0x1c,
            ],
        ),
        // Bandwidth limit, reordering and duplication, Reno, a partition and a heal.
        (
            "tcp_shaped",
            vec![
                0, 5, 1, 1, 0x82, 0x58, 0, 0x20, 0x10, 0x40, 0x20, 1, 0x02, 0, 0, 2, 0x01, 0x00,
                0x03, 2, 0, 0x01, 0x02, 0x01, 0x01, 0, 0x03, 0, 2, 0, 1, 0, 0, 0x09, 0x30, 0, 1,
                0x04,
            ],
        ),
        // A SYN to a host whose link goes down: connect times out (the known finding).
        (
            "connect_timeout",
            vec![
                0, 6, 0, 0, 0, 0, 1, 0, 100, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 2, 0, 0, 0,
                0x10, 0, 0x10,
            ],
        ),
    ]
}

/// A libFuzzer dictionary for scenario files: every key and every string value of the
/// schema, and the table headers.
fn scenario_dictionary(schema_path: &Path) -> Result<String> {
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(schema_path)
            .with_context(|| format!("reading {}", schema_path.display()))?,
    )?;
    let mut keys = std::collections::BTreeSet::new();
    let mut values = std::collections::BTreeSet::new();
    fn walk(
        v: &serde_json::Value,
        keys: &mut std::collections::BTreeSet<String>,
        values: &mut std::collections::BTreeSet<String>,
    ) {
        match v {
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    if k == "properties" {
                        if let Some(props) = v.as_object() {
                            keys.extend(props.keys().cloned());
                        }
                    }
                    if k == "enum" {
                        if let Some(list) = v.as_array() {
                            values.extend(list.iter().filter_map(|x| x.as_str()).map(String::from));
                        }
                    }
                    if k == "const" {
                        if let Some(s) = v.as_str() {
                            values.insert(s.to_string());
                        }
                    }
                    walk(v, keys, values);
                }
            }
            serde_json::Value::Array(list) => {
                for v in list {
                    walk(v, keys, values);
                }
            }
            _ => {}
        }
    }
    walk(&schema, &mut keys, &mut values);
    let mut out = String::from(
        "# Scenario file keys and values, generated by `cargo xtask fuzz --write-seeds` from scenarios/schema.json.\n",
    );
    for key in &keys {
        let _ = writeln!(out, "key_{key}=\"{key} = \"");
    }
    for value in &values {
        let _ = writeln!(out, "value_{value}=\"\\\"{value}\\\"\"");
    }
    for (i, token) in [
        "[[segments]]\\x0a",
        "[[hosts]]\\x0a",
        "[[apps]]\\x0a",
        "[[events]]\\x0a",
        "[[expect]]\\x0a",
        "[[host_groups]]\\x0a",
        "[capture]\\x0a",
        " = { ",
        " }",
        "[\\\"",
        "\\\"]",
        "\\\"\\\"\\\"",
        "true",
        "false",
        "1_000_000",
        "0.5",
        "\\\"10.0.0.1/24\\\"",
        "\\\"2001:db8::1/64\\\"",
        "\\\"10.0.0.2:80\\\"",
        "\\\"02:00:00:00:00:01\\\"",
    ]
    .iter()
    .enumerate()
    {
        let _ = writeln!(out, "syntax_{i}=\"{token}\"");
    }
    Ok(out)
}
