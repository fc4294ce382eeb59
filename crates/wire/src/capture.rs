//! pcap and pcapng capture: a hand-written little-endian encoder streaming into memory or an atomically renamed file, and a reader built on pcap-file.
//!
//! The encoder is written by hand so that every byte is specified here (explicit
//! little-endian, no option that depends on the host) and so that recording a frame copies
//! it once and allocates nothing. The golden captures under `golden/` are byte-exact
//! outputs of this encoder: any change to the bytes it writes needs a re-bless.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;

use pcap_file::pcap::{PcapParseError, PcapParser};
use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketOption;
use pcap_file::pcapng::blocks::opt_common::CommonOption;
use pcap_file::pcapng::blocks::packet::PacketOption;
use pcap_file::pcapng::{Block, PcapNgParseError, PcapNgParser};
use pcap_file::DataLink;
use serde::{Deserialize, Serialize};

/// LINKTYPE_ETHERNET, the only link type wirelab writes or reads.
const LINKTYPE_ETHERNET: u16 = 1;

/// What a snap length of 0 ("no limit") stands for: libpcap's `MAXIMUM_SNAPLEN`, the value
/// `tcpdump -s 0` records. No simulated frame comes near it.
pub const UNLIMITED_SNAPLEN_BYTES: u32 = 262_144;

/// The longest value a pcapng option can carry: its length field has 16 bits.
pub const MAX_OPTION_BYTES: usize = u16::MAX as usize;

/// The size of the chunks a capture file is written in. Captures are written in large
/// sequential chunks because full-frame captures are disk-bound.
const FILE_BUFFER_BYTES: usize = 1 << 20;

/// Chunks handed to a file's writer thread and not yet written; the simulation waits when
/// this many are queued, which bounds the memory a slow disk can take.
const FILE_CHUNKS_IN_FLIGHT: usize = 4;

/// The writer thread asks the disk to catch up after this many bytes, so that the sync at
/// `finish` has little left to wait for.
const FILE_SYNC_EVERY_BYTES: u64 = 16 << 20;

const PCAP_MAGIC_MICROS: u32 = 0xa1b2_c3d4;
const PCAPNG_SECTION_HEADER: u32 = 0x0a0d_0d0a;
const PCAPNG_INTERFACE_DESCRIPTION: u32 = 1;
const PCAPNG_ENHANCED_PACKET: u32 = 6;
const PCAPNG_BYTE_ORDER_MAGIC: u32 = 0x1a2b_3c4d;
const OPT_ENDOFOPT: u16 = 0;
const OPT_COMMENT: u16 = 1;
const OPT_SHB_USERAPPL: u16 = 4;
const OPT_IF_NAME: u16 = 2;
const OPT_IF_TSRESOL: u16 = 9;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum CaptureFormat {
    Pcap,
    Pcapng,
}

impl CaptureFormat {
    /// The file extension captures of this format get: `pcap` or `pcapng`.
    pub fn extension(self) -> &'static str {
        match self {
            CaptureFormat::Pcap => "pcap",
            CaptureFormat::Pcapng => "pcapng",
        }
    }
}

/// Why a capture could not be written.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("cannot create capture file {path}: {source}")]
    Create {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write capture {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "capture {path} was abandoned after an earlier write error; its temporary file is removed"
    )]
    Abandoned { path: PathBuf },
    #[error("a frame of {len} bytes does not fit a capture record")]
    FrameTooLong { len: usize },
    #[error("virtual time {time_us} µs is past the 2^32 seconds a classic pcap timestamp holds; use pcapng")]
    TimeOutOfRange { time_us: u64 },
}

/// Why bytes could not be read as a capture.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CaptureReadError {
    #[error("not a pcap or pcapng file: it is empty")]
    Empty,
    #[error("not a pcap or pcapng file: {len} bytes starting {}", hex(.first_bytes))]
    NotACapture { len: usize, first_bytes: Vec<u8> },
    #[error("truncated at byte {len}: the {record} starting at byte {offset} is incomplete")]
    Truncated {
        len: usize,
        record: &'static str,
        offset: usize,
    },
    #[error("malformed {record} at byte {offset}: {reason}")]
    Malformed {
        record: &'static str,
        offset: usize,
        reason: String,
    },
    #[error("the {record} at byte {offset} has link type {link_type}, not Ethernet (1); wirelab reads Ethernet captures only")]
    UnsupportedLinkType {
        record: &'static str,
        offset: usize,
        link_type: u32,
    },
    #[error("the timestamp of the {record} at byte {offset} does not fit 64-bit microseconds")]
    TimeOutOfRange { record: &'static str, offset: usize },
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Where the encoded records go.
enum Sink {
    Memory(Vec<u8>),
    File(FileSink),
    /// `finish` has taken the sink; only `Drop` can see this state.
    Finished,
}

/// A capture file, written by a thread of its own: the simulation fills `chunk` and hands
/// it over when full, so that the system calls and the disk's flushing run beside the
/// simulation instead of inside it. Chunks are written in order, so the file's bytes are
/// exactly those put, as a direct write would leave them.
struct FileSink {
    chunk: Vec<u8>,
    /// Full chunks to the writer; `None` once the writer has stopped.
    to_writer: Option<mpsc::SyncSender<Vec<u8>>>,
    /// Written chunks coming back empty, for reuse.
    spare: mpsc::Receiver<Vec<u8>>,
    /// The writer returns the file when the chunks end, or the first error.
    writer: Option<JoinHandle<std::io::Result<File>>>,
    /// Tells the writer to drop what is still queued (the capture is being abandoned).
    abandon: Arc<AtomicBool>,
    /// `<path>.tmp-<pid>`, renamed over `path` by `finish`.
    tmp: PathBuf,
    path: PathBuf,
    /// A write failed, so the file can no longer be trusted.
    failed: bool,
}

impl FileSink {
    fn new(file: File, tmp: PathBuf, path: PathBuf) -> Result<FileSink, CaptureError> {
        let (to_writer, chunks) = mpsc::sync_channel::<Vec<u8>>(FILE_CHUNKS_IN_FLIGHT);
        let (give_back, spare) = mpsc::channel::<Vec<u8>>();
        let abandon = Arc::new(AtomicBool::new(false));
        let stop = abandon.clone();
        let writer = std::thread::Builder::new()
            .name("wirelab-capture".into())
            .spawn(move || -> std::io::Result<File> {
                let mut file = file;
                let mut unsynced = 0u64;
                for mut chunk in chunks {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    file.write_all(&chunk)?;
                    unsynced += chunk.len() as u64;
                    if unsynced >= FILE_SYNC_EVERY_BYTES {
                        file.sync_data()?;
                        unsynced = 0;
                    }
                    chunk.clear();
                    // The simulation may have finished with the spares already.
                    let _ = give_back.send(chunk);
                }
                Ok(file)
            })
            .map_err(|source| CaptureError::Create {
                path: tmp.clone(),
                source,
            })?;
        Ok(FileSink {
            chunk: Vec::with_capacity(FILE_BUFFER_BYTES),
            to_writer: Some(to_writer),
            spare,
            writer: Some(writer),
            abandon,
            tmp,
            path,
            failed: false,
        })
    }

    fn io_error(&self, source: std::io::Error) -> CaptureError {
        CaptureError::Io {
            path: self.path.clone(),
            source,
        }
    }

    /// Waits for the writer to end and returns its file, or the error that stopped it.
    fn join(&mut self) -> std::io::Result<File> {
        self.to_writer = None;
        match self.writer.take().map(JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(std::io::Error::other("the capture writer thread panicked")),
            None => Err(std::io::Error::other(
                "the capture writer has already stopped",
            )),
        }
    }

    /// Hands the current chunk to the writer.
    fn hand_over(&mut self) -> Result<(), CaptureError> {
        let next = self
            .spare
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(FILE_BUFFER_BYTES));
        let full = std::mem::replace(&mut self.chunk, next);
        let sent = match &self.to_writer {
            Some(to_writer) => to_writer.send(full).is_ok(),
            None => false,
        };
        if sent {
            return Ok(());
        }
        // The writer stopped on an error: report it.
        self.failed = true;
        let source = match self.join() {
            Err(e) => e,
            Ok(_) => std::io::Error::other("the capture writer stopped early"),
        };
        Err(self.io_error(source))
    }
}

impl Sink {
    /// Appends one record, given as consecutive pieces; matching on the sink once per
    /// record rather than once per piece keeps small (snap-length) records cheap.
    #[inline]
    fn put(&mut self, pieces: [&[u8]; 3]) -> Result<(), CaptureError> {
        match self {
            Sink::Memory(out) => {
                out.reserve(pieces.iter().map(|p| p.len()).sum());
                for piece in pieces {
                    out.extend_from_slice(piece);
                }
                Ok(())
            }
            Sink::File(file) => {
                if file.failed {
                    return Err(CaptureError::Abandoned {
                        path: file.path.clone(),
                    });
                }
                for piece in pieces {
                    file.chunk.extend_from_slice(piece);
                }
                if file.chunk.len() >= FILE_BUFFER_BYTES {
                    file.hand_over()?;
                }
                Ok(())
            }
            Sink::Finished => Ok(()),
        }
    }
}

/// Writes one segment's frames as classic pcap or pcapng, in memory or to a file.
pub struct CaptureWriter {
    format: CaptureFormat,
    /// The snap length in force: the configured one, or [`UNLIMITED_SNAPLEN_BYTES`] for 0.
    snaplen_bytes: u32,
    sink: Sink,
    /// The bytes that follow a frame's data in its record (padding, options, trailing
    /// length), reused from frame to frame.
    tail: Vec<u8>,
    frames: u64,
}

fn pad4(len: usize) -> usize {
    (4 - len % 4) % 4
}

/// Shortens `text` to what a pcapng option can hold, at a character boundary so that the
/// result stays valid UTF-8 (readers reject comments that are not).
fn fit_option(text: &str) -> &str {
    if text.len() <= MAX_OPTION_BYTES {
        return text;
    }
    let mut end = MAX_OPTION_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

fn push_option(out: &mut Vec<u8>, code: u16, value: &[u8]) {
    // Callers pass values of at most MAX_OPTION_BYTES (fit_option or constants).
    let len = value.len().min(MAX_OPTION_BYTES);
    out.extend_from_slice(&code.to_le_bytes());
    out.extend_from_slice(&(len as u16).to_le_bytes());
    out.extend_from_slice(&value[..len]);
    out.extend_from_slice(&[0u8; 3][..pad4(len)]);
}

/// Wraps a pcapng block body: type, total length, body, total length again.
fn push_block(out: &mut Vec<u8>, block_type: u32, body: &[u8]) {
    let total = (12 + body.len()) as u32;
    out.extend_from_slice(&block_type.to_le_bytes());
    out.extend_from_slice(&total.to_le_bytes());
    out.extend_from_slice(body);
    out.extend_from_slice(&total.to_le_bytes());
}

/// The bytes before the first frame: the pcap file header, or the pcapng Section Header
/// Block and the one Interface Description Block.
fn file_header(format: CaptureFormat, snaplen_bytes: u32, interface_name: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    match format {
        CaptureFormat::Pcap => {
            out.extend_from_slice(&PCAP_MAGIC_MICROS.to_le_bytes());
            out.extend_from_slice(&2u16.to_le_bytes()); // version major
            out.extend_from_slice(&4u16.to_le_bytes()); // version minor
            out.extend_from_slice(&0i32.to_le_bytes()); // thiszone: timestamps are UTC
            out.extend_from_slice(&0u32.to_le_bytes()); // sigfigs
            out.extend_from_slice(&snaplen_bytes.to_le_bytes());
            out.extend_from_slice(&u32::from(LINKTYPE_ETHERNET).to_le_bytes());
        }
        CaptureFormat::Pcapng => {
            // The only Section Header option is a constant, never the host's OS or
            // hardware, so that files are identical on every machine.
            let mut shb = Vec::with_capacity(32);
            shb.extend_from_slice(&PCAPNG_BYTE_ORDER_MAGIC.to_le_bytes());
            shb.extend_from_slice(&1u16.to_le_bytes()); // version major
            shb.extend_from_slice(&0u16.to_le_bytes()); // version minor
            shb.extend_from_slice(&(-1i64).to_le_bytes()); // section length: not given
            push_option(&mut shb, OPT_SHB_USERAPPL, b"wirelab");
            push_option(&mut shb, OPT_ENDOFOPT, &[]);
            push_block(&mut out, PCAPNG_SECTION_HEADER, &shb);

            let mut idb = Vec::with_capacity(32 + interface_name.len());
            idb.extend_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
            idb.extend_from_slice(&0u16.to_le_bytes()); // reserved
            idb.extend_from_slice(&snaplen_bytes.to_le_bytes());
            if !interface_name.is_empty() {
                push_option(&mut idb, OPT_IF_NAME, fit_option(interface_name).as_bytes());
            }
            push_option(&mut idb, OPT_IF_TSRESOL, &[6]); // 10^-6 s: microseconds
            push_option(&mut idb, OPT_ENDOFOPT, &[]);
            push_block(&mut out, PCAPNG_INTERFACE_DESCRIPTION, &idb);
        }
    }
    out
}

/// The limit applied to frames: a snap length of 0 means no limit.
fn effective_snaplen(snaplen_bytes: u32) -> u32 {
    if snaplen_bytes == 0 {
        UNLIMITED_SNAPLEN_BYTES
    } else {
        snaplen_bytes
    }
}

/// The snap length recorded in the file header. pcapng itself reads 0 as "no limit", so it
/// keeps the configured value; classic pcap has no such convention and gets the limit.
fn header_snaplen(format: CaptureFormat, snaplen_bytes: u32) -> u32 {
    match format {
        CaptureFormat::Pcap => effective_snaplen(snaplen_bytes),
        CaptureFormat::Pcapng => snaplen_bytes,
    }
}

impl CaptureWriter {
    /// A capture kept in memory, returned by [`CaptureWriter::finish`]. A snap length of 0
    /// means no limit.
    pub fn to_memory(format: CaptureFormat, snaplen_bytes: u32, interface_name: &str) -> Self {
        let header = file_header(
            format,
            header_snaplen(format, snaplen_bytes),
            interface_name,
        );
        CaptureWriter {
            format,
            snaplen_bytes: effective_snaplen(snaplen_bytes),
            sink: Sink::Memory(header),
            tail: Vec::with_capacity(64),
            frames: 0,
        }
    }

    /// A capture written to `<path>.tmp-<pid>` and renamed over `path` by
    /// [`CaptureWriter::finish`], so that `path` only ever holds a complete capture. A writer
    /// dropped without `finish` removes its temporary file.
    pub fn to_file(
        format: CaptureFormat,
        snaplen_bytes: u32,
        interface_name: &str,
        path: &Path,
    ) -> Result<Self, CaptureError> {
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(format!(".tmp-{}", std::process::id()));
        let tmp = PathBuf::from(tmp);
        let file = File::create(&tmp).map_err(|source| CaptureError::Create {
            path: tmp.clone(),
            source,
        })?;
        let sink = match FileSink::new(file, tmp.clone(), path.to_path_buf()) {
            Ok(sink) => sink,
            Err(error) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(error);
            }
        };
        let mut writer = CaptureWriter {
            format,
            snaplen_bytes: effective_snaplen(snaplen_bytes),
            sink: Sink::File(sink),
            tail: Vec::with_capacity(64),
            frames: 0,
        };
        // On error the writer is dropped here, which removes the temporary file.
        let header = file_header(
            format,
            header_snaplen(format, snaplen_bytes),
            interface_name,
        );
        writer.sink.put([&header, &[], &[]])?;
        Ok(writer)
    }

    /// Records one frame seen at virtual time `time_us`. At most the snap length is kept;
    /// the original length is `frame.len()`. `comment` becomes the pcapng `opt_comment`
    /// (cut at a character boundary to the 65535 bytes an option holds); classic pcap has
    /// no place for it and leaves it out.
    pub fn write_frame(
        &mut self,
        time_us: u64,
        frame: &[u8],
        comment: Option<&str>,
    ) -> Result<(), CaptureError> {
        let original_len = u32::try_from(frame.len())
            .map_err(|_| CaptureError::FrameTooLong { len: frame.len() })?;
        let captured = &frame[..frame.len().min(self.snaplen_bytes as usize)];
        let captured_len = captured.len() as u32;
        // The fixed part of a record is built on the stack, the frame is copied straight
        // into the sink, and the variable tail goes through a reused buffer.
        let mut head = [0u8; 28];
        let head_len;
        self.tail.clear();
        match self.format {
            CaptureFormat::Pcap => {
                let seconds = u32::try_from(time_us / 1_000_000)
                    .map_err(|_| CaptureError::TimeOutOfRange { time_us })?;
                let micros = (time_us % 1_000_000) as u32;
                head[0..4].copy_from_slice(&seconds.to_le_bytes());
                head[4..8].copy_from_slice(&micros.to_le_bytes());
                head[8..12].copy_from_slice(&captured_len.to_le_bytes());
                head[12..16].copy_from_slice(&original_len.to_le_bytes());
                head_len = 16;
            }
            CaptureFormat::Pcapng => {
                let comment = comment.map(fit_option);
                let options_len = comment.map_or(0, |c| 4 + c.len() + pad4(c.len()) + 4);
                let total = 32 + captured.len() + pad4(captured.len()) + options_len;
                let total = u32::try_from(total)
                    .map_err(|_| CaptureError::FrameTooLong { len: frame.len() })?;
                head[0..4].copy_from_slice(&PCAPNG_ENHANCED_PACKET.to_le_bytes());
                head[4..8].copy_from_slice(&total.to_le_bytes());
                // Interface 0, whose IDB says microseconds, so the virtual clock is written
                // as it is.
                head[8..12].copy_from_slice(&0u32.to_le_bytes());
                head[12..16].copy_from_slice(&((time_us >> 32) as u32).to_le_bytes());
                head[16..20].copy_from_slice(&(time_us as u32).to_le_bytes());
                head[20..24].copy_from_slice(&captured_len.to_le_bytes());
                head[24..28].copy_from_slice(&original_len.to_le_bytes());
                head_len = 28;
                self.tail
                    .extend_from_slice(&[0u8; 3][..pad4(captured.len())]);
                if let Some(c) = comment {
                    push_option(&mut self.tail, OPT_COMMENT, c.as_bytes());
                    push_option(&mut self.tail, OPT_ENDOFOPT, &[]);
                }
                self.tail.extend_from_slice(&total.to_le_bytes());
            }
        }
        self.sink.put([&head[..head_len], captured, &self.tail])?;
        self.frames += 1;
        Ok(())
    }

    pub fn format(&self) -> CaptureFormat {
        self.format
    }

    /// The limit applied to each frame (a configured 0 reads as [`UNLIMITED_SNAPLEN_BYTES`]).
    pub fn snaplen_bytes(&self) -> u32 {
        self.snaplen_bytes
    }

    pub fn frames_written(&self) -> u64 {
        self.frames
    }

    /// Ends the capture: returns the bytes of a memory capture; flushes, syncs and renames a
    /// file capture into place and returns `None`. On error the temporary file is removed
    /// and `path` is left as it was.
    pub fn finish(mut self) -> Result<Option<Vec<u8>>, CaptureError> {
        match std::mem::replace(&mut self.sink, Sink::Finished) {
            Sink::Memory(bytes) => Ok(Some(bytes)),
            Sink::File(file) => {
                let tmp = file.tmp.clone();
                let result = finish_file(file);
                if result.is_err() {
                    let _ = std::fs::remove_file(&tmp);
                }
                result.map(|()| None)
            }
            Sink::Finished => Ok(None),
        }
    }
}

fn finish_file(mut file: FileSink) -> Result<(), CaptureError> {
    if file.failed {
        return Err(CaptureError::Abandoned { path: file.path });
    }
    if !file.chunk.is_empty() {
        file.hand_over()?;
    }
    let written = file.join().map_err(|e| file.io_error(e))?;
    written.sync_all().map_err(|e| file.io_error(e))?;
    drop(written);
    std::fs::rename(&file.tmp, &file.path).map_err(|e| file.io_error(e))
}

impl Drop for CaptureWriter {
    /// An unfinished file capture is incomplete: its temporary file is removed rather than
    /// left beside the real one.
    fn drop(&mut self) {
        if let Sink::File(mut file) = std::mem::replace(&mut self.sink, Sink::Finished) {
            // The writer drops what is still queued, closes the file and ends.
            file.abandon.store(true, Ordering::Relaxed);
            let _ = file.join();
            let _ = std::fs::remove_file(&file.tmp);
        }
    }
}

/// One frame read back from a capture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapturedFrame {
    pub time_us: u64,
    pub original_len: u32,
    pub data: Vec<u8>,
    pub comment: Option<String>,
}

const PCAP_MAGIC_BYTES: [[u8; 4]; 4] = [
    [0xd4, 0xc3, 0xb2, 0xa1], // little-endian, microseconds
    [0xa1, 0xb2, 0xc3, 0xd4], // big-endian, microseconds
    [0x4d, 0x3c, 0xb2, 0xa1], // little-endian, nanoseconds
    [0xa1, 0xb2, 0x3c, 0x4d], // big-endian, nanoseconds
];
const PCAPNG_MAGIC_BYTES: [u8; 4] = [0x0a, 0x0d, 0x0d, 0x0a];

/// Reads a classic pcap (either byte order, microsecond or nanosecond timestamps) or a
/// pcapng file (any byte order and timestamp resolution, several sections) of Ethernet
/// frames. Nanosecond timestamps are cut to microseconds; Simple Packet Blocks, which
/// carry no timestamp, read as time 0. Never panics, whatever the bytes.
pub fn read_capture(bytes: &[u8]) -> Result<Vec<CapturedFrame>, CaptureReadError> {
    if bytes.is_empty() {
        return Err(CaptureReadError::Empty);
    }
    let start = &bytes[..bytes.len().min(4)];
    let is_prefix = |magic: &[u8; 4]| magic.starts_with(start);
    if is_prefix(&PCAPNG_MAGIC_BYTES) {
        read_pcapng(bytes)
    } else if PCAP_MAGIC_BYTES.iter().any(is_prefix) {
        read_pcap(bytes)
    } else {
        Err(CaptureReadError::NotACapture {
            len: bytes.len(),
            first_bytes: start.to_vec(),
        })
    }
}

/// The messages of an error and of its sources, joined with ": ".
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

fn to_micros(
    timestamp: std::time::Duration,
    record: &'static str,
    offset: usize,
) -> Result<u64, CaptureReadError> {
    u64::try_from(timestamp.as_micros())
        .map_err(|_| CaptureReadError::TimeOutOfRange { record, offset })
}

fn read_pcap(bytes: &[u8]) -> Result<Vec<CapturedFrame>, CaptureReadError> {
    let map = |e: PcapParseError, record: &'static str, offset: usize| match e {
        PcapParseError::IncompleteBuffer(..) => CaptureReadError::Truncated {
            len: bytes.len(),
            record,
            offset,
        },
        other => CaptureReadError::Malformed {
            record,
            offset,
            reason: error_chain(&other),
        },
    };
    let (mut rest, parser) = PcapParser::new(bytes).map_err(|e| map(e, "pcap file header", 0))?;
    let link_type = u32::from(parser.header().datalink);
    if link_type != u32::from(LINKTYPE_ETHERNET) {
        return Err(CaptureReadError::UnsupportedLinkType {
            record: "pcap file header",
            offset: 0,
            link_type,
        });
    }
    let mut frames = Vec::new();
    while !rest.is_empty() {
        let offset = bytes.len() - rest.len();
        let (next, packet) = parser
            .next_packet(rest)
            .map_err(|e| map(e, "pcap record", offset))?;
        rest = next;
        frames.push(CapturedFrame {
            time_us: to_micros(packet.timestamp(), "pcap record", offset)?,
            original_len: packet.orig_len(),
            data: packet.data().to_vec(),
            comment: None,
        });
    }
    Ok(frames)
}

fn read_pcapng(bytes: &[u8]) -> Result<Vec<CapturedFrame>, CaptureReadError> {
    let map = |e: PcapNgParseError, record: &'static str, offset: usize| match e {
        PcapNgParseError::IncompleteBuffer(..) => CaptureReadError::Truncated {
            len: bytes.len(),
            record,
            offset,
        },
        other => CaptureReadError::Malformed {
            record,
            offset,
            reason: error_chain(&other),
        },
    };
    let (mut rest, mut parser) =
        PcapNgParser::new(bytes).map_err(|e| map(e, "pcapng section header block", 0))?;
    let mut frames = Vec::new();
    while !rest.is_empty() {
        let offset = bytes.len() - rest.len();
        let (next, block) = parser
            .next_block(rest)
            .map_err(|e| map(e, "pcapng block", offset))?;
        rest = next;
        // Every packet must come from an Ethernet interface: the rest of wirelab decodes
        // frames as Ethernet.
        let ethernet = |interface_id: u32, record: &'static str| match parser
            .interfaces()
            .get(interface_id as usize)
        {
            None => Err(CaptureReadError::Malformed {
                record,
                offset,
                reason: format!("interface {interface_id} is not described"),
            }),
            Some(idb) if idb.linktype != DataLink::ETHERNET => {
                Err(CaptureReadError::UnsupportedLinkType {
                    record,
                    offset,
                    link_type: u32::from(idb.linktype),
                })
            }
            Some(_) => Ok(()),
        };
        match block {
            Block::EnhancedPacket(epb) => {
                const RECORD: &str = "pcapng enhanced packet block";
                ethernet(epb.interface_id, RECORD)?;
                let comment = epb.options.iter().find_map(|o| match o {
                    EnhancedPacketOption::Common(CommonOption::Comment(c)) => Some(c.to_string()),
                    _ => None,
                });
                frames.push(CapturedFrame {
                    time_us: to_micros(epb.timestamp, RECORD, offset)?,
                    original_len: epb.original_len,
                    data: epb.data.into_owned(),
                    comment,
                });
            }
            Block::Packet(pb) => {
                const RECORD: &str = "pcapng packet block";
                ethernet(u32::from(pb.interface_id), RECORD)?;
                let comment = pb.options.iter().find_map(|o| match o {
                    PacketOption::Common(CommonOption::Comment(c)) => Some(c.to_string()),
                    _ => None,
                });
                frames.push(CapturedFrame {
                    time_us: to_micros(pb.timestamp, RECORD, offset)?,
                    original_len: pb.original_len,
                    data: pb.data.into_owned(),
                    comment,
                });
            }
            Block::SimplePacket(spb) => {
                ethernet(0, "pcapng simple packet block")?;
                frames.push(CapturedFrame {
                    time_us: 0,
                    original_len: spb.original_len,
                    data: spb.data.into_owned(),
                    comment: None,
                });
            }
            _ => {}
        }
    }
    Ok(frames)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic xorshift64 stream for generating test bytes without extra crates.
    struct XorShift(u64);

    impl XorShift {
        fn next_u8(&mut self) -> u8 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 >> 24) as u8
        }

        fn bytes(&mut self, len: usize) -> Vec<u8> {
            (0..len).map(|_| self.next_u8()).collect()
        }
    }

    /// The first virtual time a classic pcap cannot hold: 2^32 seconds.
    const PCAP_LIMIT_US: u64 = (1 << 32) * 1_000_000;

    /// Frames chosen to hit every padding remainder, timestamps past 2^32 µs (the pcapng
    /// high word) and past [`PCAP_LIMIT_US`], an empty comment, a multi-byte UTF-8 comment
    /// and a frame longer than the snap length.
    fn frames() -> Vec<(u64, Vec<u8>, Option<&'static str>)> {
        vec![
            (0, vec![1; 60], None),
            (1_234_567, (0..=255).collect(), Some("dropped (loss 1%)")),
            (2_000_000, vec![2; 61], Some("")),
            (2_000_001, vec![3; 62], Some("délai ✓")),
            (5_000_000_001, vec![7; 1514], Some("x")),
            (PCAP_LIMIT_US + 123, vec![9; 63], None),
        ]
    }

    /// The frames of [`frames`] that `format` can hold.
    fn frames_for(format: CaptureFormat) -> Vec<(u64, Vec<u8>, Option<&'static str>)> {
        frames()
            .into_iter()
            .filter(|(t, ..)| format == CaptureFormat::Pcapng || *t < PCAP_LIMIT_US)
            .collect()
    }

    fn write_all(format: CaptureFormat, snaplen: u32) -> Vec<u8> {
        let mut w = CaptureWriter::to_memory(format, snaplen, "lan");
        for (t, f, c) in frames_for(format) {
            w.write_frame(t, &f, c).unwrap();
        }
        assert_eq!(w.frames_written(), frames_for(format).len() as u64);
        w.finish().unwrap().unwrap()
    }

    #[test]
    fn pcap_and_pcapng_read_back_what_was_written() {
        for format in [CaptureFormat::Pcap, CaptureFormat::Pcapng] {
            for snaplen in [200, 65_535] {
                let read = read_capture(&write_all(format, snaplen)).unwrap();
                let expected: Vec<_> = frames_for(format)
                    .into_iter()
                    .map(|(t, f, c)| CapturedFrame {
                        time_us: t,
                        original_len: f.len() as u32,
                        data: f[..f.len().min(snaplen as usize)].to_vec(),
                        comment: c
                            .filter(|_| format == CaptureFormat::Pcapng)
                            .map(str::to_string),
                    })
                    .collect();
                assert_eq!(read, expected, "{format:?} snaplen {snaplen}");
            }
        }
    }

    #[test]
    fn the_pcap_header_and_records_follow_the_little_endian_layout() {
        let mut w = CaptureWriter::to_memory(CaptureFormat::Pcap, 128, "lan");
        w.write_frame(3_000_042, &[0xaa, 0xbb, 0xcc], None).unwrap();
        let bytes = w.finish().unwrap().unwrap();
        #[rustfmt::skip]
        let expected = [
            0xd4, 0xc3, 0xb2, 0xa1, // magic a1b2c3d4, little-endian, microseconds
            2, 0, 4, 0,             // version 2.4
            0, 0, 0, 0,             // thiszone
            0, 0, 0, 0,             // sigfigs
            128, 0, 0, 0,           // snaplen
            1, 0, 0, 0,             // LINKTYPE_ETHERNET
            3, 0, 0, 0,             // ts_sec
            42, 0, 0, 0,            // ts_usec
            3, 0, 0, 0,             // captured length
            3, 0, 0, 0,             // original length
            0xaa, 0xbb, 0xcc,
        ];
        assert_eq!(bytes, expected);
    }

    #[test]
    fn the_pcapng_blocks_follow_the_little_endian_layout() {
        let mut w = CaptureWriter::to_memory(CaptureFormat::Pcapng, 96, "lan0");
        w.write_frame((5 << 32) | 7, &[0xaa; 5], Some("hi"))
            .unwrap();
        w.write_frame(8, &[0xbb; 4], None).unwrap();
        let bytes = w.finish().unwrap().unwrap();
        #[rustfmt::skip]
        let expected: Vec<u8> = [
            // Section Header Block, 44 bytes
            &[0x0a, 0x0d, 0x0d, 0x0a, 44, 0, 0, 0][..],
            &[0x4d, 0x3c, 0x2b, 0x1a, 1, 0, 0, 0],         // byte-order magic, version 1.0
            &[0xff; 8],                                    // section length: unspecified
            &[4, 0, 7, 0], b"wirelab", &[0],               // shb_userappl
            &[0, 0, 0, 0],                                 // opt_endofopt
            &[44, 0, 0, 0],
            // Interface Description Block, 40 bytes
            &[1, 0, 0, 0, 40, 0, 0, 0],
            &[1, 0, 0, 0],                                 // LINKTYPE_ETHERNET, reserved
            &[96, 0, 0, 0],                                // snaplen
            &[2, 0, 4, 0], b"lan0",                        // if_name
            &[9, 0, 1, 0, 6, 0, 0, 0],                     // if_tsresol = 6: microseconds
            &[0, 0, 0, 0],                                 // opt_endofopt
            &[40, 0, 0, 0],
            // Enhanced Packet Block with a comment, 52 bytes
            &[6, 0, 0, 0, 52, 0, 0, 0],
            &[0, 0, 0, 0],                                 // interface 0
            &[5, 0, 0, 0, 7, 0, 0, 0],                     // timestamp high, low (µs)
            &[5, 0, 0, 0, 5, 0, 0, 0],                     // captured, original length
            &[0xaa; 5], &[0; 3],
            &[1, 0, 2, 0], b"hi", &[0, 0],                 // opt_comment
            &[0, 0, 0, 0],                                 // opt_endofopt
            &[52, 0, 0, 0],
            // Enhanced Packet Block without options, 36 bytes
            &[6, 0, 0, 0, 36, 0, 0, 0],
            &[0, 0, 0, 0],
            &[0, 0, 0, 0, 8, 0, 0, 0],
            &[4, 0, 0, 0, 4, 0, 0, 0],
            &[0xbb; 4],
            &[36, 0, 0, 0],
        ]
        .concat();
        assert_eq!(bytes, expected);
    }

    #[test]
    fn memory_and_file_captures_are_byte_identical_and_files_appear_only_when_finished() {
        let dir = std::env::temp_dir().join(format!("wirelab-capture-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (format, name) in [
            (CaptureFormat::Pcap, "lan.pcap"),
            (CaptureFormat::Pcapng, "lan.pcapng"),
        ] {
            let path = dir.join(name);
            let mut w = CaptureWriter::to_file(format, 200, "lan", &path).unwrap();
            for (t, f, c) in frames_for(format) {
                w.write_frame(t, &f, c).unwrap();
            }
            assert!(!path.exists(), "{name} exists before finish");
            assert_eq!(w.finish().unwrap(), None);
            let on_disk = std::fs::read(&path).unwrap();
            assert_eq!(on_disk, write_all(format, 200), "{name}");
        }
        // A writer dropped without finish leaves neither the file nor its temporary.
        let abandoned = dir.join("abandoned.pcapng");
        let mut w = CaptureWriter::to_file(CaptureFormat::Pcapng, 200, "lan", &abandoned).unwrap();
        w.write_frame(1, &[0; 60], None).unwrap();
        drop(w);
        let mut left: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["lan.pcap", "lan.pcapng"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_file_capture_in_a_missing_directory_is_a_create_error() {
        let path = std::env::temp_dir()
            .join(format!("wirelab-capture-missing-{}", std::process::id()))
            .join("lan.pcap");
        let error = CaptureWriter::to_file(CaptureFormat::Pcap, 100, "lan", &path)
            .err()
            .unwrap();
        assert!(matches!(error, CaptureError::Create { .. }), "{error}");
        assert!(error.to_string().contains("lan.pcap.tmp-"), "{error}");
    }

    #[test]
    fn limits_are_typed_errors_or_documented_cuts() {
        // Classic pcap seconds are 32 bits; pcapng takes the same time.
        let late = PCAP_LIMIT_US;
        let mut pcap = CaptureWriter::to_memory(CaptureFormat::Pcap, 100, "lan");
        assert!(matches!(
            pcap.write_frame(late, &[0; 60], None),
            Err(CaptureError::TimeOutOfRange { time_us }) if time_us == late
        ));
        assert_eq!(pcap.frames_written(), 0);
        let mut ng = CaptureWriter::to_memory(CaptureFormat::Pcapng, 100, "lan");
        ng.write_frame(late, &[0; 60], None).unwrap();
        // A comment too long for one option is cut at a character boundary.
        let long = "é".repeat(40_000);
        ng.write_frame(1, &[0; 60], Some(&long)).unwrap();
        let read = read_capture(&ng.finish().unwrap().unwrap()).unwrap();
        assert_eq!(read[0].time_us, late);
        let kept = read[1].comment.as_deref().unwrap();
        assert_eq!(kept.len(), MAX_OPTION_BYTES - 1);
        assert!(long.starts_with(kept));
        // Snap length 0 means no limit.
        for format in [CaptureFormat::Pcap, CaptureFormat::Pcapng] {
            let mut w = CaptureWriter::to_memory(format, 0, "lan");
            assert_eq!(w.snaplen_bytes(), UNLIMITED_SNAPLEN_BYTES);
            w.write_frame(1, &[5; 9000], None).unwrap();
            let read = read_capture(&w.finish().unwrap().unwrap()).unwrap();
            assert_eq!(read[0].data.len(), 9000, "{format:?}");
        }
    }

    /// A classic pcap with the given magic (as written in the file) and byte order, holding
    /// one 4-byte frame at 2 s plus `frac` (µs or ns, per the magic).
    fn classic(magic: [u8; 4], big_endian: bool, frac: u32, link_type: u32) -> Vec<u8> {
        let u16b = |v: u16| {
            if big_endian {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        };
        let u32b = |v: u32| {
            if big_endian {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        };
        [
            &magic[..],
            &u16b(2),
            &u16b(4),
            &u32b(0),
            &u32b(0),
            &u32b(65_535),
            &u32b(link_type),
            &u32b(2),
            &u32b(frac),
            &u32b(4),
            &u32b(60),
            &[1, 2, 3, 4],
        ]
        .concat()
    }

    #[test]
    fn classic_pcap_reads_in_either_byte_order_and_resolution() {
        let cases = [
            ([0xd4, 0xc3, 0xb2, 0xa1], false, 5),
            ([0xa1, 0xb2, 0xc3, 0xd4], true, 5),
            ([0x4d, 0x3c, 0xb2, 0xa1], false, 5_999),
            ([0xa1, 0xb2, 0x3c, 0x4d], true, 5_999),
        ];
        for (magic, big, frac) in cases {
            let read = read_capture(&classic(magic, big, frac, 1)).unwrap();
            assert_eq!(
                read,
                [CapturedFrame {
                    time_us: 2_000_005,
                    original_len: 60,
                    data: vec![1, 2, 3, 4],
                    comment: None,
                }],
                "magic {magic:02x?}"
            );
        }
        let raw_ip = read_capture(&classic([0xd4, 0xc3, 0xb2, 0xa1], false, 0, 101));
        assert_eq!(
            raw_ip,
            Err(CaptureReadError::UnsupportedLinkType {
                record: "pcap file header",
                offset: 0,
                link_type: 101
            })
        );
    }

    #[test]
    fn read_errors_say_what_and_where() {
        assert_eq!(read_capture(b""), Err(CaptureReadError::Empty));
        let e = read_capture(b"hello world").unwrap_err();
        assert_eq!(
            e.to_string(),
            "not a pcap or pcapng file: 11 bytes starting 68 65 6c 6c"
        );
        // Every cut inside a record is a truncation at the end of the input, naming the
        // record; cuts at record boundaries read the frames before them.
        for format in [CaptureFormat::Pcap, CaptureFormat::Pcapng] {
            let good = {
                let mut w = CaptureWriter::to_memory(format, 100, "lan");
                w.write_frame(1, &[3; 80], Some("hi")).unwrap();
                w.write_frame(2, &[4; 70], None).unwrap();
                w.finish().unwrap().unwrap()
            };
            let full = read_capture(&good).unwrap();
            let mut whole_prefixes = 0;
            for cut in 1..good.len() {
                match read_capture(&good[..cut]) {
                    Ok(frames) => {
                        whole_prefixes += 1;
                        assert_eq!(frames[..], full[..frames.len()], "{format:?} cut {cut}");
                    }
                    Err(CaptureReadError::Truncated { len, offset, .. }) => {
                        assert_eq!(len, cut);
                        assert!(offset < cut);
                    }
                    Err(other) => panic!("{format:?} cut {cut}: {other}"),
                }
            }
            // Header only, and after the first frame (pcapng: after SHB, after IDB, after
            // the first EPB).
            let boundaries = if format == CaptureFormat::Pcap { 2 } else { 3 };
            assert_eq!(whole_prefixes, boundaries, "{format:?}");
        }
        let mut ng = CaptureWriter::to_memory(CaptureFormat::Pcapng, 100, "lan");
        ng.write_frame(1, &[3; 8], None).unwrap();
        let mut bad = ng.finish().unwrap().unwrap();
        let len = bad.len();
        bad[len - 4] ^= 0x40; // the EPB's trailing length no longer matches
        let e = read_capture(&bad).unwrap_err();
        assert!(
            matches!(e, CaptureReadError::Malformed { offset: 84, .. }),
            "{e}"
        );
        assert!(e.to_string().contains("don't match"), "{e}");
    }

    #[test]
    fn garbage_and_damaged_captures_are_errors_not_panics() {
        let mut rng = XorShift(0x2545_f491_4f6c_dd1d);
        let mut errors = 0;
        let prefixes: [&[u8]; 5] = [
            &[],
            &PCAP_MAGIC_BYTES[0],
            &PCAP_MAGIC_BYTES[3],
            &PCAPNG_MAGIC_BYTES,
            &[
                0x0a, 0x0d, 0x0d, 0x0a, 0x1c, 0, 0, 0, 0x4d, 0x3c, 0x2b, 0x1a,
            ],
        ];
        for prefix in prefixes {
            for len in 0..300 {
                let data = [prefix, &rng.bytes(len)].concat();
                errors += usize::from(read_capture(&data).is_err());
            }
        }
        assert!(errors > 1000, "{errors} of 1500 random inputs were errors");
        // Every single-byte change of valid captures, with several values per byte.
        for format in [CaptureFormat::Pcap, CaptureFormat::Pcapng] {
            let good = write_all(format, 100);
            for i in 0..good.len() {
                for value in [0x00, 0xff, good[i] ^ 0x80, rng.next_u8()] {
                    let mut damaged = good.clone();
                    damaged[i] = value;
                    let _ = read_capture(&damaged);
                }
            }
        }
    }
}
