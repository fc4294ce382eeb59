//! Frames on the wire: a tcpdump-like decoder and checksum verification, and pcap/pcapng captures written and read back.
//!
//! Nothing here knows about the simulator: these are the pieces every layer above reads frames
//! through.

pub mod capture;
pub mod decode;

pub use decode::format_time;
