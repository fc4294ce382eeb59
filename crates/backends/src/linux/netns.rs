//! Network namespaces of wirelab's own and TAP devices inside them: what the linux backend's hosts live in.
//!
//! Everything here happens inside a namespace wirelab creates (named `wirelab-<pid>-<n>`) and
//! removes on every exit path: [`Namespace`] deletes it when dropped, which also happens while
//! a panic unwinds, and a process interrupted by Ctrl-C or SIGTERM removes the namespaces it still
//! has with [`remove_live_namespaces`]. Only addresses inside that
//! namespace are ever configured; no interface outside it is touched.

use std::ffi::CString;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Why a real device could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TapError {
    #[error("{0}")]
    Missing(String),
    #[error("`{command}` failed: {detail}")]
    Command { command: String, detail: String },
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
}

/// What this machine lacks for namespaces and TAP devices, in one line with the fix; `None`
/// when everything is there.
pub fn missing_requirements() -> Option<String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Some(
            "not root: network namespaces and TAP devices need root (run as root, e.g. with sudo)"
                .to_string(),
        );
    }
    if !std::path::Path::new("/dev/net/tun").exists() {
        return Some(
            "/dev/net/tun is missing: load the tun module (modprobe tun) or give the container the device"
                .to_string(),
        );
    }
    if Command::new("ip").arg("-V").output().is_err() {
        return Some("the `ip` command is missing: apt-get install iproute2".to_string());
    }
    None
}

fn run(command: &mut Command) -> Result<Output, TapError> {
    let shown = format!("{command:?}");
    let output = command.output().map_err(|source| TapError::Io {
        what: format!("starting {shown}"),
        source,
    })?;
    succeeded(output, shown)
}

/// `output` when its command succeeded; otherwise the command, `shown`, and what it said.
fn succeeded(output: Output, shown: String) -> Result<Output, TapError> {
    if !output.status.success() {
        return Err(TapError::Command {
            command: shown,
            detail: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    Ok(output)
}

/// The namespaces this process created and has not removed yet, for [`remove_live_namespaces`].
static LIVE: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn live() -> std::sync::MutexGuard<'static, Vec<String>> {
    // A panic while the list was held leaves it intact: the list is still the truth.
    LIVE.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Deletes every namespace this process created that still exists, and returns their names:
/// for a signal handler (Ctrl-C, SIGTERM), after which the process exits without unwinding.
pub fn remove_live_namespaces() -> Vec<String> {
    let names = std::mem::take(&mut *live());
    for name in &names {
        let _ = Command::new("ip").args(["netns", "del", name]).output();
    }
    names
}

/// A network namespace wirelab created; removed (with every device in it) when dropped.
pub struct Namespace {
    name: String,
}

impl Namespace {
    /// Creates a fresh namespace named after this process, with its loopback up.
    pub fn create() -> Result<Namespace, TapError> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "wirelab-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        run(Command::new("ip").args(["netns", "add", &name]))?;
        live().push(name.clone());
        let namespace = Namespace { name };
        namespace.ip(&["link", "set", "lo", "up"])?;
        Ok(namespace)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// A command that runs inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name, program]);
        command
    }

    /// Runs `ip <args>` inside the namespace.
    pub fn ip(&self, args: &[&str]) -> Result<Output, TapError> {
        run(self.command("ip").args(args))
    }

    /// Runs `ip -n <namespace> -batch -` with `commands`, one `ip` command a line (without
    /// the leading `ip`): several changes for the price of one process.
    pub fn ip_batch(&self, commands: &str) -> Result<(), TapError> {
        let shown = format!("ip -n {} -batch - <<< {commands:?}", self.name);
        let mut child = Command::new("ip")
            .args(["-n", &self.name, "-batch", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| TapError::Io {
                what: format!("starting {shown}"),
                source,
            })?;
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(commands.as_bytes());
        }
        let output = child.wait_with_output().map_err(|source| TapError::Io {
            what: format!("waiting for {shown}"),
            source,
        })?;
        succeeded(output, shown).map(drop)
    }

    /// Runs `work` on a short-lived thread that has entered the namespace, and returns what
    /// it returns. Sockets and TAP devices belong to the namespace of the thread that creates
    /// them, and `/proc/sys/net` shows that thread's namespace: this is how wirelab makes
    /// them inside the namespace without moving any thread of its own there for good.
    pub fn run_inside<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, TapError> {
        let path = format!("/var/run/netns/{}", self.name);
        let netns = File::open(&path).map_err(|source| TapError::Io {
            what: format!("opening {path}"),
            source,
        })?;
        std::thread::spawn(move || -> Result<T, TapError> {
            // SAFETY: setns only changes this thread's namespace; `netns` is a valid descriptor.
            if unsafe { libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(TapError::Io {
                    what: "entering the namespace".into(),
                    source: std::io::Error::last_os_error(),
                });
            }
            Ok(work())
        })
        .join()
        .map_err(|_| TapError::Missing("the thread working inside the namespace panicked".into()))?
    }

    /// Creates a TAP device called `device` inside the namespace, non-blocking, still down
    /// (so that its address and MTU can be set before the kernel sends anything on it).
    pub fn create_tap(&self, device: &str) -> Result<TapDevice, TapError> {
        let device_name = device.to_string();
        let fd = self.run_inside(move || open_tun(&device_name))??;
        Ok(TapDevice {
            file: File::from(fd),
            name: device.to_string(),
        })
    }

    /// Opens a TAP device called `device` inside the namespace, non-blocking, and brings it up.
    pub fn open_tap(&self, device: &str) -> Result<TapDevice, TapError> {
        let tap = self.create_tap(device)?;
        self.ip(&["link", "set", device, "up"])?;
        Ok(tap)
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        // Deleting the namespace deletes the TAP device inside it too (once the last socket
        // and descriptor in it are closed: drop those first).
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
        live().retain(|n| *n != self.name);
    }
}

/// Names of the namespaces wirelab's processes created that still exist (for tests and for
/// cleaning up after a process that was killed outright).
pub fn leftover_namespaces() -> Vec<String> {
    let Ok(output) = Command::new("ip").args(["netns", "list"]).output() else {
        return Vec::new();
    };
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with("wirelab-"))
        .map(str::to_string)
        .collect()
}

/// Deletes wirelab namespaces whose process no longer runs (one killed outright, which no
/// cleanup can survive); returns their names.
pub fn remove_stale_namespaces() -> Vec<String> {
    let mut removed = Vec::new();
    for name in leftover_namespaces() {
        let pid = name.split('-').nth(1).and_then(|p| p.parse::<u32>().ok());
        let Some(pid) = pid else { continue };
        if std::path::Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let deleted = Command::new("ip")
            .args(["netns", "del", &name])
            .output()
            .is_ok_and(|o| o.status.success());
        if deleted {
            removed.push(name);
        }
    }
    removed
}

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;

fn open_tun(device: &str) -> Result<OwnedFd, TapError> {
    let path = CString::new("/dev/net/tun").expect("no NUL in a literal");
    // SAFETY: a valid C string and flags; the result is checked.
    let raw = unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
        )
    };
    if raw < 0 {
        return Err(TapError::Io {
            what: "opening /dev/net/tun".into(),
            source: std::io::Error::last_os_error(),
        });
    }
    // SAFETY: `raw` is a descriptor we just opened and own.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let mut request = [0u8; 40];
    let name = device.as_bytes();
    if name.is_empty() || name.len() >= 16 {
        return Err(TapError::Missing(format!(
            "`{device}` is not a valid interface name (1 to 15 bytes)"
        )));
    }
    request[..name.len()].copy_from_slice(name);
    let flags = (libc::IFF_TAP | libc::IFF_NO_PI) as u16;
    request[16..18].copy_from_slice(&flags.to_ne_bytes());
    // SAFETY: TUNSETIFF reads and writes a `struct ifreq`, which `request` is large enough for.
    if unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETIFF, request.as_mut_ptr()) } < 0 {
        return Err(TapError::Io {
            what: format!("creating TAP device {device}"),
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(fd)
}

/// A TAP device: whole Ethernet frames in and out.
pub struct TapDevice {
    file: File,
    name: String,
}

impl TapDevice {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Waits up to `timeout` for a frame to arrive; true when one can be read.
    pub fn wait_readable(&self, timeout: Duration) -> bool {
        let mut poll = libc::pollfd {
            fd: self.file.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let millis = timeout.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut poll, 1, millis) > 0 }
    }

    /// Reads one frame into `buf`; `None` when none is waiting.
    pub fn read_frame(&mut self, buf: &mut [u8]) -> Option<usize> {
        self.file.read(buf).ok().filter(|&n| n > 0)
    }

    pub fn write_frame(&mut self, frame: &[u8]) -> std::io::Result<()> {
        self.file.write_all(frame)
    }

    /// The device's descriptor, for waiting on it together with others (the simulator's pacer).
    pub fn raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}
