//! The run loop's clock: virtual time, and the pacer that holds it to the wall clock while real-time stacks are attached. The one simulator module that reads the wall clock.
//!
//! A run with only simulated stacks never looks at the wall clock: time jumps from event to
//! event. A stack that lives outside the simulator in real time (the kernel behind a TAP
//! device, reporting [`stack::StackFactory::real_time`]) cannot be told what time it is, so
//! such a run lets virtual time pass no faster than real time and wakes early when one of
//! those stacks has a frame ([`stack::Stack::wake_fd`]).

use std::os::fd::RawFd;
use std::time::Instant;

/// Paces a simulation's virtual time to the wall clock while real devices are attached:
/// virtual time zero is [`Pacer::start`], and [`Pacer::wait`] holds the run loop back until
/// the wall clock reaches the next event, waking early when a device has a frame to read.
pub struct Pacer {
    start: Option<Instant>,
    fds: Vec<libc::pollfd>,
}

impl Pacer {
    /// A pacer watching these descriptors (TAP devices) for frames.
    pub fn new(fds: &[RawFd]) -> Pacer {
        Pacer {
            start: None,
            fds: fds
                .iter()
                .map(|&fd| libc::pollfd {
                    fd,
                    events: libc::POLLIN,
                    revents: 0,
                })
                .collect(),
        }
    }

    /// Virtual time zero is now.
    #[allow(
        clippy::disallowed_methods,
        reason = "pacing to the wall clock is what a real device needs; the one place the harness reads the clock"
    )]
    pub fn start(&mut self) {
        self.start = Some(Instant::now());
    }

    /// Microseconds of wall time since [`Pacer::start`] (0 before it).
    pub fn elapsed_us(&self) -> u64 {
        self.start.map_or(0, |s| s.elapsed().as_micros() as u64)
    }

    /// Waits until `until_us` after the start, or until a device can be read, whichever
    /// comes first. Returns the time it stopped waiting, never later than `until_us` (when
    /// the wall clock is already past it, it does not wait and returns `until_us`), and puts
    /// the indices of the readable devices in `ready`.
    pub fn wait(&mut self, until_us: u64, ready: &mut Vec<usize>) -> u64 {
        ready.clear();
        loop {
            let now_us = self.elapsed_us();
            let remaining_us = until_us.saturating_sub(now_us);
            let timeout = libc::timespec {
                tv_sec: (remaining_us / 1_000_000) as libc::time_t,
                tv_nsec: ((remaining_us % 1_000_000) * 1_000) as libc::c_long,
            };
            for fd in &mut self.fds {
                fd.revents = 0;
            }
            // SAFETY: `fds` is a valid array of pollfd of the given length; no signal mask.
            let n = unsafe {
                libc::ppoll(
                    self.fds.as_mut_ptr(),
                    self.fds.len() as libc::nfds_t,
                    &timeout,
                    std::ptr::null(),
                )
            };
            if n > 0 {
                ready.extend(
                    self.fds
                        .iter()
                        .enumerate()
                        .filter(|(_, fd)| fd.revents != 0)
                        .map(|(index, _)| index),
                );
                return self.elapsed_us().min(until_us);
            }
            if remaining_us == 0 || self.elapsed_us() >= until_us {
                return until_us;
            }
            // Interrupted by a signal, or woken a little early: wait for the rest.
        }
    }
}
