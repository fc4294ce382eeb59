//! wirelab-net: users' own async Rust programs on simulated hosts, over real TCP/IP stacks, in virtual time.
//!
//! A program is an `async` block given to [`Sim::builder`] with the host it runs on and that
//! host's stack. Inside it, [`net`] has the sockets Rust users know from tokio
//! ([`net::TcpListener`], [`net::TcpStream`] with tokio's `AsyncRead`/`AsyncWrite`,
//! [`net::UdpSocket`]) and [`time`] the timers, all in the simulation's virtual time; a
//! program spawns tasks with [`spawn`]. The run is deterministic: the same programs and seed
//! give byte-identical captures and traces.
//!
//! Use [`time::sleep`] and [`time::timeout`], not tokio's timers: no tokio runtime drives a
//! simulated host, and tokio's clock is not the simulation's.
//!
//! ```no_run
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//! use wirelab_net::{net, Sim};
//!
//! let run = Sim::builder()
//!     .seed(1)
//!     .host("server", "smoltcp", async {
//!         let listener = net::TcpListener::bind("0.0.0.0:7").await?;
//!         loop {
//!             let (mut stream, _) = listener.accept().await?;
//!             let mut buf = [0u8; 64];
//!             let n = stream.read(&mut buf).await?;
//!             stream.write_all(&buf[..n]).await?;
//!         }
//!     })
//!     .client("client", "smoltcp", async {
//!         let mut stream = net::TcpStream::connect(("server", 7)).await?;
//!         stream.write_all(b"hello").await?;
//!         let mut buf = [0u8; 5];
//!         stream.read_exact(&mut buf).await?;
//!         assert_eq!(&buf, b"hello");
//!         Ok(())
//!     })
//!     .run()
//!     .unwrap();
//! run.assert_passed();
//! ```

#![warn(missing_docs)]

mod host;
pub mod net;
mod sim;
pub mod time;

pub use host::{spawn, yield_now, JoinHandle, ProgramEnd, ProgramOutcome, ProgramResult};
pub use sim::{Sim, SimBuilder, SimError, SimRun, DEFAULT_SEGMENT};
