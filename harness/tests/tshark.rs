//! Every capture wirelab writes opens in tshark with no malformed frame and no bad checksum, except frames the corruption rule damaged on purpose, which their comment names.

use std::process::Command;

use wirelab::sim::library::builtin;
use wirelab::sim::world::{run, RunOptions};
use wirelab::wire::capture::{read_capture, CaptureFormat};

/// What this machine lacks for the test, if anything.
fn tshark_missing() -> Option<String> {
    let found = Command::new("tshark")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    (!found).then(|| "tshark not found (install it with: apt-get install tshark)".to_string())
}

fn tshark_reads_every_capture_cleanly() {
    let dir = std::env::temp_dir().join(format!("wirelab-tshark-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut checked_frames = 0;
    // Classic pcap has no comments: which frames were corrupted on purpose is taken from the
    // pcapng capture of the same run, which holds the same frames in the same order.
    let mut corrupted: Vec<Vec<bool>> = Vec::new();
    for format in [CaptureFormat::Pcapng, CaptureFormat::Pcap] {
        for (index, scenario) in builtin(1).into_iter().enumerate() {
            let mut config = scenario.config.clone();
            config.capture.format = format;
            let report = run(
                config,
                &scenario.apps,
                &wirelab::builtin_stacks(),
                &RunOptions::default(),
            )
            .unwrap();
            for capture in &report.captures {
                let bytes = capture.bytes.as_ref().unwrap();
                let path = dir.join(format!(
                    "{}-{}.cap",
                    scenario.name.replace('/', "_"),
                    capture.segment
                ));
                std::fs::write(&path, bytes).unwrap();
                let ours = read_capture(bytes).unwrap();
                if format == CaptureFormat::Pcapng {
                    corrupted.push(
                        ours.iter()
                            .filter(|f| {
                                !f.comment
                                    .as_deref()
                                    .is_some_and(|c| c.contains("never on the segment"))
                            })
                            .map(|f| {
                                f.comment
                                    .as_deref()
                                    .is_some_and(|c| c.contains("corrupted"))
                            })
                            .collect(),
                    );
                }
                let expected_corrupt = &corrupted[index];
                let output = Command::new("tshark")
                    .args(["-n", "-r"])
                    .arg(&path)
                    .args([
                        "-o",
                        "ip.check_checksum:TRUE",
                        "-o",
                        "tcp.check_checksum:TRUE",
                        "-o",
                        "udp.check_checksum:TRUE",
                        "-T",
                        "fields",
                        "-E",
                        "separator=|",
                        "-e",
                        "frame.number",
                        "-e",
                        "_ws.malformed",
                        "-e",
                        "_ws.expert.message",
                    ])
                    .output()
                    .unwrap();
                assert!(
                    output.status.success(),
                    "tshark failed on {}: {}",
                    path.display(),
                    String::from_utf8_lossy(&output.stderr)
                );
                let text = String::from_utf8_lossy(&output.stdout);
                let lines: Vec<&str> = text.lines().collect();
                assert_eq!(
                    lines.len(),
                    ours.len(),
                    "{}: tshark and wirelab count different frames",
                    scenario.name
                );
                let flags: Vec<bool> = if format == CaptureFormat::Pcapng {
                    ours.iter()
                        .map(|f| {
                            f.comment
                                .as_deref()
                                .is_some_and(|c| c.contains("corrupted"))
                        })
                        .collect()
                } else {
                    expected_corrupt.clone()
                };
                assert_eq!(flags.len(), ours.len(), "{}", scenario.name);
                for ((line, frame), corrupted_on_purpose) in lines.iter().zip(&ours).zip(&flags) {
                    let lower = line.to_lowercase();
                    let damaged = lower.contains("malformed")
                        || lower.contains("bad checksum")
                        || lower.contains("checksum") && lower.contains("incorrect");
                    assert!(
                        !damaged || *corrupted_on_purpose,
                        "{} frame {line}: tshark reports damage the comment does not explain ({:?})",
                        scenario.name,
                        frame.comment
                    );
                    checked_frames += 1;
                }
            }
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(checked_frames > 1000, "{checked_frames} frames checked");
}

fn main() {
    wirelab::needs::run(vec![wirelab::needs::test(
        "tshark_reads_every_capture_cleanly",
        tshark_reads_every_capture_cleanly,
    )
    .needs(tshark_missing())])
}
