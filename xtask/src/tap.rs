//! `cargo xtask tap`: a smoltcp host on a TAP device in a namespace of wirelab's own, for people to ping, curl or capture with their own tools, in real time.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context};
use harness::capture::{CaptureFormat, CaptureWriter};
use harness::tap::{
    missing_requirements, namespace_with_tap, remove_stale_namespaces, RealTimeLink, ServiceHost,
    KERNEL_CIDR, SERVICE_HOST_IP as HOST_IP,
};

pub struct Options {
    pub seconds: Option<u64>,
    pub reply_bytes: u64,
    pub pcap: Option<PathBuf>,
    pub seed: u64,
}

pub fn run(options: Options) -> anyhow::Result<()> {
    if let Some(missing) = missing_requirements() {
        bail!("cannot create a TAP device: {missing}");
    }
    for name in remove_stale_namespaces() {
        eprintln!("removed {name}, left behind by a process that no longer runs");
    }
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = Arc::clone(&stop);
        ctrlc::set_handler(move || stop.store(true, Ordering::SeqCst))
            .context("installing the Ctrl-C handler")?;
    }
    // Dropped on every way out of this function, panics included: the namespace and the
    // TAP device in it go away.
    let (namespace, mut tap) = namespace_with_tap()?;
    let mut host = ServiceHost::new(options.seed, options.reply_bytes);
    let ns = namespace.name().to_string();
    println!("smoltcp host {HOST_IP} (MAC {}) on TAP device wl0 in namespace {ns}; the kernel side is {KERNEL_CIDR}.", ServiceHost::mac());
    println!("It answers ping, echoes UDP on port 7, and sends {} bytes of wirelab's pattern to every TCP connection on port 7. Try:", options.reply_bytes);
    println!("  ip netns exec {ns} ping {HOST_IP}");
    println!(
        "  ip netns exec {ns} bash -c 'exec 3<>/dev/udp/{HOST_IP}/7; echo hello >&3; head -1 <&3'"
    );
    println!("  ip netns exec {ns} curl -s --http0.9 http://{HOST_IP}:7/ | wc -c");
    println!("  ip netns exec {ns} tcpdump -ni wl0");
    match options.seconds {
        Some(s) => println!("Running for {s} s (or until Ctrl-C)."),
        None => println!("Running until Ctrl-C."),
    }

    let mut capture = options
        .pcap
        .as_ref()
        .map(|_| CaptureWriter::to_memory(CaptureFormat::Pcap, 65_535, "wl0"));
    let mut frames = 0u64;
    let mut on_frame = |time_us: u64, frame: &[u8]| {
        frames += 1;
        if let Some(writer) = capture.as_mut() {
            let _ = writer.write_frame(time_us, frame, None);
        }
    };
    let limit_us = options.seconds.map(|s| s.saturating_mul(1_000_000));
    host.serve(
        &mut RealTimeLink {
            tap: &mut tap,
            on_frame: Some(&mut on_frame),
        },
        &mut |now_us| !stop.load(Ordering::SeqCst) && limit_us.is_none_or(|l| now_us < l),
    );
    println!("{frames} frames; removing namespace {ns}");
    if let (Some(path), Some(writer)) = (&options.pcap, capture) {
        let bytes = writer
            .finish()
            .context("finishing the capture")?
            .context("the capture is in memory")?;
        harness::golden::write_atomic(path, &bytes)
            .with_context(|| format!("writing {}", path.display()))?;
        println!("capture written to {}", path.display());
    }
    for report in host.reports() {
        println!("{} {}: {:?}", report.host, report.kind, report.counters);
    }
    Ok(())
}

/// Before `cargo xtask scenarios` puts hosts on linux (`--stack linux`, `--diff ...,linux`):
/// what is missing on this machine, or why the options make no sense for real-time runs.
/// Also removes the namespaces of wirelab processes that were killed outright.
pub fn linux_preflight(bless: bool) -> Result<(), String> {
    harness::linux_host::available().map_err(|missing| format!("linux: {missing}"))?;
    if bless {
        return Err("runs on linux are real-time and cannot be reproduced, so they have no goldens: leave out --bless".into());
    }
    for name in remove_stale_namespaces() {
        eprintln!("removed {name}, left behind by a process that no longer runs");
    }
    Ok(())
}

/// The scenarios that can run with every host on linux; prints a `skip` line with the
/// reason for each of the others.
pub fn runnable_on_linux(
    scenarios: Vec<harness::scenario::Scenario>,
) -> Vec<harness::scenario::Scenario> {
    scenarios
        .into_iter()
        .filter(
            |s| match harness::linux_host::cannot_run_on_linux(&s.config) {
                None => true,
                Some(why) => {
                    println!("skip {:<44} not on linux: {why}", s.name);
                    false
                }
            },
        )
        .collect()
}

/// In a process that runs linux hosts: on Ctrl-C, SIGTERM or SIGHUP, delete the namespaces
/// this process created (the process then exits without unwinding, so no destructor would).
pub fn remove_namespaces_on_signals() -> anyhow::Result<()> {
    ctrlc::set_handler(|| {
        harness::tap::remove_live_namespaces();
        std::process::exit(130);
    })
    .context("installing the signal handler that removes the namespaces")
}
