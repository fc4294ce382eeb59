//! Virtual time for programs on simulated hosts: `now`, `sleep`, `sleep_until` and `timeout`, in the simulation's microseconds, never the wall clock.
//!
//! These are the timers to use in a program given to [`crate::Sim`]: tokio's own timers read
//! the tokio runtime's clock, and no tokio runtime runs a simulated host. A sleep ends when
//! the simulation's time reaches its deadline, however long or short that takes on the wall
//! clock; a run with nothing else to do jumps straight to it.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use crate::host::{in_context, with_context};

/// The virtual time since the run began.
///
/// # Panics
///
/// Outside a program on a simulated host.
pub fn now() -> Duration {
    Duration::from_micros(with_context(|c| c.now_us()))
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

/// Waits until `duration` of virtual time has passed (rounded up to whole microseconds).
pub fn sleep(duration: Duration) -> Sleep {
    let round_up = u64::from(!duration.subsec_nanos().is_multiple_of(1000));
    let deadline_us = with_context(|c| c.now_us())
        .saturating_add(micros(duration))
        .saturating_add(round_up);
    Sleep {
        deadline_us,
        registration: None,
    }
}

/// Waits until the virtual time `deadline` (since the run began).
pub fn sleep_until(deadline: Duration) -> Sleep {
    Sleep {
        deadline_us: micros(deadline),
        registration: None,
    }
}

/// The future [`sleep`] and [`sleep_until`] return.
#[derive(Debug)]
#[must_use = "a sleep does nothing unless awaited"]
pub struct Sleep {
    deadline_us: u64,
    /// The host's timer entry, once the sleep has waited.
    registration: Option<u64>,
}

impl Sleep {
    /// When the sleep ends, as virtual time since the run began.
    pub fn deadline(&self) -> Duration {
        Duration::from_micros(self.deadline_us)
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        with_context(|c| {
            if c.now_us() >= self.deadline_us {
                self.registration = None;
                Poll::Ready(())
            } else {
                let registration = c.wait_until(self.deadline_us, self.registration, cx.waker());
                self.registration = Some(registration);
                Poll::Pending
            }
        })
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let Some(registration) = self.registration {
            if in_context() {
                with_context(|c| c.cancel_timer(self.deadline_us, registration));
            }
        }
    }
}

/// The error of a [`timeout`] whose time ran out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Elapsed {
    after: Duration,
}

impl std::fmt::Display for Elapsed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "timed out after {:?} of virtual time", self.after)
    }
}

impl std::error::Error for Elapsed {}

impl From<Elapsed> for std::io::Error {
    fn from(elapsed: Elapsed) -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::TimedOut, elapsed)
    }
}

/// Runs `future` for at most `duration` of virtual time.
pub fn timeout<F: Future>(duration: Duration, future: F) -> Timeout<F> {
    Timeout {
        future: Box::pin(future),
        sleep: sleep(duration),
        after: duration,
    }
}

/// The future [`timeout`] returns.
#[must_use = "a timeout does nothing unless awaited"]
pub struct Timeout<F> {
    future: Pin<Box<F>>,
    sleep: Sleep,
    after: Duration,
}

impl<F: Future> Future for Timeout<F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Poll::Ready(output) = self.future.as_mut().poll(cx) {
            return Poll::Ready(Ok(output));
        }
        let after = self.after;
        match Pin::new(&mut self.sleep).poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(Elapsed { after })),
            Poll::Pending => Poll::Pending,
        }
    }
}
