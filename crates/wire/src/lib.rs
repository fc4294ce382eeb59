//! Frames on the wire: one checked parse of a frame into the record every reader shares, its tcpdump-like text, checksums, and pcap/pcapng captures written and read back.
//!
//! Nothing here knows about the simulator: these are the pieces every layer above reads frames
//! through. A frame is parsed once ([`frame::Decoded::parse`]) and everything after reads
//! the record.

pub mod capture;
pub mod checksum;
pub mod decode;
pub mod frame;

pub use decode::format_time;
pub use frame::{Decoded, TcpFlags};
