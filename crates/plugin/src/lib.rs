//! The plug-in protocol: any stack that can be wrapped in a small program takes part in wirelab, in virtual time, without being written in Rust (plugins/PROTOCOL.md).
//!
//! - [`protocol`]: the messages and their encoding;
//! - [`client`]: wirelab's side, a [`stack::StackFactory`] that runs a plug-in per host;
//! - [`server`]: the plug-in's side for stacks written in Rust (`serve("name", MyStack::new)`);
//! - [`config`]: the plug-ins file that registers plug-in stacks by name.

pub mod client;
pub mod config;
pub mod protocol;
pub mod server;

pub use client::PluginFactory;
pub use server::serve;
