//! A smoltcp host on a TAP device inside a namespace wirelab creates, talking to the Linux kernel for real: ping, UDP echo and a TCP reply; the namespace is gone afterwards.

use std::process::{Child, Command, Stdio};

use harness::apps::{build, AppConfig};
use harness::tap::{leftover_namespaces, missing_requirements, Namespace, RealTimeLink};
use stack::smoltcp::SmoltcpStack;
use stack::{MacAddr, Stack, StackConfig};

const STACK_IP: &str = "10.77.0.2";

/// Runs `script` with bash inside the namespace while a smoltcp host (UDP echo on port 7,
/// TCP server on port 7 sending 300 bytes to each client) serves it; returns its output.
fn against_smoltcp(script: &str) -> (bool, String) {
    let namespace = Namespace::create().expect("creating a namespace");
    let mut tap = namespace.open_tap("wl0").expect("opening a TAP device");
    namespace
        .ip(&["addr", "add", "10.77.0.1/24", "dev", "wl0"])
        .expect("addressing the kernel side");
    let mut config = StackConfig::new("tap-host", MacAddr::local_from_index(2), 7);
    config.ipv4 = Some((STACK_IP.parse().unwrap(), 24));
    let mut stack: Box<dyn Stack> = Box::new(SmoltcpStack::new(config));
    let mut apps = vec![
        build(
            &AppConfig::UdpEchoServer {
                host: "tap-host".into(),
                port: 7,
            },
            1,
        ),
        build(
            &AppConfig::TcpServer {
                host: "tap-host".into(),
                port: 7,
                echo: false,
                backlog: 4,
                reply_bytes: 300,
                read_from_us: 0,
                close_at_us: None,
            },
            2,
        ),
    ];
    let mut child: Child = namespace
        .command("bash")
        .args(["-c", script])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting the kernel-side script");
    let mut link = RealTimeLink {
        tap: &mut tap,
        on_frame: None,
    };
    let mut finished = false;
    link.run(
        stack.as_mut(),
        &mut |now_us, stack| {
            let mut acted = false;
            for app in &mut apps {
                acted |= app.act(now_us, stack);
            }
            acted
        },
        &mut |now_us| {
            finished = matches!(child.try_wait(), Ok(Some(_)));
            !finished && now_us < 15_000_000
        },
    );
    let output = child.wait_with_output().expect("the script's output");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (finished && output.status.success(), text)
}

#[test]
fn the_kernel_talks_to_a_smoltcp_host_over_tap() {
    if let Some(missing) = missing_requirements() {
        harness::skip_test(&missing);
        return;
    }
    if Command::new("ping").arg("-V").output().is_err() {
        harness::skip_test("ping is missing: apt-get install iputils-ping");
        return;
    }
    let (ok, out) = against_smoltcp(&format!("ping -c 3 -i 0.2 -W 2 {STACK_IP}"));
    assert!(ok && out.contains("3 received"), "{out}");

    let (ok, out) = against_smoltcp(&format!(
        "exec 3<>/dev/udp/{STACK_IP}/7; printf wirelab >&3; read -t 3 -N 7 reply <&3; echo \"reply=$reply\""
    ));
    assert!(ok && out.contains("reply=wirelab"), "{out}");

    let (ok, out) = against_smoltcp(&format!(
        "exec 3<>/dev/tcp/{STACK_IP}/7; head -c 300 <&3 | wc -c"
    ));
    assert!(ok && out.trim() == "300", "{out}");

    let mine: Vec<String> = leftover_namespaces()
        .into_iter()
        .filter(|n| n.starts_with(&format!("wirelab-{}-", std::process::id())))
        .collect();
    assert!(mine.is_empty(), "namespaces left behind: {mine:?}");
}
