//! The built-in stacks, each behind a [`StackFactory`]: smoltcp, Debian's lwIP, and the Linux kernel behind a TAP device; [`builtin`] registers all three.
//!
//! - `smoltcp`: smoltcp 0.14 from crates.io, in process ([`smoltcp::SmoltcpStack`]).
//! - `lwip`: Debian's lwIP 2.1.3, one private copy of the library per host
//!   ([`lwip::LwipStack`]); unavailable, with the packages to install, where it is missing.
//! - `linux`: the kernel, in a network namespace of wirelab's own, in real time
//!   ([`linux::LinuxStack`]); needs root and `/dev/net/tun`.

use stack::{BuildError, Limits, Registry, Stack, StackConfig, StackFactory};

pub mod linux;
pub mod lwip;
pub mod smoltcp;

/// Every built-in stack, registered under its name: `smoltcp`, `lwip`, `linux`.
pub fn builtin() -> Registry {
    let mut registry = Registry::new();
    registry
        .register("smoltcp", Smoltcp)
        .register("lwip", Lwip)
        .register("linux", Linux);
    registry
}

/// smoltcp 0.14, built into wirelab.
pub struct Smoltcp;

impl StackFactory for Smoltcp {
    fn description(&self) -> String {
        "smoltcp 0.14 (crates.io), in process".to_string()
    }

    fn build(&self, config: StackConfig) -> Result<Box<dyn Stack>, BuildError> {
        Ok(Box::new(smoltcp::SmoltcpStack::new(config)))
    }
}

/// Debian's lwIP 2.1.3, one private copy of `liblwip.so` per host.
pub struct Lwip;

impl StackFactory for Lwip {
    fn description(&self) -> String {
        "lwIP 2.1.3 (Debian's liblwip0), one private copy per host".to_string()
    }

    fn available(&self) -> Result<(), String> {
        lwip::available().map_err(|e| e.to_string())
    }

    fn build(&self, config: StackConfig) -> Result<Box<dyn Stack>, BuildError> {
        match lwip::LwipStack::new(config) {
            Ok(stack) => Ok(Box::new(stack)),
            Err(lwip::LwipError::Unavailable(why)) => Err(BuildError::Unavailable(why)),
            Err(e @ lwip::LwipError::Load(_)) => Err(BuildError::Failed(e.to_string())),
        }
    }

    /// Any lwIP assertion calls `abort()`.
    fn needs_own_process(&self) -> bool {
        true
    }
}

/// The Linux kernel, in a network namespace of wirelab's own behind a TAP device, in real time.
pub struct Linux;

impl StackFactory for Linux {
    fn description(&self) -> String {
        "the Linux kernel in a network namespace of wirelab's own, in real time (root, /dev/net/tun)"
            .to_string()
    }

    fn available(&self) -> Result<(), String> {
        linux::available()
    }

    fn build(&self, config: StackConfig) -> Result<Box<dyn Stack>, BuildError> {
        match linux::LinuxStack::new(config) {
            Ok(stack) => Ok(Box::new(stack)),
            Err(linux::netns::TapError::Missing(why)) => Err(BuildError::Unavailable(why)),
            Err(e) => Err(BuildError::Failed(e.to_string())),
        }
    }

    fn real_time(&self) -> bool {
        true
    }

    /// The child process removes its namespaces when it is interrupted (Ctrl-C, SIGTERM).
    fn needs_own_process(&self) -> bool {
        true
    }

    fn limits(&self) -> Limits {
        Limits {
            max_hosts_per_run: Some(linux::MAX_LINUX_HOSTS),
            max_time_limit_us: Some(linux::MAX_REAL_TIME_US),
        }
    }
}
