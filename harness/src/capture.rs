//! pcap and pcapng capture: a hand-written little-endian encoder into a reused buffer (memory or an atomically renamed file), and a reader built on pcap-file.
//!
//! The encoder is written by hand so that the bytes are fully specified (no host-dependent
//! options, explicit little-endian) and so that writing a frame allocates nothing.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

const LINKTYPE_ETHERNET: u16 = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CaptureFormat {
    Pcap,
    Pcapng,
}

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("cannot write capture {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CaptureReadError(pub String);

enum Sink {
    Memory(Vec<u8>),
    File {
        writer: BufWriter<File>,
        tmp: PathBuf,
        path: PathBuf,
    },
}

/// Writes one segment's frames as pcap or pcapng.
pub struct CaptureWriter {
    format: CaptureFormat,
    snaplen_bytes: u32,
    sink: Sink,
    /// The encoding of the current record, reused from frame to frame.
    record: Vec<u8>,
    frames: u64,
    error: Option<std::io::Error>,
}

fn pad4(len: usize) -> usize {
    (4 - len % 4) % 4
}

fn push_option(out: &mut Vec<u8>, code: u16, value: &[u8]) {
    out.extend_from_slice(&code.to_le_bytes());
    out.extend_from_slice(&(value.len() as u16).to_le_bytes());
    out.extend_from_slice(value);
    out.extend(std::iter::repeat_n(0u8, pad4(value.len())));
}

/// Wraps a pcapng block body: type, total length, body, total length again.
fn push_block(out: &mut Vec<u8>, block_type: u32, body: &[u8]) {
    let total = (12 + body.len()) as u32;
    out.extend_from_slice(&block_type.to_le_bytes());
    out.extend_from_slice(&total.to_le_bytes());
    out.extend_from_slice(body);
    out.extend_from_slice(&total.to_le_bytes());
}

fn file_header(format: CaptureFormat, snaplen_bytes: u32, interface_name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    match format {
        CaptureFormat::Pcap => {
            out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
            out.extend_from_slice(&2u16.to_le_bytes());
            out.extend_from_slice(&4u16.to_le_bytes());
            out.extend_from_slice(&0i32.to_le_bytes());
            out.extend_from_slice(&0u32.to_le_bytes());
            out.extend_from_slice(&snaplen_bytes.to_le_bytes());
            out.extend_from_slice(&u32::from(LINKTYPE_ETHERNET).to_le_bytes());
        }
        CaptureFormat::Pcapng => {
            let mut shb = Vec::new();
            shb.extend_from_slice(&0x1a2b_3c4du32.to_le_bytes());
            shb.extend_from_slice(&1u16.to_le_bytes());
            shb.extend_from_slice(&0u16.to_le_bytes());
            shb.extend_from_slice(&(-1i64).to_le_bytes());
            push_option(&mut shb, 4, b"wirelab"); // shb_userappl
            push_option(&mut shb, 0, &[]);
            push_block(&mut out, 0x0a0d_0d0a, &shb);
            let mut idb = Vec::new();
            idb.extend_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
            idb.extend_from_slice(&0u16.to_le_bytes());
            idb.extend_from_slice(&snaplen_bytes.to_le_bytes());
            push_option(&mut idb, 2, interface_name.as_bytes()); // if_name
            push_option(&mut idb, 9, &[6]); // if_tsresol: microseconds
            push_option(&mut idb, 0, &[]);
            push_block(&mut out, 1, &idb);
        }
    }
    out
}

impl CaptureWriter {
    /// A capture kept in memory, returned by [`CaptureWriter::finish`].
    pub fn to_memory(format: CaptureFormat, snaplen_bytes: u32, interface_name: &str) -> Self {
        CaptureWriter {
            format,
            snaplen_bytes,
            sink: Sink::Memory(file_header(format, snaplen_bytes, interface_name)),
            record: Vec::with_capacity(2048),
            frames: 0,
            error: None,
        }
    }

    /// A capture written to `<path>.tmp-<pid>` and renamed over `path` by `finish`.
    pub fn to_file(
        format: CaptureFormat,
        snaplen_bytes: u32,
        interface_name: &str,
        path: &Path,
    ) -> Result<Self, CaptureError> {
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(format!(".tmp-{}", std::process::id()));
        let tmp = PathBuf::from(tmp);
        let io = |source| CaptureError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = File::create(&tmp).map_err(io)?;
        let mut writer = BufWriter::with_capacity(1 << 20, file);
        writer
            .write_all(&file_header(format, snaplen_bytes, interface_name))
            .map_err(io)?;
        Ok(CaptureWriter {
            format,
            snaplen_bytes,
            sink: Sink::File {
                writer,
                tmp,
                path: path.to_path_buf(),
            },
            record: Vec::with_capacity(2048),
            frames: 0,
            error: None,
        })
    }

    /// Records one frame seen at virtual time `time_us`. The comment goes into pcapng only.
    pub fn write_frame(
        &mut self,
        time_us: u64,
        frame: &[u8],
        comment: Option<&str>,
    ) -> Result<(), CaptureError> {
        let captured = &frame[..frame.len().min(self.snaplen_bytes as usize)];
        let record = &mut self.record;
        record.clear();
        match self.format {
            CaptureFormat::Pcap => {
                record.extend_from_slice(&((time_us / 1_000_000) as u32).to_le_bytes());
                record.extend_from_slice(&((time_us % 1_000_000) as u32).to_le_bytes());
                record.extend_from_slice(&(captured.len() as u32).to_le_bytes());
                record.extend_from_slice(&(frame.len() as u32).to_le_bytes());
                record.extend_from_slice(captured);
            }
            CaptureFormat::Pcapng => {
                let comment_len = comment.map_or(0, |c| 4 + c.len() + pad4(c.len()) + 4);
                let body_len = 20 + captured.len() + pad4(captured.len()) + comment_len;
                let total = (12 + body_len) as u32;
                record.extend_from_slice(&6u32.to_le_bytes());
                record.extend_from_slice(&total.to_le_bytes());
                record.extend_from_slice(&0u32.to_le_bytes()); // interface 0
                record.extend_from_slice(&((time_us >> 32) as u32).to_le_bytes());
                record.extend_from_slice(&(time_us as u32).to_le_bytes());
                record.extend_from_slice(&(captured.len() as u32).to_le_bytes());
                record.extend_from_slice(&(frame.len() as u32).to_le_bytes());
                record.extend_from_slice(captured);
                record.extend(std::iter::repeat_n(0u8, pad4(captured.len())));
                if let Some(c) = comment {
                    push_option(record, 1, c.as_bytes()); // opt_comment
                    push_option(record, 0, &[]);
                }
                record.extend_from_slice(&total.to_le_bytes());
            }
        }
        self.frames += 1;
        match &mut self.sink {
            Sink::Memory(bytes) => bytes.extend_from_slice(record),
            Sink::File { writer, path, .. } => {
                if let Err(source) = writer.write_all(record) {
                    return Err(CaptureError::Io {
                        path: path.clone(),
                        source,
                    });
                }
            }
        }
        Ok(())
    }

    pub fn format(&self) -> CaptureFormat {
        self.format
    }

    pub fn frames_written(&self) -> u64 {
        self.frames
    }

    /// Ends the capture: returns the bytes of a memory capture; renames a file capture into place.
    pub fn finish(self) -> Result<Option<Vec<u8>>, CaptureError> {
        if let Some(source) = self.error {
            return Err(CaptureError::Io {
                path: PathBuf::new(),
                source,
            });
        }
        match self.sink {
            Sink::Memory(bytes) => Ok(Some(bytes)),
            Sink::File { writer, tmp, path } => {
                let io = |source| CaptureError::Io {
                    path: path.clone(),
                    source,
                };
                let file = writer.into_inner().map_err(|e| io(e.into_error()))?;
                file.sync_all().map_err(io)?;
                drop(file);
                std::fs::rename(&tmp, &path).map_err(io)?;
                Ok(None)
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapturedFrame {
    pub time_us: u64,
    pub original_len: u32,
    pub data: Vec<u8>,
    pub comment: Option<String>,
}

/// Reads a classic pcap (either byte order, µs or ns) or a pcapng file. Never panics.
pub fn read_capture(bytes: &[u8]) -> Result<Vec<CapturedFrame>, CaptureReadError> {
    let magic = bytes.get(..4).ok_or_else(|| {
        CaptureReadError(format!("{} bytes is too short for a capture", bytes.len()))
    })?;
    let mut frames = Vec::new();
    if magic == [0x0a, 0x0d, 0x0d, 0x0a] {
        let (mut rest, mut parser) = pcap_file::pcapng::PcapNgParser::new(bytes)
            .map_err(|e| CaptureReadError(format!("bad pcapng section header: {e}")))?;
        while !rest.is_empty() {
            let offset = bytes.len() - rest.len();
            let (next, block) = parser
                .next_block(rest)
                .map_err(|e| CaptureReadError(format!("bad pcapng block at byte {offset}: {e}")))?;
            rest = next;
            if let Some(epb) = block.into_enhanced_packet() {
                let comment = epb.options.iter().find_map(|o| match o {
                    pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketOption::Common(
                        pcap_file::pcapng::blocks::opt_common::CommonOption::Comment(c),
                    ) => Some(c.to_string()),
                    _ => None,
                });
                frames.push(CapturedFrame {
                    time_us: epb.timestamp.as_micros() as u64,
                    original_len: epb.original_len,
                    data: epb.data.into_owned(),
                    comment,
                });
            }
        }
    } else {
        let (mut rest, parser) = pcap_file::pcap::PcapParser::new(bytes)
            .map_err(|e| CaptureReadError(format!("not a pcap or pcapng file: {e}")))?;
        while !rest.is_empty() {
            let offset = bytes.len() - rest.len();
            let (next, packet) = parser
                .next_packet(rest)
                .map_err(|e| CaptureReadError(format!("bad pcap record at byte {offset}: {e}")))?;
            rest = next;
            frames.push(CapturedFrame {
                time_us: packet.timestamp().as_micros() as u64,
                original_len: packet.orig_len(),
                data: packet.data().to_vec(),
                comment: None,
            });
        }
    }
    Ok(frames)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames() -> Vec<(u64, Vec<u8>, Option<&'static str>)> {
        vec![
            (0, vec![1; 60], None),
            (1_234_567, (0..=255).collect(), Some("dropped (loss)")),
            (3_600_000_001, vec![7; 1514], Some("x")),
        ]
    }

    #[test]
    fn pcap_and_pcapng_read_back_what_was_written() {
        for format in [CaptureFormat::Pcap, CaptureFormat::Pcapng] {
            let mut w = CaptureWriter::to_memory(format, 200, "lan");
            for (t, f, c) in frames() {
                w.write_frame(t, &f, c).unwrap();
            }
            assert_eq!(w.frames_written(), 3);
            let bytes = w.finish().unwrap().unwrap();
            let read = read_capture(&bytes).unwrap();
            assert_eq!(read.len(), 3);
            for ((t, f, c), r) in frames().into_iter().zip(&read) {
                assert_eq!(r.time_us, t);
                assert_eq!(r.original_len as usize, f.len());
                assert_eq!(r.data, f[..f.len().min(200)]);
                if format == CaptureFormat::Pcapng {
                    assert_eq!(r.comment.as_deref(), c);
                }
            }
        }
    }

    #[test]
    fn the_pcap_header_is_little_endian_microsecond_ethernet() {
        let bytes = CaptureWriter::to_memory(CaptureFormat::Pcap, 128, "lan")
            .finish()
            .unwrap()
            .unwrap();
        assert_eq!(
            bytes,
            [
                0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 128, 0, 0, 0, 1, 0, 0,
                0
            ]
        );
    }

    #[test]
    fn files_appear_only_when_finished() {
        let dir = std::env::temp_dir().join(format!("wirelab-capture-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("lan.pcapng");
        let mut w = CaptureWriter::to_file(CaptureFormat::Pcapng, 65535, "lan", &path).unwrap();
        w.write_frame(5, &[0; 60], Some("c")).unwrap();
        assert!(!path.exists());
        w.finish().unwrap();
        let read = read_capture(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(read[0].time_us, 5);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for len in 0..200 {
            let data: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            let _ = read_capture(&data);
        }
        let good = {
            let mut w = CaptureWriter::to_memory(CaptureFormat::Pcapng, 100, "lan");
            w.write_frame(1, &[3; 80], Some("hi")).unwrap();
            w.finish().unwrap().unwrap()
        };
        for cut in 0..good.len() {
            let _ = read_capture(&good[..cut]);
        }
        assert!(read_capture(b"hello world").is_err());
    }
}
