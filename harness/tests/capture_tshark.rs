//! The capture writer's pcap and pcapng files open in tshark: every frame is read with its time and lengths, none is malformed, every checksum Wireshark checks is good, and pcapng comments arrive as frame comments.
//!
//! tshark is the users' own tool, so it is the judge here rather than wirelab's reader.
//! Field and preference names have moved between Wireshark versions, so the test asks the
//! installed tshark which ones it knows instead of assuming a version.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use etherparse::{ArpEthIpv4Packet, ArpOperation, PacketBuilder, TcpOptionElement};
use wirelab::wire::capture::{read_capture, CaptureFormat, CaptureWriter};
use wirelab::wire::decode::{verify_checksums, ChecksumStatus};

const MAC1: [u8; 6] = [2, 0, 0, 0, 0, 1];
const MAC2: [u8; 6] = [2, 0, 0, 0, 0, 2];
const IP1: [u8; 4] = [10, 0, 0, 1];
const IP2: [u8; 4] = [10, 0, 0, 2];
const V6_1: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
const V6_2: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];

/// One test frame: virtual time, bytes, and the pcapng comment it carries.
struct Frame {
    time_us: u64,
    bytes: Vec<u8>,
    comment: Option<&'static str>,
}

fn build<F: FnOnce(&mut Vec<u8>)>(write: F) -> Vec<u8> {
    let mut out = Vec::new();
    write(&mut out);
    out
}

fn arp(operation: ArpOperation) -> Vec<u8> {
    let request = operation == ArpOperation::REQUEST;
    let packet = ArpEthIpv4Packet {
        operation,
        sender_mac: if request { MAC1 } else { MAC2 },
        sender_ipv4: if request { IP1 } else { IP2 },
        target_mac: if request { [0; 6] } else { MAC1 },
        target_ipv4: if request { IP2 } else { IP1 },
    };
    let (src, dst) = if request {
        (MAC1, [0xff; 6])
    } else {
        (MAC2, MAC1)
    };
    let mut out = build(|out| {
        PacketBuilder::ethernet2(src, dst)
            .arp(packet.to_arp_packet())
            .write(out)
            .unwrap()
    });
    // Ethernet's minimum frame: a real NIC pads ARP to 60 bytes.
    out.resize(60, 0);
    out
}

fn frames() -> Vec<Frame> {
    let syn = build(|out| {
        PacketBuilder::ethernet2(MAC1, MAC2)
            .ipv4(IP1, IP2, 64)
            .tcp(40000, 40001, 1000, 65535)
            .syn()
            .options(&[
                TcpOptionElement::MaximumSegmentSize(1460),
                TcpOptionElement::Noop,
                TcpOptionElement::WindowScale(7),
                TcpOptionElement::SelectiveAcknowledgementPermitted,
                TcpOptionElement::Timestamp(1, 0),
            ])
            .unwrap()
            .write(out, &[])
            .unwrap()
    });
    let syn_ack = build(|out| {
        PacketBuilder::ethernet2(MAC2, MAC1)
            .ipv4(IP2, IP1, 64)
            .tcp(40001, 40000, 5000, 65535)
            .syn()
            .ack(1001)
            .options(&[TcpOptionElement::MaximumSegmentSize(1460)])
            .unwrap()
            .write(out, &[])
            .unwrap()
    });
    let data = build(|out| {
        PacketBuilder::ethernet2(MAC1, MAC2)
            .ipv4(IP1, IP2, 64)
            .tcp(40000, 40001, 1001, 65535)
            .ack(5001)
            .psh()
            .write(out, &[0x61; 1460])
            .unwrap()
    });
    let udp = build(|out| {
        PacketBuilder::ethernet2(MAC1, MAC2)
            .ipv4(IP1, IP2, 64)
            .udp(40002, 40003)
            .write(out, &[0x55; 32])
            .unwrap()
    });
    let ping = build(|out| {
        PacketBuilder::ethernet2(MAC1, MAC2)
            .ipv4(IP1, IP2, 64)
            .icmpv4_echo_request(1, 3)
            .write(out, &[0xab; 56])
            .unwrap()
    });
    let pong = build(|out| {
        PacketBuilder::ethernet2(MAC2, MAC1)
            .ipv4(IP2, IP1, 64)
            .icmpv4_echo_reply(1, 3)
            .write(out, &[0xab; 56])
            .unwrap()
    });
    let solicitation = build(|out| {
        let solicited = [0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0, 0, 2];
        let mut body = V6_2.to_vec();
        body.extend([1, 1]); // source link-layer address option
        body.extend(MAC1);
        PacketBuilder::ethernet2(MAC1, [0x33, 0x33, 0xff, 0, 0, 2])
            .ipv6(V6_1, solicited, 255)
            .icmpv6_raw(135, 0, [0; 4])
            .write(out, &body)
            .unwrap()
    });
    let ping6 = build(|out| {
        PacketBuilder::ethernet2(MAC1, MAC2)
            .ipv6(V6_1, V6_2, 64)
            .icmpv6_echo_request(9, 2)
            .write(out, &[0xcd; 16])
            .unwrap()
    });
    let udp6 = build(|out| {
        PacketBuilder::ethernet2(MAC1, MAC2)
            .ipv6(V6_1, V6_2, 64)
            .udp(40002, 40003)
            .write(out, &[1, 2, 3, 4])
            .unwrap()
    });
    [
        (arp(ArpOperation::REQUEST), Some("arp request")),
        (arp(ArpOperation::REPLY), None),
        (syn, Some("to_segment jitter +99us")),
        (syn_ack, None),
        (data, Some("to_segment duplicated")),
        (udp, Some("")),
        (ping, Some("délai ✓")),
        (pong, None),
        (solicitation, Some("ndp")),
        (ping6, None),
        (udp6, Some("last")),
    ]
    .into_iter()
    .enumerate()
    .map(|(i, (bytes, comment))| Frame {
        // Spread over more than 2^32 µs so that the pcapng high timestamp word is used.
        time_us: 1_000_123 * i as u64 + if i > 5 { 5_000_000_000 } else { 0 },
        bytes,
        comment,
    })
    .collect()
}

fn tshark_version() -> Option<String> {
    let output = Command::new("tshark").arg("--version").output().ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&output.stdout);
    Some(text.lines().next().unwrap_or("tshark").to_string())
}

/// The field names the installed tshark knows (`tshark -G fields`, third column).
fn known_fields() -> BTreeSet<String> {
    let output = Command::new("tshark")
        .args(["-G", "fields"])
        .output()
        .unwrap();
    assert!(output.status.success(), "tshark -G fields failed");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split('\t').nth(2).map(str::to_string))
        .collect()
}

/// The preference names the installed tshark knows (`tshark -G defaultprefs`).
fn known_prefs() -> BTreeSet<String> {
    let output = Command::new("tshark")
        .args(["-G", "defaultprefs"])
        .output()
        .unwrap();
    assert!(output.status.success(), "tshark -G defaultprefs failed");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| {
            let line = line.trim_start_matches('#');
            line.split_once(':')
                .map(|(name, _)| name.trim().to_string())
        })
        .collect()
}

/// Removes the test's directory however the test ends.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs tshark over `path` and returns one map from field name to value per frame.
fn tshark_fields(
    path: &Path,
    prefs: &[String],
    fields: &[&str],
) -> Vec<std::collections::BTreeMap<String, String>> {
    let mut command = Command::new("tshark");
    command.args(["-n", "-r"]).arg(path);
    for pref in prefs {
        command.args(["-o", pref]);
    }
    command.args([
        "-T",
        "fields",
        "-E",
        "separator=|",
        "-E",
        "occurrence=a",
        "-E",
        "aggregator=;",
    ]);
    for field in fields {
        command.args(["-e", field]);
    }
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "tshark failed on {}: {}",
        path.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let values: Vec<&str> = line.split('|').collect();
            assert_eq!(
                values.len(),
                fields.len(),
                "unexpected tshark line {line:?}"
            );
            fields
                .iter()
                .zip(values)
                .map(|(f, v)| (f.to_string(), v.to_string()))
                .collect()
        })
        .collect()
}

/// Parses `frame.time_epoch` ("1.000123000") into microseconds.
fn epoch_us(text: &str) -> Option<u64> {
    let (seconds, fraction) = text.split_once('.').unwrap_or((text, ""));
    let micros: String = fraction.chars().chain("000000".chars()).take(6).collect();
    Some(seconds.parse::<u64>().ok()? * 1_000_000 + micros.parse::<u64>().ok()?)
}

fn tshark_reads_pcap_and_pcapng_cleanly_with_comments() {
    let version = tshark_version().expect("main checked that tshark is there");
    eprintln!("checking with {version}");
    let fields_known = known_fields();
    let prefs_known = known_prefs();
    // Wireshark 3.6 renamed pkt_comment to frame.comment; older versions have only the former.
    let comment_field = ["frame.comment", "pkt_comment"]
        .into_iter()
        .find(|f| fields_known.contains(*f))
        .expect("tshark knows neither frame.comment nor pkt_comment");
    let expert_field = ["_ws.expert.message", "expert.message"]
        .into_iter()
        .find(|f| fields_known.contains(*f));
    let status_fields: Vec<&str> = [
        "ip.checksum.status",
        "tcp.checksum.status",
        "udp.checksum.status",
        "icmp.checksum.status",
        "icmpv6.checksum.status",
    ]
    .into_iter()
    .filter(|f| fields_known.contains(*f))
    .collect();
    // Wireshark leaves IP, TCP and UDP checksums unverified unless asked.
    let checking: Vec<String> = ["ip", "tcp", "udp"]
        .into_iter()
        .map(|p| format!("{p}.check_checksum"))
        .filter(|p| prefs_known.contains(p))
        .collect();
    let prefs: Vec<String> = checking.iter().map(|p| format!("{p}:TRUE")).collect();
    let mut fields = vec![
        "frame.number",
        "frame.time_epoch",
        "frame.len",
        "frame.cap_len",
        "frame.protocols",
        "_ws.malformed",
        comment_field,
    ];
    fields.extend(expert_field);
    fields.extend(&status_fields);

    let dir = TempDir(
        std::env::temp_dir().join(format!("wirelab-capture-tshark-{}", std::process::id())),
    );
    std::fs::create_dir_all(&dir.0).unwrap();
    let frames = frames();
    // The frames themselves must be right, or tshark's verdict says nothing about the writer.
    for (i, frame) in frames.iter().enumerate() {
        let expected = if frame.bytes[12..14] == [0x08, 0x06] {
            ChecksumStatus::NotApplicable
        } else {
            ChecksumStatus::Valid
        };
        assert_eq!(verify_checksums(&frame.bytes), expected, "test frame {i}");
    }

    for (format, name) in [
        (CaptureFormat::Pcap, "lan.pcap"),
        (CaptureFormat::Pcapng, "lan.pcapng"),
    ] {
        let path = dir.0.join(name);
        let mut writer = CaptureWriter::to_file(format, 65_535, "lan0", &path).unwrap();
        for frame in &frames {
            writer
                .write_frame(frame.time_us, &frame.bytes, frame.comment)
                .unwrap();
        }
        writer.finish().unwrap();
        let ours = read_capture(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(ours.len(), frames.len());

        let rows = tshark_fields(&path, &prefs, &fields);
        assert_eq!(
            rows.len(),
            frames.len(),
            "{name}: tshark read a different number of frames"
        );
        for (i, (row, frame)) in rows.iter().zip(&frames).enumerate() {
            let context = format!("{name} frame {}: {row:?}", i + 1);
            assert_eq!(row["frame.number"], (i + 1).to_string(), "{context}");
            assert_eq!(
                epoch_us(&row["frame.time_epoch"]),
                Some(frame.time_us),
                "{context}"
            );
            assert_eq!(row["frame.len"], frame.bytes.len().to_string(), "{context}");
            assert_eq!(
                row["frame.cap_len"],
                frame.bytes.len().to_string(),
                "{context}"
            );
            assert!(
                row["frame.protocols"].starts_with("eth:ethertype:"),
                "{context}"
            );
            assert!(row["_ws.malformed"].is_empty(), "malformed: {context}");
            if let Some(expert) = expert_field {
                let lower = row[expert].to_lowercase();
                assert!(
                    !lower.contains("checksum") && !lower.contains("malformed"),
                    "expert info: {context}"
                );
            }
            for status in &status_fields {
                // An absent field means the layer is not in the frame. Wireshark prints
                // enum fields as numbers (1 is Good) or, in some versions, as names.
                let value = row[*status].as_str();
                let layer = status.split('.').next().unwrap();
                let verified = layer == "icmp"
                    || layer == "icmpv6"
                    || checking.iter().any(|p| p.starts_with(&format!("{layer}.")));
                for v in value.split(';').filter(|v| !v.is_empty()) {
                    let good = v == "1" || v.eq_ignore_ascii_case("good");
                    let unverified = v == "2" || v.eq_ignore_ascii_case("unverified");
                    assert!(
                        good || (!verified && unverified),
                        "{status} is {v}: {context}"
                    );
                }
            }
            let comment = row[comment_field].as_str();
            match (format, frame.comment) {
                // tshark prints no comment for an empty one.
                (CaptureFormat::Pcapng, Some(c)) => assert_eq!(comment, c, "{context}"),
                _ => assert_eq!(comment, "", "{context}"),
            }
        }
        // Every kind of frame was dissected as itself.
        let protocols: Vec<&str> = rows.iter().map(|r| r["frame.protocols"].as_str()).collect();
        for wanted in [
            "arp",
            "ip:tcp",
            "ip:udp",
            "ip:icmp",
            "ipv6:icmpv6",
            "ipv6:udp",
        ] {
            assert!(
                protocols.iter().any(|p| p.contains(wanted)),
                "{name}: no {wanted} frame in {protocols:?}"
            );
        }
    }

    // A frame cut by the snap length keeps its original length, and is not malformed.
    let path = dir.0.join("snap.pcapng");
    let mut writer = CaptureWriter::to_file(CaptureFormat::Pcapng, 96, "lan0", &path).unwrap();
    let data = &frames[4].bytes;
    writer.write_frame(7, data, Some("cut")).unwrap();
    writer.finish().unwrap();
    let rows = tshark_fields(&path, &[], &["frame.len", "frame.cap_len", "_ws.malformed"]);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["frame.len"], data.len().to_string());
    assert_eq!(rows[0]["frame.cap_len"], "96");
    assert!(rows[0]["_ws.malformed"].is_empty(), "{:?}", rows[0]);
}

fn main() {
    let missing = tshark_version()
        .is_none()
        .then(|| "tshark not found (install it with: apt-get install tshark)".to_string());
    wirelab::needs::run(vec![wirelab::needs::test(
        "tshark_reads_pcap_and_pcapng_cleanly_with_comments",
        tshark_reads_pcap_and_pcapng_cleanly_with_comments,
    )
    .needs(missing)])
}
