//! `wirelab tap`: a smoltcp host on a TAP device in a namespace of wirelab's own, for people to ping, curl or capture with their own tools, in real time; and the real-time loop that drives a stack on such a device. This module reads the wall clock.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use wirelab::backends::linux::netns::{
    missing_requirements, remove_stale_namespaces, Namespace, TapDevice, TapError,
};
use wirelab::scenario::golden::write_atomic;
use wirelab::stack::FrameQueue;
use wirelab::wire::capture::{CaptureFormat, CaptureWriter};
use wirelab::Stack;

/// What `wirelab tap` takes.
#[derive(clap::Args, Clone, Debug)]
pub struct TapArgs {
    /// Stop after this many seconds (default: run until Ctrl-C).
    #[arg(long)]
    pub seconds: Option<u64>,
    /// Bytes the TCP server on port 7 sends to every connection.
    #[arg(long, default_value_t = 1000)]
    pub reply_bytes: u64,
    /// Write every frame to this pcap file at the end.
    #[arg(long)]
    pub pcap: Option<PathBuf>,
    /// The host's seed (ISNs, ephemeral ports).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// Runs the host until Ctrl-C or `--seconds`, then prints what it saw.
pub fn run(options: TapArgs) -> anyhow::Result<ExitCode> {
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
    println!("smoltcp host {SERVICE_HOST_IP} (MAC {}) on TAP device wl0 in namespace {ns}; the kernel side is {KERNEL_CIDR}.", ServiceHost::mac());
    println!("It answers ping, echoes UDP on port 7, and sends {} bytes of wirelab's pattern to every TCP connection on port 7. Try:", options.reply_bytes);
    println!("  ip netns exec {ns} ping {SERVICE_HOST_IP}");
    println!(
        "  ip netns exec {ns} bash -c 'exec 3<>/dev/udp/{SERVICE_HOST_IP}/7; echo hello >&3; head -1 <&3'"
    );
    println!("  ip netns exec {ns} curl -s --http0.9 http://{SERVICE_HOST_IP}:7/ | wc -c");
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
        write_atomic(path, &bytes).with_context(|| format!("writing {}", path.display()))?;
        println!("capture written to {}", path.display());
    }
    for report in host.reports() {
        println!("{} {}: {:?}", report.host, report.kind, report.counters);
    }
    Ok(ExitCode::SUCCESS)
}

/// Sees every frame in either direction, with its time in microseconds since the start.
pub type FrameObserver<'a> = &'a mut dyn FnMut(u64, &[u8]);

/// Connects a stack to a TAP device in real time: frames from the kernel go into the stack,
/// frames from the stack go to the kernel, and `act` runs after every poll with the time in
/// microseconds since the start. Returns when `keep_going` says so (it is asked at least every
/// 50 ms).
pub struct RealTimeLink<'a> {
    pub tap: &'a mut TapDevice,
    /// Every frame in either direction, with its time since the start (for captures).
    pub on_frame: Option<FrameObserver<'a>>,
}

impl RealTimeLink<'_> {
    #[allow(
        clippy::disallowed_methods,
        reason = "a real device runs in real time; this is the one place the harness reads the clock"
    )]
    pub fn run(
        &mut self,
        stack: &mut dyn Stack,
        act: &mut dyn FnMut(u64, &mut dyn Stack) -> bool,
        keep_going: &mut dyn FnMut(u64) -> bool,
    ) {
        let start = Instant::now();
        let mut egress = FrameQueue::default();
        let mut buf = vec![0u8; 65_536];
        loop {
            let now_us = start.elapsed().as_micros() as u64;
            if !keep_going(now_us) {
                break;
            }
            while let Some(n) = self.tap.read_frame(&mut buf) {
                if let Some(on_frame) = self.on_frame.as_mut() {
                    on_frame(now_us, &buf[..n]);
                }
                stack.receive(&buf[..n]);
            }
            // Poll, let the applications act, and poll again while they keep acting.
            for _ in 0..64 {
                stack.poll(now_us, &mut egress);
                let acted = act(now_us, stack);
                for index in 0..egress.len() {
                    let frame = egress.get(index);
                    if let Some(on_frame) = self.on_frame.as_mut() {
                        on_frame(now_us, frame);
                    }
                    let _ = self.tap.write_frame(frame);
                }
                egress.clear();
                if !acted {
                    break;
                }
            }
            let wait_us = stack
                .poll_at(now_us)
                .map_or(50_000, |at| at.saturating_sub(now_us))
                .min(50_000);
            self.tap.wait_readable(Duration::from_micros(wait_us));
        }
    }
}

/// The kernel's address on the TAP device, inside the namespace.
pub const KERNEL_CIDR: &str = "10.77.0.1/24";
/// The address of the [`ServiceHost`] on the other side of the TAP device.
pub const SERVICE_HOST_IP: std::net::Ipv4Addr = std::net::Ipv4Addr::new(10, 77, 0, 2);

/// A fresh namespace with a TAP device called `wl0` in it, up, the kernel's side addressed
/// [`KERNEL_CIDR`].
pub fn namespace_with_tap() -> Result<(Namespace, TapDevice), TapError> {
    let namespace = Namespace::create()?;
    let tap = namespace.open_tap("wl0")?;
    namespace.ip(&["addr", "add", KERNEL_CIDR, "dev", "wl0"])?;
    Ok((namespace, tap))
}

/// A smoltcp host at [`SERVICE_HOST_IP`] that answers ping, echoes UDP on port 7 and sends
/// `reply_bytes` of wirelab's pattern to every TCP connection on port 7: what
/// `cargo xtask tap` exposes, and what its test talks to.
pub struct ServiceHost {
    stack: Box<dyn Stack>,
    apps: Vec<Box<dyn wirelab::sim::apps::App>>,
}

impl ServiceHost {
    pub fn new(seed: u64, reply_bytes: u64) -> ServiceHost {
        use wirelab::sim::apps::{build, AppConfig};
        let mut config = wirelab::StackConfig::new("tap-host", Self::mac(), seed);
        config.ipv4 = Some((SERVICE_HOST_IP, 24));
        let host = || "tap-host".to_string();
        let apps = vec![
            build(
                &AppConfig::UdpEchoServer {
                    host: host(),
                    port: 7,
                },
                1,
            ),
            build(
                &AppConfig::TcpServer {
                    host: host(),
                    port: 7,
                    echo: false,
                    backlog: 16,
                    reply_bytes,
                    read_from_us: 0,
                    close_at_us: None,
                },
                2,
            ),
        ];
        ServiceHost {
            stack: Box::new(wirelab::backends::smoltcp::SmoltcpStack::new(config)),
            apps,
        }
    }

    pub fn mac() -> wirelab::stack::MacAddr {
        wirelab::stack::MacAddr::local_from_index(2)
    }

    /// Serves over `link` until `keep_going` says stop (see [`RealTimeLink::run`]).
    pub fn serve(&mut self, link: &mut RealTimeLink<'_>, keep_going: &mut dyn FnMut(u64) -> bool) {
        let apps = &mut self.apps;
        link.run(
            self.stack.as_mut(),
            &mut |now_us, stack| {
                let mut acted = false;
                for app in apps.iter_mut() {
                    acted |= app.act(now_us, stack);
                }
                acted
            },
            keep_going,
        );
    }

    pub fn reports(&mut self) -> impl Iterator<Item = &wirelab::sim::apps::AppReport> {
        self.apps.iter_mut().map(|app| app.report())
    }
}
