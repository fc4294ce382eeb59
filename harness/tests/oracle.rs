//! The trace oracles on real runs: every built-in run of the simulator, on several seeds, breaks none of them, and a changed segment slipped into a real trace is caught.

use etherparse::TcpSlice;
use wirelab::judge::oracle::{check, Violation};
use wirelab::sim::config::TraceLevel;
use wirelab::sim::library::builtin;
use wirelab::sim::trace::{Trace, TraceKind};
use wirelab::sim::world::{run, RunOptions};

/// Runs every built-in scenario with `seed` and returns each one's violations.
fn violations_of_builtin_runs(seed: u64) -> Vec<(&'static str, Vec<Violation>)> {
    builtin(seed)
        .into_iter()
        .map(|scenario| {
            let report = run(
                scenario.config.clone(),
                &scenario.apps,
                &wirelab::builtin_stacks(),
                &RunOptions::default(),
            )
            .unwrap_or_else(|e| panic!("{} seed {seed}: {e}", scenario.name));
            let macs: Vec<_> = (0..scenario.config.hosts.len())
                .map(|i| scenario.config.host_mac(i))
                .collect();
            (scenario.name, check(&report.trace, &report.names, &macs))
        })
        .collect()
}

#[test]
fn builtin_runs_break_no_oracle_rule() {
    let mut failures = String::new();
    for seed in 1..=3 {
        for (name, violations) in violations_of_builtin_runs(seed) {
            for v in violations {
                failures.push_str(&format!("{name} seed {seed}: {v}\n"));
            }
        }
    }
    assert!(failures.is_empty(), "{failures}");
}

/// Copies a real trace, inserting `extra(frame)`'s result right after each frame for which it
/// returns one. Inserted frames get ids from 1_000_000 up, so reports can name them.
fn replay_with(
    trace: &Trace,
    mut extra: impl FnMut(&[u8]) -> Option<Vec<u8>>,
) -> (Trace, Vec<u64>) {
    let mut copy = Trace::new(TraceLevel::Frames);
    let mut inserted = Vec::new();
    for event in trace.events() {
        match &event.kind {
            TraceKind::Frame {
                segment,
                from_host,
                frame_id,
                bytes,
            } => {
                let frame = trace.frame_bytes(bytes);
                copy.frame(event.time_us, *segment, *from_host, *frame_id, frame);
                if let Some(changed) = extra(frame) {
                    let id = 1_000_000 + inserted.len() as u64;
                    copy.frame(event.time_us, *segment, *from_host, id, &changed);
                    inserted.push(id);
                }
            }
            kind => copy.record(event.time_us, kind.clone()),
        }
    }
    (copy, inserted)
}

/// Where an IPv4 frame's TCP segment starts and ends, if it is one.
fn tcp_range(frame: &[u8]) -> Option<std::ops::Range<usize>> {
    if frame.get(12..14)? != [0x08, 0x00] || frame[14 + 9] != 6 {
        return None;
    }
    let start = 14 + usize::from(frame[14] & 0x0f) * 4;
    let end = 14 + usize::from(u16::from_be_bytes([frame[16], frame[17]]));
    Some(start..end)
}

/// Rewrites the TCP checksum of an IPv4 frame, so that a changed segment breaks only the rule
/// under test.
fn fix_tcp_checksum(frame: &mut [u8]) {
    let range = tcp_range(frame).unwrap();
    let src: [u8; 4] = frame[26..30].try_into().unwrap();
    let dst: [u8; 4] = frame[30..34].try_into().unwrap();
    let sum = TcpSlice::from_slice(&frame[range.clone()])
        .unwrap()
        .calc_checksum_ipv4(src, dst)
        .unwrap();
    frame[range.start + 16..range.start + 18].copy_from_slice(&sum.to_be_bytes());
}

#[test]
fn changed_segments_slipped_into_a_real_trace_are_caught() {
    let scenario = builtin(1)
        .into_iter()
        .find(|s| s.name == "tcp/transfer_256k_loss_2pct")
        .unwrap();
    let report = run(
        scenario.config.clone(),
        &scenario.apps,
        &wirelab::builtin_stacks(),
        &RunOptions::default(),
    )
    .unwrap();
    let macs: Vec<_> = (0..scenario.config.hosts.len())
        .map(|i| scenario.config.host_mac(i))
        .collect();

    // The tenth data segment, sent again with one byte changed.
    let mut data_segments = 0;
    let (changed_data, inserted) = replay_with(&report.trace, |frame| {
        let tcp = tcp_range(frame)?;
        let header = usize::from(frame[tcp.start + 12] >> 4) * 4;
        if tcp.len() <= header {
            return None;
        }
        data_segments += 1;
        if data_segments != 10 {
            return None;
        }
        let mut copy = frame.to_vec();
        copy[tcp.start + header + 100] ^= 0x20;
        fix_tcp_checksum(&mut copy);
        Some(copy)
    });
    let found = check(&changed_data, &report.names, &macs);
    let rules: Vec<_> = found.iter().map(|v| (v.frame_id, v.rule)).collect();
    assert_eq!(rules, [(inserted[0], "tcp-retransmission-differs")]);
    assert!(found[0].detail.contains("(relative "), "{}", found[0]);

    // The twentieth pure acknowledgement, again, acknowledging 100000 bytes more.
    let mut acks = 0;
    let (over_ack, inserted) = replay_with(&report.trace, |frame| {
        let tcp = tcp_range(frame)?;
        let header = usize::from(frame[tcp.start + 12] >> 4) * 4;
        if tcp.len() != header || frame[tcp.start + 13] != 0x10 {
            return None;
        }
        acks += 1;
        if acks != 20 {
            return None;
        }
        let mut copy = frame.to_vec();
        let at = tcp.start + 8;
        let ack = u32::from_be_bytes(copy[at..at + 4].try_into().unwrap());
        copy[at..at + 4].copy_from_slice(&ack.wrapping_add(100_000).to_be_bytes());
        fix_tcp_checksum(&mut copy);
        Some(copy)
    });
    let found = check(&over_ack, &report.names, &macs);
    let rules: Vec<_> = found.iter().map(|v| (v.frame_id, v.rule)).collect();
    assert_eq!(rules, [(inserted[0], "tcp-ack-beyond-sent")]);
}
