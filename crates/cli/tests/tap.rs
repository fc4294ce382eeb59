//! A smoltcp host on a TAP device inside a namespace wirelab creates, talking to the Linux kernel for real: ping, UDP echo and a TCP reply; the namespace is gone afterwards.

use std::process::{Child, Command, Stdio};

use wirelab::backends::linux::netns::{leftover_namespaces, missing_requirements};
use wirelab_cli::tap::{
    namespace_with_tap, RealTimeLink, ServiceHost, SERVICE_HOST_IP as STACK_IP,
};

/// Runs `script` with bash inside the namespace while a smoltcp host (UDP echo on port 7,
/// TCP server on port 7 sending 300 bytes to each client) serves it; returns its output.
fn against_smoltcp(script: &str) -> (bool, String) {
    let (namespace, mut tap) = namespace_with_tap().expect("a namespace with a TAP device");
    let mut host = ServiceHost::new(7, 300);
    let mut child: Child = namespace
        .command("bash")
        .args(["-c", script])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting the kernel-side script");
    let mut finished = false;
    host.serve(
        &mut RealTimeLink {
            tap: &mut tap,
            on_frame: None,
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

fn the_kernel_talks_to_a_smoltcp_host_over_tap() {
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

fn main() {
    let ping = Command::new("ping")
        .arg("-V")
        .output()
        .is_err()
        .then(|| "ping is missing: apt-get install iputils-ping".to_string());
    wirelab::needs::run(vec![wirelab::needs::test(
        "the_kernel_talks_to_a_smoltcp_host_over_tap",
        the_kernel_talks_to_a_smoltcp_host_over_tap,
    )
    .needs(missing_requirements())
    .needs(ping)])
}
