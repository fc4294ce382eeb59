//! smoltcp 0.12.0 as a plug-in process: wirelab's smoltcp backend, the very source it runs 0.14 with, compiled against the older release, served over the plug-in protocol, so that `--diff smoltcp@0.12,smoltcp` shows what changed between releases.

// The backend's source compiles unchanged against 0.12: the same file, not a copy of it.
#[path = "../../../crates/backends/src/smoltcp.rs"]
mod smoltcp_backend;

fn main() {
    plugin::serve("smoltcp 0.12.0", smoltcp_backend::SmoltcpStack::new)
}
