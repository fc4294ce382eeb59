//! `cargo xtask bench`: workloads measured in one run, each in its own process for a clean peak-memory figure, reported as ratios against baselines.
//!
//! Benchmarks are the one place outside the TAP backend allowed to read the wall clock.
#![allow(clippy::disallowed_methods)]

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context};
use serde_json::{json, Value};
use wirelab::backends::smoltcp::SmoltcpStack;
use wirelab::sim::apps::{AppConfig, TcpFinish};
use wirelab::sim::config::{
    CongestionControlConfig, Impairments, LossModel, SegmentKind, TraceLevel,
};
use wirelab::sim::library::{host_ip, switch_of, tcp_transfer_apps, two_hosts};
use wirelab::sim::world::{RunOptions, RunReport, World};
use wirelab::stack::{FrameQueue, MacAddr, SocketError, SocketId, Stack, StackConfig};
use wirelab::wire::capture::CaptureFormat;

mod programs;

const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;
/// ns-3.37 on this kind of machine (DESIGN.md): 100 MB TCP over 1 Gbit/s, 1 ms, and 1000 UDP
/// echo round trips.
const NS3_TCP_100MB_WALL_S: f64 = 1.29;
const NS3_UDP_ECHO_1000_WALL_S: f64 = 0.010;

/// Every workload, in the order they run and print.
const WORKLOADS: &[&str] = &[
    "bare_tcp",
    "harness_tcp",
    "harness_tcp_pcap128",
    "tcp_100mb_1gbit_1ms",
    "bare_tcp_paced_100mb",
    "udp_echo_1000",
    "idle_keepalive_1h",
    "ping_1000_hosts_to_server",
    "ping_pairs_100",
    "ping_pairs_1000",
    "ping_pairs_10000",
    "stack_share_pairs_1000",
    "stack_share_tcp_100mb",
    "plugin_tcp_100mb",
    "apps_tcp_1mib",
    "program_tcp_1mib",
    "program_http_1000_requests",
    "sweep_1mib_loss_1pct",
];

/// The stack the plug-in workloads run on: smoltcp 0.14, wirelab's own backend, served by this
/// program over the plug-in protocol (`xtask plugin-serve`), so that the difference from the
/// in-process runs is the protocol alone.
const PLUGIN_STACK: &str = "smoltcp-plugin";

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

pub fn run(json_out: Option<PathBuf>, quick: bool, filter: Option<String>) -> anyhow::Result<()> {
    if cfg!(debug_assertions) {
        // Figures from a debug build mean nothing: run the release build instead.
        let mut args: Vec<String> = vec![
            "run".into(),
            "--quiet".into(),
            "--release".into(),
            "--package".into(),
            "xtask".into(),
            "--".into(),
            "bench".into(),
        ];
        if let Some(path) = &json_out {
            args.push("--json".into());
            args.push(std::path::absolute(path)?.display().to_string());
        }
        if quick {
            args.push("--quick".into());
        }
        if let Some(f) = &filter {
            args.push("--filter".into());
            args.push(f.clone());
        }
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo).args(&args).status()?;
        if !status.success() {
            bail!("the release benchmark run failed ({status})");
        }
        return Ok(());
    }
    let scale = if quick { 16 } else { 1 };
    let exe = std::env::current_exe()?;
    let selected: Vec<&str> = WORKLOADS
        .iter()
        .copied()
        .filter(|name| filter.as_deref().is_none_or(|f| name.contains(f)))
        .filter(|&name| !(quick && name == "ping_pairs_10000"))
        .collect();
    // Workloads that are compared with each other run in rounds, one process each, in turn
    // (bare, harness, harness with pcap, bare, ...), so that a slow stretch of the machine
    // falls on all of them; each reports the run with its median wall time.
    let mut runs: BTreeMap<&str, Vec<Value>> = BTreeMap::new();
    let most_rounds = selected.iter().map(|&name| rounds(name)).max().unwrap_or(0);
    for round in 0..most_rounds {
        for &name in selected.iter().filter(|&&name| round < rounds(name)) {
            eprintln!("running {name} ({} of {}) ...", round + 1, rounds(name));
            let output = Command::new(&exe)
                .args(["bench-one", name, &scale.to_string()])
                .output()
                .with_context(|| format!("starting workload {name}"))?;
            if !output.status.success() {
                bail!(
                    "workload {name} failed: {}",
                    String::from_utf8_lossy(&output.stderr)
                );
            }
            let value: Value = serde_json::from_slice(&output.stdout)
                .with_context(|| format!("reading the figures of {name}"))?;
            runs.entry(name).or_default().push(value);
        }
    }
    let mut figures: BTreeMap<String, Value> = BTreeMap::new();
    for &name in &selected {
        let value = median_run(runs.remove(name).unwrap_or_default());
        println!("{name:<28} {value}");
        figures.insert(name.to_string(), value);
    }
    let ratios = ratios(&figures);
    println!("\nratios and targets:");
    if quick {
        println!(
            "  (--quick runs a sixteenth of each workload: fixed costs, such as a capture's \
             final sync to disk, weigh more, so ratios read low; targets are for full runs)"
        );
    }
    for (name, value) in &ratios {
        println!("  {name:<44} {value}");
    }
    if let Some(path) = json_out {
        let doc = json!({ "scale_divisor": scale, "workloads": figures, "ratios": ratios });
        wirelab::scenario::golden::write_atomic(
            &path,
            serde_json::to_string_pretty(&doc)?.as_bytes(),
        )?;
        println!("figures written to {}", path.display());
    }
    Ok(())
}

/// How many times a workload runs. Those behind a ratio or a target run several times: one
/// run of a third of a second moves by a few per cent from one try to the next, and one of a
/// few milliseconds by tens of per cent. The long ones run once.
fn rounds(workload: &str) -> usize {
    match workload {
        "bare_tcp"
        | "harness_tcp"
        | "harness_tcp_pcap128"
        | "tcp_100mb_1gbit_1ms"
        | "bare_tcp_paced_100mb"
        | "plugin_tcp_100mb"
        | "udp_echo_1000"
        | "idle_keepalive_1h"
        | "ping_pairs_100" => 9,
        "ping_1000_hosts_to_server" | "ping_pairs_1000" => 3,
        _ => 1,
    }
}

/// The run with the median wall time, with every run's wall time beside it.
fn median_run(mut runs: Vec<Value>) -> Value {
    let wall = |v: &Value| v.get("wall_s").and_then(Value::as_f64).unwrap_or(0.0);
    runs.sort_by(|a, b| wall(a).total_cmp(&wall(b)));
    let walls: Vec<f64> = runs.iter().map(wall).collect();
    let mut median = runs.get(runs.len() / 2).cloned().unwrap_or(Value::Null);
    if walls.len() > 1 {
        median["runs"] = json!(walls.len());
        median["wall_s_of_each_run"] = json!(walls);
    }
    median
}

fn num(figures: &BTreeMap<String, Value>, workload: &str, field: &str) -> Option<f64> {
    figures.get(workload)?.get(field)?.as_f64()
}

fn ratios(figures: &BTreeMap<String, Value>) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    let mut put = |name: &str, value: Option<f64>, target: &str| {
        if let Some(v) = value {
            out.insert(
                name.to_string(),
                json!({ "value": (v * 1000.0).round() / 1000.0, "target": target }),
            );
        }
    };
    let bare = num(figures, "bare_tcp", "gbit_per_s");
    put(
        "harness_tcp / bare_tcp throughput",
        bare.zip(num(figures, "harness_tcp", "gbit_per_s"))
            .map(|(b, h)| h / b),
        ">= 0.85",
    );
    put(
        "harness_tcp_pcap128 / bare_tcp throughput",
        bare.zip(num(figures, "harness_tcp_pcap128", "gbit_per_s"))
            .map(|(b, h)| h / b),
        ">= 0.70",
    );
    put(
        "ns-3 / wirelab wall, 100 MB TCP 1 Gbit/s 1 ms",
        num(figures, "tcp_100mb_1gbit_1ms", "wall_s").map(|w| NS3_TCP_100MB_WALL_S / w),
        ">= 30",
    );
    // The most the line above could reach if the harness cost nothing: smoltcp's own cost per
    // frame when frames arrive one at a time, times the frames of the 100 MB run.
    put(
        "ns-3 / smoltcp alone (paced, per frame x frames)",
        num(figures, "bare_tcp_paced_100mb", "wall_us_per_frame")
            .zip(num(figures, "tcp_100mb_1gbit_1ms", "frames"))
            .map(|(us, frames)| NS3_TCP_100MB_WALL_S / (us * frames / 1e6)),
        "the ceiling of the line above",
    );
    put(
        "plug-in / in-process wall per frame, 100 MB TCP (the protocol's cost)",
        num(figures, "plugin_tcp_100mb", "wall_us_per_frame")
            .zip(num(figures, "tcp_100mb_1gbit_1ms", "wall_us_per_frame"))
            .map(|(plugin, here)| plugin / here),
        "none (a figure)",
    );
    put(
        "async program / built-in apps wall, 1 MiB TCP (the async layer's cost)",
        num(figures, "program_tcp_1mib", "wall_s")
            .zip(num(figures, "apps_tcp_1mib", "wall_s"))
            .map(|(program, apps)| program / apps),
        "none (a figure)",
    );
    put(
        "hyper HTTP/1.1 over smoltcp: requests per wall second",
        num(figures, "program_http_1000_requests", "requests_per_wall_s"),
        "none (a figure)",
    );
    put(
        "ns-3 / wirelab wall, 1000 UDP echoes",
        num(figures, "udp_echo_1000", "wall_s").map(|w| NS3_UDP_ECHO_1000_WALL_S / w),
        ">= 10",
    );
    put(
        "idle keep-alive 1 h: wall ms",
        num(figures, "idle_keepalive_1h", "wall_s").map(|w| w * 1000.0),
        "< 10",
    );
    put(
        "1000 hosts ping server: wall s",
        num(figures, "ping_1000_hosts_to_server", "wall_s"),
        "< 2",
    );
    put(
        "seed sweep: speed-up from 1 to 2 threads",
        num(figures, "sweep_1mib_loss_1pct", "speedup_2_threads"),
        ">= 1.8",
    );
    let per_frame: Vec<f64> = ["ping_pairs_100", "ping_pairs_1000", "ping_pairs_10000"]
        .iter()
        .filter_map(|w| num(figures, w, "wall_ns_per_delivered_frame"))
        .collect();
    if per_frame.len() >= 2 {
        let max = per_frame.iter().cloned().fold(f64::MIN, f64::max);
        let min = per_frame.iter().cloned().fold(f64::MAX, f64::min);
        put(
            "ping pairs: max/min wall per frame",
            Some(max / min),
            "<= 1.5",
        );
    }
    let steady: Vec<f64> = ["ping_pairs_100", "ping_pairs_1000", "ping_pairs_10000"]
        .iter()
        .filter_map(|w| num(figures, w, "steady_wall_ns_per_frame"))
        .collect();
    if steady.len() >= 2 {
        let max = steady.iter().cloned().fold(f64::MIN, f64::max);
        let min = steady.iter().cloned().fold(f64::MAX, f64::min);
        // Not the target (that is the whole run, above): unicast frames only, where
        // every frame lands on a host whose state has left the caches once there are
        // thousands of hosts (about 67 KiB each, 670 MiB at 10 000).
        put(
            "ping pairs, unicast phase only: max/min wall per frame",
            Some(max / min),
            "none (shows cold per-host memory)",
        );
    }
    out
}

pub fn run_one(name: &str, scale: u64) -> anyhow::Result<()> {
    let figures = match name {
        "bare_tcp" => bare_tcp(GIB / scale)?,
        "harness_tcp" => harness_tcp(GIB / scale, false)?,
        "harness_tcp_pcap128" => harness_tcp(GIB / scale, true)?,
        "tcp_100mb_1gbit_1ms" => tcp_over_link(100_000_000 / scale, false, None)?,
        "plugin_tcp_100mb" => tcp_over_link(100_000_000 / scale, false, Some(PLUGIN_STACK))?,
        "bare_tcp_paced_100mb" => bare_tcp_paced(100_000_000 / scale)?,
        "udp_echo_1000" => udp_echo(1000)?,
        "idle_keepalive_1h" => idle_keepalive()?,
        "ping_1000_hosts_to_server" => ping_server(1000 / scale.min(10) as u32)?,
        "ping_pairs_100" => ping_pairs(100, false)?,
        "ping_pairs_1000" => ping_pairs(1000, false)?,
        "ping_pairs_10000" => ping_pairs(10_000, false)?,
        "stack_share_pairs_1000" => ping_pairs(1000, true)?,
        "stack_share_tcp_100mb" => tcp_over_link(100_000_000 / scale, true, None)?,
        "sweep_1mib_loss_1pct" => seed_sweep(10_000 / scale)?,
        "apps_tcp_1mib" => apps_tcp(MIB)?,
        "program_tcp_1mib" => programs::tcp(MIB)?,
        "program_http_1000_requests" => programs::http(1000 / scale.min(10) as usize)?,
        other => bail!("no workload called {other}"),
    };
    let mut figures = figures;
    figures["peak_rss_mib"] = json!(peak_rss_kib() as f64 / 1024.0);
    println!("{figures}");
    Ok(())
}

/// Builds a world, then runs it: the seconds each took, apart. `wall_s` in the figures is the
/// run alone, as ns-3's figures are its simulator loop and the bare loop's exclude building its
/// two stacks; building (a stack and its buffers per host) is reported as `setup_s`.
fn run_timed(
    config: wirelab::sim::config::WorldConfig,
    apps: &[AppConfig],
    options: &RunOptions,
) -> anyhow::Result<(RunReport, f64, f64)> {
    let start = Instant::now();
    let world = World::new(config, apps, &bench_stacks()?, options)?;
    let setup_s = start.elapsed().as_secs_f64();
    let start = Instant::now();
    let report = world.run();
    let wall_s = start.elapsed().as_secs_f64();
    Ok((report, setup_s, wall_s))
}

/// The built-in stacks and [`PLUGIN_STACK`], this program serving wirelab's smoltcp backend as
/// a plug-in.
fn bench_stacks() -> anyhow::Result<wirelab::Registry> {
    let mut stacks = wirelab::builtin_stacks();
    let exe = std::env::current_exe().context("finding this program")?;
    let factory = wirelab::plugin::PluginFactory::new(
        PLUGIN_STACK,
        vec![exe.display().to_string(), "plugin-serve".to_string()],
        std::env::temp_dir(),
    );
    stacks.register(PLUGIN_STACK, factory);
    Ok(stacks)
}

/// `xtask plugin-serve`: wirelab's smoltcp backend over the plug-in protocol, for the bench.
pub fn plugin_serve() -> ! {
    wirelab::plugin::serve(
        "smoltcp 0.14 (wirelab's backend)",
        wirelab::backends::smoltcp::SmoltcpStack::new,
    )
}

fn gbit_per_s(bytes: u64, wall_s: f64) -> f64 {
    bytes as f64 * 8.0 / wall_s / 1e9
}

/// The two stacks of a bare loop with one connection between them, and the application work
/// both bare loops do: the client writes zeros 64 KiB at a time, the server reads in place
/// without looking at the bytes, as the harness's applications read.
struct BarePair {
    client: SmoltcpStack,
    server: SmoltcpStack,
    listener: SocketId,
    conn: SocketId,
    accepted: Option<SocketId>,
    chunk: Vec<u8>,
    bytes: u64,
    sent: u64,
    received: u64,
}

impl BarePair {
    fn new(
        bytes: u64,
        buffer_bytes: usize,
        congestion_control: wirelab::stack::CongestionControl,
    ) -> anyhow::Result<BarePair> {
        let config = |name: &str, index: u32, ip: [u8; 4]| {
            let mut c = StackConfig::new(name, MacAddr::local_from_index(index), index as u64);
            c.ipv4 = Some((ip.into(), 24));
            c.tcp_rx_buffer_bytes = buffer_bytes;
            c.tcp_tx_buffer_bytes = buffer_bytes;
            c.congestion_control = congestion_control;
            c
        };
        let mut client = SmoltcpStack::new(config("client", 1, [10, 0, 0, 1]));
        let mut server = SmoltcpStack::new(config("server", 2, [10, 0, 0, 2]));
        let listener = server.tcp_listen(5001, 1)?;
        let conn = client.tcp_connect(SocketAddr::new(IpAddr::from([10, 0, 0, 2]), 5001))?;
        Ok(BarePair {
            client,
            server,
            listener,
            conn,
            accepted: None,
            chunk: vec![0u8; 64 * 1024],
            bytes,
            sent: 0,
            received: 0,
        })
    }

    fn done(&self) -> bool {
        self.received >= self.bytes
    }

    /// The client writes what fits.
    fn client_writes(&mut self) {
        while self.sent < self.bytes {
            let n = (self.bytes - self.sent).min(self.chunk.len() as u64) as usize;
            match self.client.tcp_send(self.conn, &self.chunk[..n]) {
                Ok(0) | Err(_) => break,
                Ok(k) => self.sent += k as u64,
            }
        }
    }

    /// The server accepts the connection once, then reads everything there is.
    fn server_reads(&mut self) -> anyhow::Result<()> {
        if self.accepted.is_none() {
            self.accepted = self.server.tcp_accept(self.listener)?;
        }
        let Some(s) = self.accepted else {
            return Ok(());
        };
        loop {
            match self.server.tcp_recv_with(s, usize::MAX, &mut |_| {}) {
                Ok(0) | Err(SocketError::Finished) => return Ok(()),
                Ok(n) => self.received += n as u64,
                Err(e) => bail!("bare loop receive: {e}"),
            }
        }
    }

    /// With nothing in flight: the time of the earlier stack deadline.
    fn next_deadline(&mut self, now_us: u64) -> u64 {
        let next = [self.client.poll_at(now_us), self.server.poll_at(now_us)]
            .into_iter()
            .flatten()
            .min();
        next.unwrap_or(now_us + 1000).max(now_us + 1)
    }
}

/// Two smoltcp stacks shuttling frames to each other in a plain loop: the ceiling the harness
/// is measured against. Same stack code, same buffers, same application chunking.
fn bare_tcp(bytes: u64) -> anyhow::Result<Value> {
    let mut pair = BarePair::new(bytes, 256 * 1024, wirelab::stack::CongestionControl::None)?;
    let mut to_server = FrameQueue::new();
    let mut to_client = FrameQueue::new();
    let mut spare = Vec::new();
    let mut frames = 0u64;
    let mut now_us = 0u64;
    let start = Instant::now();
    while !pair.done() {
        to_server.clear();
        pair.client.poll(now_us, &mut to_server);
        pair.client_writes();
        pair.client.poll(now_us, &mut to_server);
        frames += (to_server.len() + to_client.len()) as u64;
        // Frames change hands without a copy, as in the harness.
        for index in 0..to_server.len() {
            to_server.swap_frame(index, &mut spare);
            pair.server.receive_buffer(&mut spare);
        }
        to_client.clear();
        pair.server.poll(now_us, &mut to_client);
        pair.server_reads()?;
        pair.server.poll(now_us, &mut to_client);
        for index in 0..to_client.len() {
            to_client.swap_frame(index, &mut spare);
            pair.client.receive_buffer(&mut spare);
        }
        if to_server.is_empty() && to_client.is_empty() {
            now_us = pair.next_deadline(now_us);
        }
    }
    let wall_s = start.elapsed().as_secs_f64();
    Ok(json!({
        "bytes": bytes, "wall_s": wall_s, "gbit_per_s": gbit_per_s(bytes, wall_s), "frames": frames,
        "wall_us_per_frame": wall_s * 1e6 / frames as f64,
    }))
}

/// The two stacks of `tcp_100mb_1gbit_1ms` (Reno, 1 MiB buffers) with nothing between them,
/// but with frames taken one at a time, as a 1 Gbit/s link hands them over: each frame goes
/// to its host, which alone then gets the calls the harness makes for an arrival (receive,
/// poll, application, poll). What the stacks emit joins the back of one queue, so both
/// directions interleave in the order they were sent. No timing model, no trace, no checks:
/// what smoltcp itself costs for that workload, the floor under the harness's wall time.
fn bare_tcp_paced(bytes: u64) -> anyhow::Result<Value> {
    use std::collections::VecDeque;
    let mut pair = BarePair::new(bytes, 1 << 20, wirelab::stack::CongestionControl::Reno)?;
    let mut egress = FrameQueue::new();
    // Frames in flight, in the order they were sent: true for those going to the server.
    let mut in_flight: VecDeque<(bool, Vec<u8>)> = VecDeque::new();
    let mut spares: Vec<Vec<u8>> = Vec::new();
    let (mut frames, mut polls) = (0u64, 0u64);
    let mut now_us = 0u64;
    // Both hosts act once at the start, and again whenever nothing is in flight (a timer).
    let mut wake_both = true;
    let start = Instant::now();
    while !pair.done() {
        let arrival = if wake_both {
            None
        } else {
            in_flight.pop_front()
        };
        let to_server = arrival.as_ref().map(|(to_server, _)| *to_server);
        if let Some((to_server, mut frame)) = arrival {
            let host = if to_server {
                &mut pair.server
            } else {
                &mut pair.client
            };
            host.receive_buffer(&mut frame);
            spares.push(frame);
            frames += 1;
            // A 1500-byte frame takes 12 us at 1 Gbit/s.
            now_us += 12;
        }
        for (host_is_server, wakes) in [
            (false, wake_both || to_server == Some(false)),
            (true, wake_both || to_server == Some(true)),
        ] {
            if !wakes {
                continue;
            }
            // The host: poll, its application, poll.
            if host_is_server {
                pair.server.poll(now_us, &mut egress);
                pair.server_reads()?;
                pair.server.poll(now_us, &mut egress);
            } else {
                pair.client.poll(now_us, &mut egress);
                pair.client_writes();
                pair.client.poll(now_us, &mut egress);
            }
            polls += 2;
            for index in 0..egress.len() {
                let mut buffer = spares.pop().unwrap_or_default();
                egress.swap_frame(index, &mut buffer);
                in_flight.push_back((!host_is_server, buffer));
            }
            egress.clear();
        }
        wake_both = in_flight.is_empty();
        if wake_both {
            now_us = pair.next_deadline(now_us);
        }
    }
    let wall_s = start.elapsed().as_secs_f64();
    Ok(json!({
        "bytes": bytes, "wall_s": wall_s, "frames": frames, "polls": polls,
        "wall_us_per_frame": wall_s * 1e6 / frames as f64,
    }))
}

fn harness_tcp(bytes: u64, pcap: bool) -> anyhow::Result<Value> {
    let mut config = two_hosts(1, SegmentKind::Switch);
    config.trace = TraceLevel::Decisions;
    for host in &mut config.hosts {
        host.tcp_buffer_bytes = 256 * 1024;
        // Configured, but letting everything through: the full pipeline runs for every frame.
        let passing = Impairments {
            loss: LossModel::Independent { probability: 0.0 },
            duplicate_probability: 0.0,
            ..Impairments::default()
        };
        host.link.to_segment = passing.clone();
        host.link.from_segment = passing;
    }
    let dir = std::env::temp_dir().join(format!("wirelab-bench-{}", std::process::id()));
    let options = if pcap {
        std::fs::create_dir_all(&dir)?;
        config.capture.enabled = true;
        config.capture.format = CaptureFormat::Pcap;
        config.capture.snaplen_bytes = 128;
        RunOptions {
            capture_dir: Some(dir.clone()),
            ..RunOptions::default()
        }
    } else {
        config.capture.enabled = false;
        RunOptions::default()
    };
    let apps = tcp_transfer_apps(bytes);
    let (report, setup_s, wall_s) = run_timed(config, &apps, &options)?;
    let _ = std::fs::remove_dir_all(&dir);
    let verified = report.apps[0]
        .counters
        .get("bytes_verified")
        .copied()
        .unwrap_or(0);
    if verified != bytes {
        bail!(
            "the sink verified {verified} of {bytes} bytes ({})",
            report.outcome
        );
    }
    Ok(json!({
        "bytes": bytes, "wall_s": wall_s, "setup_s": setup_s, "gbit_per_s": gbit_per_s(bytes, wall_s),
        "frames": report.stats.frames_emitted, "virtual_s": report.stats.end_time_us as f64 / 1e6,
        "steps": report.stats.steps, "polls": report.stats.polls,
    }))
}

/// 1 MiB from the built-in TCP client to the built-in sink, on two hosts with the defaults a
/// `Sim` has (capture in memory, frames traced): the baseline of `program_tcp_1mib`.
fn apps_tcp(bytes: u64) -> anyhow::Result<Value> {
    let config = two_hosts(1, SegmentKind::Switch);
    let (report, setup_s, wall_s) =
        run_timed(config, &tcp_transfer_apps(bytes), &RunOptions::default())?;
    if !report.outcome.is_success() {
        bail!("the built-in transfer {}", report.outcome);
    }
    Ok(json!({
        "bytes": bytes, "wall_s": wall_s, "setup_s": setup_s,
        "frames": report.stats.frames_emitted, "virtual_s": report.stats.end_time_us as f64 / 1e6,
    }))
}

fn link_1gbit_1ms() -> Impairments {
    Impairments {
        latency_us: 1000,
        bandwidth_bits_per_s: Some(1_000_000_000),
        ..Impairments::default()
    }
}

fn tcp_over_link(bytes: u64, time_stacks: bool, stack: Option<&str>) -> anyhow::Result<Value> {
    let mut config = two_hosts(1, SegmentKind::PointToPoint);
    config.capture.enabled = false;
    config.trace = TraceLevel::Decisions;
    for host in &mut config.hosts {
        if let Some(stack) = stack {
            host.stack = stack.to_string();
        }
        host.tcp_buffer_bytes = 1 << 20;
        host.congestion_control = CongestionControlConfig::Reno;
        host.link.to_segment = link_1gbit_1ms();
    }
    let apps = tcp_transfer_apps(bytes);
    let probe = Probe::new(true, None);
    let mut options = RunOptions::default();
    if time_stacks {
        options.wrap_stack = Some(probe.wrap());
    }
    let (report, setup_s, wall_s) = run_timed(config, &apps, &options)?;
    let verified = report.apps[0]
        .counters
        .get("bytes_verified")
        .copied()
        .unwrap_or(0);
    if verified != bytes {
        bail!(
            "the sink verified {verified} of {bytes} bytes ({})",
            report.outcome
        );
    }
    let virtual_s = report.stats.end_time_us as f64 / 1e6;
    let mut figures = json!({
        "bytes": bytes, "wall_s": wall_s, "setup_s": setup_s, "virtual_s": virtual_s,
        "goodput_gbit_per_virtual_s": gbit_per_s(bytes, virtual_s),
        "frames": report.stats.frames_emitted,
        "wall_us_per_frame": wall_s * 1e6 / report.stats.frames_emitted as f64,
        "steps": report.stats.steps, "polls": report.stats.polls,
    });
    if time_stacks {
        // Reading the clock around every stack call slows the run, so this figure comes from
        // a run of its own.
        figures["share_of_wall_in_stacks"] = json!(probe.spent_ns.get() as f64 / 1e9 / wall_s);
    }
    Ok(figures)
}

/// The scenario file `tcp/bulk_loss_1pct` (1 MiB under 1% loss) over many seeds, judged in
/// full (expectations and trace oracles) as `cargo xtask scenarios --seeds` does, on one and
/// then two threads.
fn seed_sweep(seeds: u64) -> anyhow::Result<Value> {
    use rayon::prelude::*;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    let stacks = wirelab::builtin_stacks();
    let scenario = wirelab::scenario::load(&root.join("tcp/bulk_loss_1pct.toml"), &root, &stacks)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let judge = |seed: u64| {
        wirelab::scenario::check::check(&scenario, seed, &stacks, &RunOptions::default())
            .map_or(true, |c| !c.passed())
    };
    let warm_up = (seeds / 10).max(1);
    let mut walls = Vec::new();
    for threads in [1, 2] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()?;
        // A warm-up pass in each pool first: a thread's first runs fault in the heap (each
        // thread allocates from an arena of its own) that its later runs reuse. A warm-up on
        // the main thread alone left that cost to the one-thread pass, and the speed-up read
        // above 2 on two cores.
        pool.install(|| {
            (1..=warm_up).into_par_iter().for_each(|seed| {
                judge(seed);
            })
        });
        let start = Instant::now();
        let failed = pool.install(|| {
            (1..=seeds)
                .into_par_iter()
                .filter(|&seed| judge(seed))
                .count()
        });
        walls.push(start.elapsed().as_secs_f64());
        if failed > 0 {
            bail!("{failed} of {seeds} seeds failed on {threads} thread(s)");
        }
    }
    Ok(json!({
        "seeds": seeds,
        "wall_s_1_thread": walls[0],
        "wall_s_2_threads": walls[1],
        "scenarios_per_s_1_thread": seeds as f64 / walls[0],
        "scenarios_per_s_2_threads": seeds as f64 / walls[1],
        "speedup_2_threads": walls[0] / walls[1],
    }))
}

fn udp_echo(round_trips: u32) -> anyhow::Result<Value> {
    let mut config = two_hosts(1, SegmentKind::PointToPoint);
    config.capture.enabled = false;
    config.trace = TraceLevel::Decisions;
    for host in &mut config.hosts {
        host.link.to_segment = link_1gbit_1ms();
    }
    let apps = vec![
        AppConfig::UdpEchoServer {
            host: "server".into(),
            port: 7,
        },
        AppConfig::UdpPingPong {
            host: "client".into(),
            target: "10.0.0.2:7".parse()?,
            count: round_trips,
            payload_bytes: 32,
            start_us: 0,
            timeout_us: 100_000,
        },
    ];
    // A run this short is dominated, the first time in a process, by first touches: code
    // pages faulted in, cold caches and branch predictors. The first run is reported as
    // `cold_wall_s`; `wall_s` is the same run again, warm, as the simulator loop of a
    // long-lived process would see it.
    let mut runs = Vec::with_capacity(2);
    for _ in 0..2 {
        let (report, setup_s, wall_s) = run_timed(config.clone(), &apps, &RunOptions::default())?;
        let done = report.apps[1]
            .counters
            .get("round_trips")
            .copied()
            .unwrap_or(0);
        if done != u64::from(round_trips) {
            bail!("{done} of {round_trips} round trips ({})", report.outcome);
        }
        runs.push((report, setup_s, wall_s));
    }
    let (report, setup_s, wall_s) = &runs[1];
    Ok(json!({
        "round_trips": round_trips, "wall_s": wall_s, "setup_s": setup_s,
        "cold_wall_s": runs[0].2, "cold_setup_s": runs[0].1,
        "virtual_s": report.stats.end_time_us as f64 / 1e6,
    }))
}

fn idle_keepalive() -> anyhow::Result<Value> {
    let mut config = two_hosts(1, SegmentKind::Switch);
    config.capture.enabled = false;
    config.trace = TraceLevel::Decisions;
    let hour_us = 3_600_000_000;
    config.time_limit_us = hour_us + 10_000_000;
    let apps = vec![
        AppConfig::TcpServer {
            host: "server".into(),
            port: 5001,
            echo: false,
            backlog: 1,
            reply_bytes: 0,
            read_from_us: 0,
            close_at_us: None,
        },
        AppConfig::TcpClient {
            host: "client".into(),
            target: "10.0.0.2:5001".parse()?,
            start_us: 0,
            send_bytes: 0,
            expect_echo: false,
            expect_bytes: 0,
            keepalive_us: Some(75_000_000),
            hold_until_us: Some(hour_us),
            finish: TcpFinish::Close,
            timeout_us: None,
        },
    ];
    let (report, setup_s, wall_s) = run_timed(config, &apps, &RunOptions::default())?;
    if !report.outcome.is_success() || report.stats.end_time_us < hour_us {
        bail!(
            "the idle connection did not last the hour: {}",
            report.outcome
        );
    }
    Ok(json!({
        "wall_s": wall_s, "setup_s": setup_s, "virtual_s": report.stats.end_time_us as f64 / 1e6,
        "frames": report.stats.frames_emitted, "steps": report.stats.steps,
    }))
}

fn ping(host: String, target: IpAddr, start_us: u64) -> AppConfig {
    AppConfig::Ping {
        host,
        target,
        count: 10,
        interval_us: 1_000_000,
        payload_bytes: 56,
        start_us,
        timeout_us: 1_000_000,
    }
}

fn ping_server(clients: u32) -> anyhow::Result<Value> {
    let mut config = switch_of(1, clients + 1);
    config.capture.enabled = false;
    config.trace = TraceLevel::Decisions;
    let apps: Vec<AppConfig> = (1..=clients)
        .map(|i| ping(format!("h{i}"), IpAddr::V4(host_ip(0)), u64::from(i) * 100))
        .collect();
    let (report, setup_s, wall_s) = run_timed(config, &apps, &RunOptions::default())?;
    let replies: u64 = report
        .apps
        .iter()
        .map(|a| a.counter("replies_received"))
        .sum();
    if replies != u64::from(clients) * 10 {
        bail!("{replies} replies of {} ({})", clients * 10, report.outcome);
    }
    Ok(json!({
        "hosts": clients + 1, "replies": replies, "wall_s": wall_s, "setup_s": setup_s,
        "frames_delivered": report.stats.frames_delivered,
    }))
}

/// What the stack wrappers of one run observe, together.
#[derive(Default)]
struct Probe {
    /// Time every stack call and add it up in `spent_ns` (this slows the run down).
    time_calls: bool,
    spent_ns: std::cell::Cell<u64>,
    /// From this virtual time on, note the wall clock once and count the frames delivered.
    phase_from_us: Option<u64>,
    phase_start: std::cell::Cell<Option<Instant>>,
    phase_frames: std::cell::Cell<u64>,
}

impl Probe {
    fn new(time_calls: bool, phase_from_us: Option<u64>) -> std::rc::Rc<Probe> {
        std::rc::Rc::new(Probe {
            time_calls,
            phase_from_us,
            ..Probe::default()
        })
    }

    /// Wraps every stack of a run with this probe.
    fn wrap(self: &std::rc::Rc<Probe>) -> wirelab::sim::world::StackWrapper {
        let probe = self.clone();
        Box::new(move |inner| {
            Box::new(TimedStack {
                inner,
                probe: probe.clone(),
            })
        })
    }

    fn polled_at(&self, now_us: u64) {
        if self.phase_from_us.is_some_and(|from| now_us >= from) && self.phase_start.get().is_none()
        {
            self.phase_start.set(Some(Instant::now()));
        }
    }

    fn frame_received(&self) {
        if self.phase_start.get().is_some() {
            self.phase_frames.set(self.phase_frames.get() + 1);
        }
    }
}

/// Wraps a stack for its run's `Probe`: adds up the wall time spent inside it, and notes when
/// the run enters its second phase.
struct TimedStack {
    inner: Box<dyn Stack>,
    probe: std::rc::Rc<Probe>,
}

macro_rules! timed {
    ($self:ident, $call:expr) => {{
        if $self.probe.time_calls {
            let start = Instant::now();
            let result = $call;
            let spent = &$self.probe.spent_ns;
            spent.set(spent.get() + start.elapsed().as_nanos() as u64);
            result
        } else {
            $call
        }
    }};
}

impl Stack for TimedStack {
    fn mac(&self) -> MacAddr {
        self.inner.mac()
    }
    fn receive(&mut self, frame: &[u8]) {
        self.probe.frame_received();
        timed!(self, self.inner.receive(frame))
    }
    fn receive_buffer(&mut self, frame: &mut Vec<u8>) {
        self.probe.frame_received();
        timed!(self, self.inner.receive_buffer(frame))
    }
    fn poll(&mut self, now_us: u64, egress: &mut FrameQueue) -> bool {
        self.probe.polled_at(now_us);
        timed!(self, self.inner.poll(now_us, egress))
    }
    fn poll_at(&mut self, now_us: u64) -> Option<u64> {
        timed!(self, self.inner.poll_at(now_us))
    }
    fn tcp_listen(
        &mut self,
        port: u16,
        backlog: usize,
    ) -> Result<wirelab::stack::SocketId, SocketError> {
        self.inner.tcp_listen(port, backlog)
    }
    fn tcp_accept(
        &mut self,
        l: wirelab::stack::SocketId,
    ) -> Result<Option<wirelab::stack::SocketId>, SocketError> {
        self.inner.tcp_accept(l)
    }
    fn tcp_connect(&mut self, remote: SocketAddr) -> Result<wirelab::stack::SocketId, SocketError> {
        self.inner.tcp_connect(remote)
    }
    fn tcp_send(&mut self, s: wirelab::stack::SocketId, data: &[u8]) -> Result<usize, SocketError> {
        timed!(self, self.inner.tcp_send(s, data))
    }
    fn tcp_recv(
        &mut self,
        s: wirelab::stack::SocketId,
        buf: &mut [u8],
    ) -> Result<usize, SocketError> {
        timed!(self, self.inner.tcp_recv(s, buf))
    }
    fn tcp_recv_with(
        &mut self,
        s: wirelab::stack::SocketId,
        limit: usize,
        consume: &mut dyn FnMut(&[u8]),
    ) -> Result<usize, SocketError> {
        timed!(self, self.inner.tcp_recv_with(s, limit, consume))
    }
    fn tcp_shutdown(&mut self, s: wirelab::stack::SocketId) -> Result<(), SocketError> {
        self.inner.tcp_shutdown(s)
    }
    fn tcp_abort(&mut self, s: wirelab::stack::SocketId) -> Result<(), SocketError> {
        self.inner.tcp_abort(s)
    }
    fn tcp_state(
        &self,
        s: wirelab::stack::SocketId,
    ) -> Result<wirelab::stack::TcpState, SocketError> {
        self.inner.tcp_state(s)
    }
    fn tcp_end(
        &self,
        s: wirelab::stack::SocketId,
    ) -> Result<Option<wirelab::stack::TcpEnd>, SocketError> {
        self.inner.tcp_end(s)
    }
    fn tcp_send_queue(&self, s: wirelab::stack::SocketId) -> Result<usize, SocketError> {
        self.inner.tcp_send_queue(s)
    }
    fn tcp_endpoints(
        &self,
        s: wirelab::stack::SocketId,
    ) -> Result<Option<(SocketAddr, SocketAddr)>, SocketError> {
        self.inner.tcp_endpoints(s)
    }
    fn tcp_set_keepalive(
        &mut self,
        s: wirelab::stack::SocketId,
        i: Option<u64>,
    ) -> Result<(), SocketError> {
        self.inner.tcp_set_keepalive(s, i)
    }
    fn tcp_set_nagle(&mut self, s: wirelab::stack::SocketId, on: bool) -> Result<(), SocketError> {
        self.inner.tcp_set_nagle(s, on)
    }
    fn tcp_set_timeout(
        &mut self,
        s: wirelab::stack::SocketId,
        t: Option<u64>,
    ) -> Result<(), SocketError> {
        self.inner.tcp_set_timeout(s, t)
    }
    fn udp_bind(&mut self, port: u16) -> Result<wirelab::stack::SocketId, SocketError> {
        self.inner.udp_bind(port)
    }
    fn udp_local_port(&self, s: wirelab::stack::SocketId) -> Result<u16, SocketError> {
        self.inner.udp_local_port(s)
    }
    fn udp_send_to(
        &mut self,
        s: wirelab::stack::SocketId,
        d: SocketAddr,
        data: &[u8],
    ) -> Result<(), SocketError> {
        timed!(self, self.inner.udp_send_to(s, d, data))
    }
    fn udp_recv_from(
        &mut self,
        s: wirelab::stack::SocketId,
        buf: &mut [u8],
    ) -> Result<Option<(usize, SocketAddr)>, SocketError> {
        timed!(self, self.inner.udp_recv_from(s, buf))
    }
    fn icmp_echo_open(&mut self, ident: u16) -> Result<wirelab::stack::SocketId, SocketError> {
        self.inner.icmp_echo_open(ident)
    }
    fn icmp_echo_send(
        &mut self,
        s: wirelab::stack::SocketId,
        d: IpAddr,
        seq: u16,
        p: &[u8],
    ) -> Result<(), SocketError> {
        timed!(self, self.inner.icmp_echo_send(s, d, seq, p))
    }
    fn icmp_echo_recv(
        &mut self,
        s: wirelab::stack::SocketId,
    ) -> Result<Option<wirelab::stack::EchoReply>, SocketError> {
        timed!(self, self.inner.icmp_echo_recv(s))
    }
    fn close(&mut self, s: wirelab::stack::SocketId) -> Result<(), SocketError> {
        self.inner.close(s)
    }
}

/// Every host pings its partner (`h0` and `h1`, `h2` and `h3`, ...) on one switch, ten times a
/// second apart. Pairs start at evenly spread instants within the first half second (1 ms apart
/// at 1000 hosts), so that their ARP broadcasts do not all land at one instant and every pair
/// has resolved its partner and had its first reply before one second of virtual time.
fn ping_pairs_world(hosts: u32) -> (wirelab::sim::config::WorldConfig, Vec<AppConfig>) {
    let mut config = switch_of(1, hosts);
    config.capture.enabled = false;
    config.trace = TraceLevel::Decisions;
    let spacing_us = 500_000 / u64::from(hosts / 2).max(1);
    let apps: Vec<AppConfig> = (0..hosts)
        .map(|i| {
            let partner = i ^ 1;
            ping(
                format!("h{i}"),
                IpAddr::V4(host_ip(partner)),
                u64::from(i / 2) * spacing_us,
            )
        })
        .collect();
    (config, apps)
}

/// From one second on, the pairs only exchange unicast echo requests and replies.
const PING_PAIRS_STEADY_FROM_US: u64 = 1_000_000;

fn ping_pairs(hosts: u32, time_stacks: bool) -> anyhow::Result<Value> {
    let (config, apps) = ping_pairs_world(hosts);
    // The same world twice in one process: the first run pays the process's first touches
    // (heap pages faulted in and zeroed, code paged in), which at 100 hosts are most of its
    // few milliseconds; it is reported as `cold_wall_s`, and the second run as `wall_s`.
    let cold_wall_s = {
        let cold = Probe::new(false, None);
        let options = RunOptions {
            wrap_stack: Some(cold.wrap()),
            ..RunOptions::default()
        };
        run_timed(config.clone(), &apps, &options)?.2
    };
    let probe = Probe::new(time_stacks, Some(PING_PAIRS_STEADY_FROM_US));
    let options = RunOptions {
        wrap_stack: Some(probe.wrap()),
        ..RunOptions::default()
    };
    let (report, setup_s, wall_s) = run_timed(config, &apps, &options)?;
    let end = Instant::now();
    let replies: u64 = report
        .apps
        .iter()
        .map(|a| a.counter("replies_received"))
        .sum();
    if replies != u64::from(hosts) * 10 {
        bail!("{replies} replies of {} ({})", hosts * 10, report.outcome);
    }
    let delivered = report.stats.frames_delivered;
    let mut figures = json!({
        "hosts": hosts, "replies": replies, "frames_delivered": delivered, "wall_s": wall_s,
        "setup_s": setup_s, "wall_ns_per_delivered_frame": wall_s * 1e9 / delivered as f64,
        "cold_wall_s": cold_wall_s,
    });
    if time_stacks {
        figures["share_of_wall_in_stacks"] = json!(probe.spent_ns.get() as f64 / 1e9 / wall_s);
        return Ok(figures);
    }
    // The frames of the whole run are not alike across sizes: each host's first ping starts
    // with an ARP broadcast that reaches every other host, so cheap broadcast deliveries grow
    // with the square of the host count (83%, 98% and 99.8% of the frames delivered at 100,
    // 1000 and 10 000 hosts), and each host opens its socket once. After the first second only
    // unicast requests and replies are left, the same mix at every size.
    if let Some(start) = probe.phase_start.get() {
        let steady_s = (end - start).as_secs_f64();
        let steady_frames = probe.phase_frames.get();
        figures["steady_wall_s"] = json!(steady_s);
        figures["steady_frames"] = json!(steady_frames);
        figures["steady_wall_ns_per_frame"] = json!(steady_s * 1e9 / steady_frames as f64);
    }
    Ok(figures)
}
