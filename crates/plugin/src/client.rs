//! wirelab's side of the plug-in protocol: a [`StackFactory`] that starts a plug-in process per host, and the [`Stack`] that forwards every call to it and waits, with a wall-clock bound, for the answer.
//!
//! A plug-in that dies, does not answer in time, or answers what the protocol does not allow
//! fails its run: the call panics with the plug-in's name, what was asked, what went wrong and
//! the plug-in's last words (the end of its standard error), and the simulator reports that
//! host's stack as panicked; other runs go on. Frames received are sent with the next request
//! (`RECEIVE` has no answer), and every answer carries the stack's next deadline, so that a
//! poll costs one round trip and `poll_at` none.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use stack::{
    BuildError, EchoReply, FrameQueue, MacAddr, SocketError, SocketId, Stack, StackConfig,
    StackFactory, TcpEnd, TcpState,
};

use crate::protocol::{self, DecodeError, Kind, Reader, Status, Writer, MAX_MESSAGE_BYTES};

/// How long a plug-in may take to answer one request, unless its configuration says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Lines of a plug-in's standard error kept for its last words.
const LAST_WORDS_LINES: usize = 12;

/// How to start a plug-in: the command, where, with what environment.
#[derive(Clone, Debug)]
pub struct PluginCommand {
    /// The program and its arguments.
    pub argv: Vec<String>,
    /// The folder it runs in.
    pub dir: PathBuf,
    /// Variables added to its environment.
    pub env: Vec<(String, String)>,
}

/// Starts a plug-in process for every host of the stack it is registered as.
#[derive(Clone, Debug)]
pub struct PluginFactory {
    /// The name the stack is registered as, for messages.
    pub name: String,
    /// How to start the plug-in.
    pub command: PluginCommand,
    /// One line for listings.
    pub description: String,
    /// What to tell someone whose machine lacks the plug-in's program (how to build or install
    /// it).
    pub missing_hint: Option<String>,
    /// The longest a plug-in may take to answer one request.
    pub timeout: Duration,
    /// A command that makes the program, run (once per process, in the plug-in's folder) when
    /// the program is missing: `cargo build -p ...` for a plug-in of this workspace.
    pub build: Option<Vec<String>>,
    /// The period of the plug-in stack's own timer when it acts only on that timer
    /// (`StackFactory::tick_us`); 0 when it acts at once.
    pub tick_us: u64,
    /// What running `build` gave, once it ran.
    built: Arc<std::sync::OnceLock<Result<(), String>>>,
}

impl PluginFactory {
    /// A plug-in started with `argv` in `dir`, registered as `name`.
    pub fn new(name: impl Into<String>, argv: Vec<String>, dir: impl Into<PathBuf>) -> Self {
        let name = name.into();
        PluginFactory {
            description: format!("{name}: the plug-in {}", argv.join(" ")),
            name,
            command: PluginCommand {
                argv,
                dir: dir.into(),
                env: Vec::new(),
            },
            missing_hint: None,
            timeout: DEFAULT_TIMEOUT,
            build: None,
            tick_us: 0,
            built: Arc::default(),
        }
    }

    /// Runs the `build` command, once per process, and says how it went.
    fn build_program(&self) -> Result<(), String> {
        let Some(build) = self.build.as_ref().filter(|b| !b.is_empty()) else {
            return Err(String::new());
        };
        self.built
            .get_or_init(|| {
                eprintln!("building the plug-in {}: {}", self.name, build.join(" "));
                let status = Command::new(&build[0])
                    .args(&build[1..])
                    .current_dir(&self.command.dir)
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .status();
                match status {
                    Ok(s) if s.success() => Ok(()),
                    Ok(s) => Err(format!("`{}` failed: {s}", build.join(" "))),
                    Err(e) => Err(format!("`{}` could not start: {e}", build.join(" "))),
                }
            })
            .clone()
    }

    /// The program to start, found as the shell would: a path with a `/` is taken from the
    /// plug-in's folder, a bare name from `PATH`.
    fn program(&self) -> Result<PathBuf, String> {
        let Some(program) = self.command.argv.first() else {
            return Err(format!("the plug-in {} has an empty command", self.name));
        };
        let missing = |what: String| match &self.missing_hint {
            Some(hint) => format!("{what}; {hint}"),
            None => what,
        };
        if program.contains('/') {
            let path = self.command.dir.join(program);
            return if path.is_file() {
                // The plug-in starts in its own folder: a relative path would be taken from
                // there a second time (a plug-ins file named as `plugins/x/wirelab-plugins.toml`).
                // Made absolute without resolving links: a virtual environment's `python` is a
                // link, and the venv is found through the link's own path.
                Ok(std::path::absolute(&path).unwrap_or(path))
            } else {
                Err(missing(format!(
                    "the plug-in program {} does not exist",
                    path.display()
                )))
            };
        }
        let path_var = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path_var)
            .map(|dir| dir.join(program))
            .find(|p| p.is_file())
            .ok_or_else(|| missing(format!("`{program}` is not on PATH")))
    }
}

impl StackFactory for PluginFactory {
    fn description(&self) -> String {
        self.description.clone()
    }

    fn available(&self) -> Result<(), String> {
        self.made_program().map(|_| ())
    }

    fn build(&self, config: StackConfig) -> Result<Box<dyn Stack>, BuildError> {
        let program = self.made_program().map_err(BuildError::Unavailable)?;
        self.start(&program, config)
    }

    fn tick_us(&self) -> u64 {
        self.tick_us
    }
}

impl PluginFactory {
    /// The program, made first with `build` when it is missing and the plug-in says how.
    fn made_program(&self) -> Result<PathBuf, String> {
        match self.program() {
            Ok(program) => Ok(program),
            Err(missing) => match self.build_program() {
                Ok(()) => self.program(),
                Err(why) if why.is_empty() => Err(missing),
                Err(why) => Err(format!("{missing}; building it: {why}")),
            },
        }
    }

    fn start(&self, program: &Path, config: StackConfig) -> Result<Box<dyn Stack>, BuildError> {
        PluginStack::start(self, program, config)
            .map(|s| Box::new(s) as Box<dyn Stack>)
            .map_err(BuildError::Failed)
    }
}

/// One host's stack, living in a plug-in process. The process is talked to through a
/// `RefCell`: even the trait's `&self` queries are a request and an answer.
pub struct PluginStack {
    connection: RefCell<Connection>,
    mac: MacAddr,
}

/// The pipes to a plug-in process and the state of the conversation.
struct Connection {
    name: String,
    child: Child,
    stdin: ChildStdin,
    stdout: ChildStdout,
    last_words: Arc<Mutex<VecDeque<String>>>,
    timeout: Duration,
    instance: u32,
    /// Requests written but not yet sent (the frames received since the last request).
    outgoing: Vec<u8>,
    /// A message being built.
    body: Writer,
    /// The last answer read.
    answer: Vec<u8>,
    /// Bytes read from the plug-in and not yet taken: `input[input_at..]`.
    input: Vec<u8>,
    input_at: usize,
    poll_at: Option<u64>,
}

impl PluginStack {
    /// Starts the plug-in, says hello, and creates the host.
    fn start(factory: &PluginFactory, program: &Path, config: StackConfig) -> Result<Self, String> {
        let mac = config.mac;
        Ok(PluginStack {
            connection: RefCell::new(Connection::start(factory, program, config)?),
            mac,
        })
    }

    /// One socket call (see [`Connection::call`]).
    fn call<T>(
        &self,
        kind: Kind,
        args: impl FnOnce(&mut Writer),
        read: impl FnOnce(&mut Reader<'_>) -> Result<T, DecodeError>,
    ) -> Result<T, SocketError> {
        self.connection.borrow_mut().call(kind, args, read)
    }

    /// TCP_RECV of at most `max` bytes, lent to `consume` (not called when none came).
    fn tcp_recv_into(
        &self,
        socket: SocketId,
        max: usize,
        consume: &mut dyn FnMut(&[u8]),
    ) -> Result<usize, SocketError> {
        self.call(
            Kind::TcpRecv,
            |w| {
                w.u32(socket.0).u32(max as u32);
            },
            |r| {
                let data = r.bytes("data")?;
                if data.len() > max {
                    return Err(DecodeError::Invalid(format!(
                        "TCP_RECV gave {} bytes, more than the {max} asked for",
                        data.len()
                    )));
                }
                if !data.is_empty() {
                    consume(data);
                }
                Ok(data.len())
            },
        )
    }
}

impl Connection {
    fn start(factory: &PluginFactory, program: &Path, config: StackConfig) -> Result<Self, String> {
        let mut command = Command::new(program);
        command
            .args(&factory.command.argv[1..])
            .current_dir(&factory.command.dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (key, value) in &factory.command.env {
            command.env(key, value);
        }
        let mut child = command.spawn().map_err(|e| {
            format!(
                "the plug-in {} could not start ({}): {e}",
                factory.name,
                factory.command.argv.join(" ")
            )
        })?;
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("the plug-in {} has no pipes", factory.name));
        };
        let last_words = Arc::new(Mutex::new(VecDeque::new()));
        {
            let last_words = Arc::clone(&last_words);
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    let mut words = last_words.lock().unwrap_or_else(|e| e.into_inner());
                    if words.len() == LAST_WORDS_LINES {
                        words.pop_front();
                    }
                    words.push_back(line);
                }
            });
        }
        set_nonblocking(stdin.as_raw_fd());
        let mut stack = Connection {
            name: factory.name.clone(),
            child,
            stdin,
            stdout,
            last_words,
            timeout: factory.timeout,
            instance: 0,
            outgoing: Vec::new(),
            body: Writer::new(),
            answer: Vec::new(),
            input: Vec::new(),
            input_at: 0,
            poll_at: None,
        };
        stack.hello()?;
        stack.body.clear();
        stack.body.u32(stack.instance);
        protocol::write_config(&mut stack.body, &config);
        match stack.exchange(Kind::Create)? {
            Ok(()) => stack.try_results(Kind::Create, |_| Ok(()))?,
            Err(error) => {
                return Err(stack.failure(
                    Kind::Create,
                    &format!("it would not create the host: {error}"),
                ))
            }
        }
        Ok(stack)
    }

    fn hello(&mut self) -> Result<(), String> {
        self.body.clear();
        self.body.u16(protocol::VERSION);
        self.send(Kind::Hello)
            .map_err(|e| self.failure(Kind::Hello, &e))?;
        self.read_answer()
            .map_err(|e| self.failure(Kind::Hello, &e))?;
        let answer = std::mem::take(&mut self.answer);
        let parsed = (|| {
            let mut r = Reader::new(&answer);
            match r.u8("status")? {
                0 => {}
                2 => return Err(DecodeError::Invalid(r.string("failure")?)),
                other => {
                    return Err(DecodeError::Invalid(format!(
                        "HELLO was answered with status {other}"
                    )))
                }
            }
            let version = r.u16("version")?;
            let _name = r.string("plug-in name")?;
            let _max_instances = r.u32("instance count")?;
            Ok(version)
        })();
        self.answer = answer;
        match parsed {
            Ok(protocol::VERSION) => Ok(()),
            Ok(version) => Err(self.failure(
                Kind::Hello,
                &format!(
                    "it speaks protocol version {version}; wirelab speaks {}",
                    protocol::VERSION
                ),
            )),
            Err(e) => Err(self.failure(Kind::Hello, &e.to_string())),
        }
    }

    /// A failure's full story: whose, during what, what happened, how the process is, and its
    /// last words. Kills the process, which cannot be trusted any more.
    fn failure(&mut self, kind: Kind, what: &str) -> String {
        let _ = self.child.kill();
        let status = self
            .child
            .wait()
            .map(
                |s| match std::os::unix::process::ExitStatusExt::signal(&s) {
                    Some(signal) if signal == libc::SIGKILL => String::new(),
                    Some(signal) => format!("; it died of signal {signal}"),
                    None => format!("; it exited with {s}"),
                },
            )
            .unwrap_or_default();
        // The stderr reader may still be taking the last lines.
        std::thread::sleep(Duration::from_millis(20));
        let words: Vec<String> = self
            .last_words
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect();
        let words = if words.is_empty() {
            "(nothing on standard error)".to_string()
        } else {
            words.join("\n  ")
        };
        format!(
            "the plug-in {} failed in {}: {what}{status}; its last words:\n  {words}",
            self.name,
            kind.name()
        )
    }

    /// Queues a request with the body built so far.
    fn queue(&mut self, kind: Kind) {
        let len = (self.body.bytes.len() + 1) as u32;
        self.outgoing.extend_from_slice(&len.to_le_bytes());
        self.outgoing.push(kind as u8);
        self.outgoing.extend_from_slice(&self.body.bytes);
    }

    /// Queues a request and sends everything queued.
    #[allow(
        clippy::disallowed_methods,
        reason = "a plug-in is another process: its answers are bounded in wall-clock time"
    )]
    fn send(&mut self, kind: Kind) -> Result<(), String> {
        self.queue(kind);
        self.flush(Instant::now() + self.timeout)
    }

    /// Writes everything queued, waiting for the pipe until `deadline`.
    fn flush(&mut self, deadline: Instant) -> Result<(), String> {
        let mut written = 0;
        while written < self.outgoing.len() {
            wait_for(self.stdin.as_raw_fd(), libc::POLLOUT, deadline)?;
            // SAFETY: a valid descriptor and a buffer of the given length.
            let n = unsafe {
                libc::write(
                    self.stdin.as_raw_fd(),
                    self.outgoing[written..].as_ptr() as *const libc::c_void,
                    self.outgoing.len() - written,
                )
            };
            if n < 0 {
                let error = std::io::Error::last_os_error();
                if error.kind() == std::io::ErrorKind::WouldBlock
                    || error.kind() == std::io::ErrorKind::Interrupted
                {
                    continue;
                }
                return Err(format!("writing to it failed ({error}): it has gone"));
            }
            written += n as usize;
        }
        self.outgoing.clear();
        Ok(())
    }

    /// Reads one answer into `self.answer`.
    #[allow(
        clippy::disallowed_methods,
        reason = "a plug-in is another process: its answers are bounded in wall-clock time"
    )]
    fn read_answer(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + self.timeout;
        let mut len = [0u8; 4];
        self.read_exactly(&mut len, deadline)?;
        let len = u32::from_le_bytes(len);
        if len == 0 || len > MAX_MESSAGE_BYTES {
            return Err(format!(
                "it answered with a message of {len} bytes (1 to {MAX_MESSAGE_BYTES} allowed)"
            ));
        }
        let mut answer = std::mem::take(&mut self.answer);
        answer.resize(len as usize, 0);
        let result = self.read_exactly(&mut answer, deadline);
        self.answer = answer;
        result
    }

    /// Fills `buf` from what the plug-in wrote, reading as much as it has at a time.
    fn read_exactly(&mut self, buf: &mut [u8], deadline: Instant) -> Result<(), String> {
        let mut got = 0;
        while got < buf.len() {
            if self.input_at == self.input.len() {
                self.input.resize(64 * 1024, 0);
                wait_for(self.stdout.as_raw_fd(), libc::POLLIN, deadline)?;
                let n = loop {
                    match self.stdout.read(&mut self.input) {
                        Ok(0) => {
                            return Err("it closed its standard output (it has exited)".to_string())
                        }
                        Ok(n) => break n,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(format!("reading its answer failed: {e}")),
                    }
                };
                self.input.truncate(n);
                self.input_at = 0;
            }
            let take = (buf.len() - got).min(self.input.len() - self.input_at);
            buf[got..got + take].copy_from_slice(&self.input[self.input_at..self.input_at + take]);
            got += take;
            self.input_at += take;
        }
        Ok(())
    }

    /// Sends a request for this host and reads its answer: `Ok` with a reader after the
    /// status (the results, then the deadline), or the socket error, with the deadline
    /// updated. Anything the protocol does not allow ends the run.
    fn exchange(&mut self, kind: Kind) -> Result<Result<(), SocketError>, String> {
        self.send(kind).map_err(|e| self.failure(kind, &e))?;
        self.read_answer().map_err(|e| self.failure(kind, &e))?;
        let status = self.answer[0];
        if status == Status::Ok as u8 {
            return Ok(Ok(()));
        }
        let answer = std::mem::take(&mut self.answer);
        let mut r = Reader::new(&answer[1..]);
        let result = if status == Status::SocketError as u8 {
            match protocol::read_socket_error(&mut r).and_then(|(error, _)| {
                let poll_at = r.option_u64("deadline")?;
                Ok((error, poll_at))
            }) {
                Ok((error, poll_at)) => {
                    self.poll_at = poll_at;
                    Ok(Err(error))
                }
                Err(e) => Err(e.to_string()),
            }
        } else if status == Status::Failed as u8 {
            Err(r
                .string("failure")
                .map(|m| format!("it reported: {m}"))
                .unwrap_or_else(|e| e.to_string()))
        } else {
            Err(format!(
                "it answered with status {status}, which is not 0, 1 or 2"
            ))
        };
        self.answer = answer;
        result.map_err(|e| self.failure(kind, &e))
    }

    /// Reads the results of an `Ok` answer with `read`, then the deadline; a malformed answer
    /// ends the run.
    fn results<T>(
        &mut self,
        kind: Kind,
        read: impl FnOnce(&mut Reader<'_>) -> Result<T, DecodeError>,
    ) -> T {
        match self.try_results(kind, read) {
            Ok(value) => value,
            Err(story) => panic!("{story}"),
        }
    }

    /// Like [`Connection::results`], with the story of a malformed answer as the error.
    fn try_results<T>(
        &mut self,
        kind: Kind,
        read: impl FnOnce(&mut Reader<'_>) -> Result<T, DecodeError>,
    ) -> Result<T, String> {
        let answer = std::mem::take(&mut self.answer);
        let mut r = Reader::new(&answer[1..]);
        let parsed = read(&mut r).and_then(|value| {
            let poll_at = r.option_u64("deadline")?;
            if !r.is_empty() {
                return Err(DecodeError::Invalid(
                    "the answer goes on after its last field".to_string(),
                ));
            }
            Ok((value, poll_at))
        });
        self.answer = answer;
        match parsed {
            Ok((value, poll_at)) => {
                self.poll_at = poll_at;
                Ok(value)
            }
            Err(e) => Err(self.failure(kind, &format!("its answer does not parse: {e}"))),
        }
    }

    /// One socket call: the body is the instance and `args`, the answer's results are read by
    /// `read`. A broken plug-in ends the run (this panics with the story).
    fn call<T>(
        &mut self,
        kind: Kind,
        args: impl FnOnce(&mut Writer),
        read: impl FnOnce(&mut Reader<'_>) -> Result<T, DecodeError>,
    ) -> Result<T, SocketError> {
        self.body.clear();
        self.body.u32(self.instance);
        args(&mut self.body);
        match self.exchange(kind) {
            Ok(Ok(())) => Ok(self.results(kind, read)),
            Ok(Err(error)) => Err(error),
            Err(story) => panic!("{story}"),
        }
    }
}

/// Waits until `fd` is ready for `events`, or fails when `deadline` passes.
#[allow(
    clippy::disallowed_methods,
    reason = "a plug-in is another process: its answers are bounded in wall-clock time"
)]
fn wait_for(fd: i32, events: i16, deadline: Instant) -> Result<(), String> {
    loop {
        let now = Instant::now();
        if now >= deadline {
            return Err("it did not answer in time (it hangs, or is far too slow)".to_string());
        }
        let remaining_ms = (deadline - now).as_millis().clamp(1, i32::MAX as u128) as i32;
        let mut poll = libc::pollfd {
            fd,
            events,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut poll, 1, remaining_ms) };
        if n > 0 {
            return Ok(());
        }
        if n < 0 && std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            return Err(format!(
                "waiting for it failed: {}",
                std::io::Error::last_os_error()
            ));
        }
    }
}

fn set_nonblocking(fd: i32) {
    // SAFETY: fcntl on a valid descriptor we own.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK);
    }
}

impl Drop for Connection {
    #[allow(
        clippy::disallowed_methods,
        reason = "a plug-in that does not take its DESTROY at once is not waited for"
    )]
    fn drop(&mut self) {
        self.body.clear();
        self.body.u32(self.instance);
        self.queue(Kind::Destroy);
        // A plug-in that follows the protocol ends when its input closes; one that does not is
        // killed. Either way it is reaped, so that no process is left behind.
        let _ = self.flush(Instant::now() + Duration::from_millis(100));
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Stack for PluginStack {
    fn mac(&self) -> MacAddr {
        self.mac
    }

    fn receive(&mut self, frame: &[u8]) {
        let c = self.connection.get_mut();
        c.body.clear();
        c.body.u32(c.instance).bytes(frame);
        c.queue(Kind::Receive);
    }

    fn poll(&mut self, now_us: u64, egress: &mut FrameQueue) -> bool {
        let c = self.connection.get_mut();
        c.body.clear();
        c.body.u32(c.instance).u64(now_us);
        match c.exchange(Kind::Poll) {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                let story = c.failure(Kind::Poll, &format!("it answered POLL with {error}"));
                panic!("{story}");
            }
            Err(story) => panic!("{story}"),
        }
        c.results(Kind::Poll, |r| {
            let changed = r.flag("changed flag")?;
            let count = r.u32("frame count")?;
            for _ in 0..count {
                egress.push(r.bytes("frame")?);
            }
            Ok(changed)
        })
    }

    fn poll_at(&mut self, _now_us: u64) -> Option<u64> {
        self.connection.get_mut().poll_at
    }

    fn tcp_listen(&mut self, port: u16, backlog: usize) -> Result<SocketId, SocketError> {
        self.call(
            Kind::TcpListen,
            |w| {
                w.u16(port).u32(backlog as u32);
            },
            |r| r.u32("socket").map(SocketId),
        )
    }

    fn tcp_accept(&mut self, listener: SocketId) -> Result<Option<SocketId>, SocketError> {
        self.call(
            Kind::TcpAccept,
            |w| {
                w.u32(listener.0);
            },
            |r| {
                let ready = r.flag("ready flag")?;
                let socket = r.u32("socket")?;
                Ok(ready.then_some(SocketId(socket)))
            },
        )
    }

    fn tcp_connect(&mut self, remote: SocketAddr) -> Result<SocketId, SocketError> {
        self.call(
            Kind::TcpConnect,
            |w| {
                w.endpoint(remote);
            },
            |r| r.u32("socket").map(SocketId),
        )
    }

    fn tcp_send(&mut self, socket: SocketId, data: &[u8]) -> Result<usize, SocketError> {
        self.call(
            Kind::TcpSend,
            |w| {
                w.u32(socket.0).bytes(data);
            },
            |r| r.u32("bytes taken").map(|n| n as usize),
        )
    }

    fn tcp_recv(&mut self, socket: SocketId, buf: &mut [u8]) -> Result<usize, SocketError> {
        self.tcp_recv_into(socket, buf.len(), &mut |data| {
            buf[..data.len()].copy_from_slice(data)
        })
    }

    fn tcp_recv_with(
        &mut self,
        socket: SocketId,
        limit: usize,
        consume: &mut dyn FnMut(&[u8]),
    ) -> Result<usize, SocketError> {
        // One round trip for up to 256 KiB, instead of the default's many small reads.
        self.tcp_recv_into(socket, limit.min(256 * 1024), consume)
    }

    fn tcp_shutdown(&mut self, socket: SocketId) -> Result<(), SocketError> {
        self.call(
            Kind::TcpShutdown,
            |w| {
                w.u32(socket.0);
            },
            |_| Ok(()),
        )
    }

    fn tcp_abort(&mut self, socket: SocketId) -> Result<(), SocketError> {
        self.call(
            Kind::TcpAbort,
            |w| {
                w.u32(socket.0);
            },
            |_| Ok(()),
        )
    }

    fn tcp_state(&self, socket: SocketId) -> Result<TcpState, SocketError> {
        self.call(
            Kind::TcpState,
            |w| {
                w.u32(socket.0);
            },
            |r| protocol::state_of(r.u8("state")?),
        )
    }

    fn tcp_end(&self, socket: SocketId) -> Result<Option<TcpEnd>, SocketError> {
        self.call(
            Kind::TcpEnd,
            |w| {
                w.u32(socket.0);
            },
            |r| protocol::end_of(r.u8("end")?),
        )
    }

    fn tcp_send_queue(&self, socket: SocketId) -> Result<usize, SocketError> {
        self.call(
            Kind::TcpSendQueue,
            |w| {
                w.u32(socket.0);
            },
            |r| r.u32("bytes").map(|n| n as usize),
        )
    }

    fn tcp_set_keepalive(
        &mut self,
        socket: SocketId,
        interval_us: Option<u64>,
    ) -> Result<(), SocketError> {
        self.call(
            Kind::TcpSetKeepalive,
            |w| {
                w.u32(socket.0).option_u64(interval_us);
            },
            |_| Ok(()),
        )
    }

    fn tcp_set_nagle(&mut self, socket: SocketId, enabled: bool) -> Result<(), SocketError> {
        self.call(
            Kind::TcpSetNagle,
            |w| {
                w.u32(socket.0).u8(u8::from(enabled));
            },
            |_| Ok(()),
        )
    }

    fn tcp_set_timeout(
        &mut self,
        socket: SocketId,
        timeout_us: Option<u64>,
    ) -> Result<(), SocketError> {
        self.call(
            Kind::TcpSetTimeout,
            |w| {
                w.u32(socket.0).option_u64(timeout_us);
            },
            |_| Ok(()),
        )
    }

    fn udp_bind(&mut self, port: u16) -> Result<SocketId, SocketError> {
        self.call(
            Kind::UdpBind,
            |w| {
                w.u16(port);
            },
            |r| r.u32("socket").map(SocketId),
        )
    }

    fn udp_local_port(&self, socket: SocketId) -> Result<u16, SocketError> {
        self.call(
            Kind::UdpLocalPort,
            |w| {
                w.u32(socket.0);
            },
            |r| r.u16("port"),
        )
    }

    fn udp_send_to(
        &mut self,
        socket: SocketId,
        dest: SocketAddr,
        data: &[u8],
    ) -> Result<(), SocketError> {
        self.call(
            Kind::UdpSendTo,
            |w| {
                w.u32(socket.0).endpoint(dest).bytes(data);
            },
            |_| Ok(()),
        )
    }

    fn udp_recv_from(
        &mut self,
        socket: SocketId,
        buf: &mut [u8],
    ) -> Result<Option<(usize, SocketAddr)>, SocketError> {
        let max = buf.len();
        self.call(
            Kind::UdpRecvFrom,
            |w| {
                w.u32(socket.0).u32(max as u32);
            },
            |r| {
                let some = r.flag("datagram flag")?;
                let len = r.u32("datagram length")? as usize;
                let from = r.endpoint("sender")?;
                let data = r.bytes("data")?;
                if data.len() > max {
                    return Err(DecodeError::Invalid(format!(
                        "UDP_RECV_FROM gave {} bytes, more than the {max} asked for",
                        data.len()
                    )));
                }
                if !some {
                    return Ok(None);
                }
                // The datagram's own length is for the log; the caller gets what fits.
                let _ = len;
                buf[..data.len()].copy_from_slice(data);
                Ok(Some((data.len(), from)))
            },
        )
    }

    fn icmp_echo_open(&mut self, ident: u16) -> Result<SocketId, SocketError> {
        self.call(
            Kind::IcmpEchoOpen,
            |w| {
                w.u16(ident);
            },
            |r| r.u32("socket").map(SocketId),
        )
    }

    fn icmp_echo_send(
        &mut self,
        socket: SocketId,
        dest: IpAddr,
        seq: u16,
        payload: &[u8],
    ) -> Result<(), SocketError> {
        self.call(
            Kind::IcmpEchoSend,
            |w| {
                w.u32(socket.0).ip(dest).u16(seq).bytes(payload);
            },
            |_| Ok(()),
        )
    }

    fn icmp_echo_recv(&mut self, socket: SocketId) -> Result<Option<EchoReply>, SocketError> {
        self.call(
            Kind::IcmpEchoRecv,
            |w| {
                w.u32(socket.0);
            },
            |r| {
                let some = r.flag("reply flag")?;
                let from = r.ip("sender")?;
                let ident = r.u16("ident")?;
                let seq = r.u16("seq")?;
                let payload_len = r.u32("payload length")? as usize;
                Ok(some.then_some(EchoReply {
                    from,
                    ident,
                    seq,
                    payload_len,
                }))
            },
        )
    }

    fn close(&mut self, socket: SocketId) -> Result<(), SocketError> {
        self.call(
            Kind::Close,
            |w| {
                w.u32(socket.0);
            },
            |_| Ok(()),
        )
    }
}
