//! The plug-in's side of the protocol for stacks written in Rust: [`serve`] reads requests on standard input, answers on standard output, and hands each call to a [`Stack`] built per `CREATE`.
//!
//! A plug-in built on this is a `main` of one line, `wirelab_plugin::serve("name", MyStack::new)`;
//! its stack implements the same trait as an in-process one. Its time is only the `now_us` of
//! each `POLL`; it must read no clock.

use std::collections::BTreeMap;
use std::io::{Read, Write};

use stack::{FrameQueue, SocketError, Stack, StackConfig};

use crate::protocol::{self, DecodeError, Kind, Reader, Status, Writer, MAX_MESSAGE_BYTES};

/// Serves the protocol on standard input and output until wirelab closes the input, with
/// stacks built by `build`, and exits. `name` is what `HELLO` answers.
pub fn serve<S, F>(name: &str, build: F) -> !
where
    S: Stack + 'static,
    F: Fn(StackConfig) -> S + 'static,
{
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let mut input = stdin.lock();
    let mut output = std::io::BufWriter::new(stdout.lock());
    let mut server = Server {
        name: name.to_string(),
        build: Box::new(move |config| Box::new(build(config)) as Box<dyn Stack>),
        stacks: BTreeMap::new(),
        egress: FrameQueue::new(),
        answer: Writer::new(),
        scratch: vec![0; 64 * 1024],
    };
    let mut message = Vec::new();
    loop {
        let mut len = [0u8; 4];
        if input.read_exact(&mut len).is_err() {
            // wirelab closed the pipe: the run is over.
            std::process::exit(0);
        }
        let len = u32::from_le_bytes(len);
        if len == 0 || len > MAX_MESSAGE_BYTES {
            eprintln!("wirelab sent a message of {len} bytes; giving up");
            std::process::exit(2);
        }
        message.resize(len as usize, 0);
        if input.read_exact(&mut message).is_err() {
            std::process::exit(0);
        }
        let Some(kind) = Kind::from_byte(message[0]) else {
            eprintln!("wirelab sent a request of unknown kind {}", message[0]);
            std::process::exit(2);
        };
        server.answer.clear();
        let answered = server.handle(kind, &message[1..]);
        if !answered {
            continue;
        }
        let body = &server.answer.bytes;
        let written = output
            .write_all(&(body.len() as u32).to_le_bytes())
            .and_then(|()| output.write_all(body))
            .and_then(|()| output.flush());
        if written.is_err() {
            std::process::exit(0);
        }
    }
}

struct Server {
    name: String,
    build: Box<dyn Fn(StackConfig) -> Box<dyn Stack>>,
    /// Each instance's stack and the time of its last poll, which its deadline is asked at.
    stacks: BTreeMap<u32, (Box<dyn Stack>, u64)>,
    egress: FrameQueue,
    answer: Writer,
    scratch: Vec<u8>,
}

impl Server {
    /// Handles one request and writes its answer; false for `RECEIVE`, which has none.
    fn handle(&mut self, kind: Kind, body: &[u8]) -> bool {
        let mut r = Reader::new(body);
        if kind == Kind::Hello {
            match r.u16("version") {
                Ok(_) => {
                    self.answer.u8(Status::Ok as u8).u16(protocol::VERSION);
                    let name = self.name.clone();
                    self.answer.string(&name).u32(u32::MAX);
                }
                Err(e) => self.failed(&e.to_string()),
            }
            return true;
        }
        let instance = match r.u32("instance") {
            Ok(i) => i,
            Err(e) => {
                self.failed(&e.to_string());
                return kind != Kind::Receive;
            }
        };
        match self.dispatch(kind, instance, &mut r) {
            Ok(Some(result)) => {
                if let Err(error) = result {
                    self.answer.clear();
                    self.answer.u8(Status::SocketError as u8);
                    protocol::write_socket_error(&mut self.answer, &error);
                }
                let poll_at = self
                    .stacks
                    .get_mut(&instance)
                    .and_then(|(stack, now_us)| stack.poll_at(*now_us));
                self.answer.option_u64(poll_at);
                true
            }
            Ok(None) => false,
            Err(e) => {
                self.failed(&e.to_string());
                true
            }
        }
    }

    fn failed(&mut self, message: &str) {
        self.answer.clear();
        self.answer.u8(Status::Failed as u8).string(message);
    }

    /// Does the request. `Ok(None)` for `RECEIVE`; otherwise the socket result, with the
    /// answer's results already written after an `Ok` status.
    fn dispatch(
        &mut self,
        kind: Kind,
        instance: u32,
        r: &mut Reader<'_>,
    ) -> Result<Option<Result<(), SocketError>>, DecodeError> {
        if kind == Kind::Create {
            let config = protocol::read_config(r)?;
            let stack = (self.build)(config);
            self.stacks.insert(instance, (stack, 0));
            self.answer.u8(Status::Ok as u8);
            return Ok(Some(Ok(())));
        }
        if kind == Kind::Destroy {
            self.stacks.remove(&instance);
            self.answer.u8(Status::Ok as u8);
            return Ok(Some(Ok(())));
        }
        let Some((stack, last_now_us)) = self.stacks.get_mut(&instance) else {
            return Err(DecodeError::Invalid(format!(
                "{} names instance {instance}, which was never created",
                kind.name()
            )));
        };
        let w = &mut self.answer;
        let ok = |w: &mut Writer| {
            w.u8(Status::Ok as u8);
        };
        let result = match kind {
            Kind::Receive => {
                stack.receive(r.bytes("frame")?);
                return Ok(None);
            }
            Kind::Poll => {
                let now_us = r.u64("now")?;
                *last_now_us = now_us;
                self.egress.clear();
                let changed = stack.poll(now_us, &mut self.egress);
                ok(w);
                w.u8(u8::from(changed)).u32(self.egress.len() as u32);
                for frame in self.egress.iter() {
                    w.bytes(frame);
                }
                Ok(())
            }
            Kind::TcpListen => {
                let port = r.u16("port")?;
                let backlog = r.u32("backlog")? as usize;
                stack.tcp_listen(port, backlog).map(|s| {
                    ok(w);
                    w.u32(s.0);
                })
            }
            Kind::TcpAccept => {
                let listener = socket(r)?;
                stack.tcp_accept(listener).map(|s| {
                    ok(w);
                    w.u8(u8::from(s.is_some())).u32(s.map_or(0, |s| s.0));
                })
            }
            Kind::TcpConnect => {
                let remote = r.endpoint("remote")?;
                stack.tcp_connect(remote).map(|s| {
                    ok(w);
                    w.u32(s.0);
                })
            }
            Kind::TcpSend => {
                let s = socket(r)?;
                let data = r.bytes("data")?;
                stack.tcp_send(s, data).map(|n| {
                    ok(w);
                    w.u32(n as u32);
                })
            }
            Kind::TcpRecv => {
                let s = socket(r)?;
                let max = (r.u32("max")? as usize).min(self.scratch.len());
                stack.tcp_recv(s, &mut self.scratch[..max]).map(|n| {
                    ok(w);
                    w.bytes(&self.scratch[..n]);
                })
            }
            Kind::TcpShutdown => stack.tcp_shutdown(socket(r)?).map(|()| ok(w)),
            Kind::TcpAbort => stack.tcp_abort(socket(r)?).map(|()| ok(w)),
            Kind::TcpState => stack.tcp_state(socket(r)?).map(|state| {
                ok(w);
                w.u8(protocol::state_code(state));
            }),
            Kind::TcpEnd => stack.tcp_end(socket(r)?).map(|end| {
                ok(w);
                w.u8(protocol::end_code(end));
            }),
            Kind::TcpSendQueue => stack.tcp_send_queue(socket(r)?).map(|n| {
                ok(w);
                w.u32(n as u32);
            }),
            Kind::TcpSetKeepalive => {
                let s = socket(r)?;
                let interval = r.option_u64("interval")?;
                stack.tcp_set_keepalive(s, interval).map(|()| ok(w))
            }
            Kind::TcpSetNagle => {
                let s = socket(r)?;
                let enabled = r.flag("enabled")?;
                stack.tcp_set_nagle(s, enabled).map(|()| ok(w))
            }
            Kind::TcpSetTimeout => {
                let s = socket(r)?;
                let timeout = r.option_u64("timeout")?;
                stack.tcp_set_timeout(s, timeout).map(|()| ok(w))
            }
            Kind::UdpBind => {
                let port = r.u16("port")?;
                stack.udp_bind(port).map(|s| {
                    ok(w);
                    w.u32(s.0);
                })
            }
            Kind::UdpLocalPort => stack.udp_local_port(socket(r)?).map(|port| {
                ok(w);
                w.u16(port);
            }),
            Kind::UdpSendTo => {
                let s = socket(r)?;
                let dest = r.endpoint("destination")?;
                let data = r.bytes("data")?;
                stack.udp_send_to(s, dest, data).map(|()| ok(w))
            }
            Kind::UdpRecvFrom => {
                let s = socket(r)?;
                let max = (r.u32("max")? as usize).min(self.scratch.len());
                stack.udp_recv_from(s, &mut self.scratch[..max]).map(|got| {
                    ok(w);
                    match got {
                        Some((n, from)) => {
                            w.u8(1)
                                .u32(n as u32)
                                .endpoint(from)
                                .bytes(&self.scratch[..n]);
                        }
                        None => {
                            let nowhere = std::net::SocketAddr::from(([0, 0, 0, 0], 0));
                            w.u8(0).u32(0).endpoint(nowhere).bytes(&[]);
                        }
                    }
                })
            }
            Kind::IcmpEchoOpen => {
                let ident = r.u16("ident")?;
                stack.icmp_echo_open(ident).map(|s| {
                    ok(w);
                    w.u32(s.0);
                })
            }
            Kind::IcmpEchoSend => {
                let s = socket(r)?;
                let dest = r.ip("destination")?;
                let seq = r.u16("seq")?;
                let payload = r.bytes("payload")?;
                stack.icmp_echo_send(s, dest, seq, payload).map(|()| ok(w))
            }
            Kind::IcmpEchoRecv => stack.icmp_echo_recv(socket(r)?).map(|reply| {
                ok(w);
                match reply {
                    Some(reply) => {
                        w.u8(1)
                            .ip(reply.from)
                            .u16(reply.ident)
                            .u16(reply.seq)
                            .u32(reply.payload_len as u32);
                    }
                    None => {
                        w.u8(0).ip([0, 0, 0, 0].into()).u16(0).u16(0).u32(0);
                    }
                }
            }),
            Kind::Close => stack.close(socket(r)?).map(|()| ok(w)),
            Kind::Hello | Kind::Create | Kind::Destroy => unreachable!("handled above"),
        };
        if !r.is_empty() {
            return Err(DecodeError::Invalid(format!(
                "the {} request goes on after its last field",
                kind.name()
            )));
        }
        Ok(Some(result))
    }
}

fn socket(r: &mut Reader<'_>) -> Result<stack::SocketId, DecodeError> {
    r.u32("socket").map(stack::SocketId)
}
