//! Users' own async programs on simulated hosts (`wirelab::Sim`): a line echo written as against tokio, hyper's HTTP/1.1 server and client under loss and a partition, over smoltcp and lwIP, with golden captures, determinism and error kinds.
//!
//! The goldens are `golden/programs/<test>.pcapng`; `WIRELAB_BLESS=1 cargo test --test
//! programs` writes them. lwIP's tests need Debian's lwIP (`apt-get install liblwip-dev
//! liblwip0`) and are ignored with that reason without it (failed under `WIRELAB_NO_SKIP`).

use std::convert::Infallible;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use wirelab::golden_capture::assert_capture_matches;
use wirelab::net::{TcpListener, TcpStream, UdpSocket};
use wirelab::sim::config::{Impairments, LossModel};
use wirelab::{ProgramEnd, ProgramResult, Sim, SimBuilder, SimRun};

const ECHO_PORT: u16 = 7000;
const HTTP_PORT: u16 = 80;
const LINES: [&str; 3] = ["hello", "a line of a simulated program", "bye"];
/// Requests the HTTP client makes, one after another on one kept-alive connection.
const HTTP_REQUESTS: usize = 20;
/// Bytes of each HTTP response body: several segments each, so that loss bites.
const HTTP_BODY_BYTES: usize = 8000;

fn golden(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../golden/programs")
        .join(format!("{name}.pcapng"))
}

/// A line echo server as one writes it against tokio: a task per connection, lines in,
/// the same lines out.
async fn line_echo_server() -> ProgramResult {
    let listener = TcpListener::bind(("0.0.0.0", ECHO_PORT)).await?;
    loop {
        let (stream, _peer) = listener.accept().await?;
        wirelab::spawn(async move {
            let (reader, mut writer) = tokio::io::split(stream);
            let mut lines = BufReader::new(reader).lines();
            while let Some(line) = lines.next_line().await? {
                writer.write_all(format!("{line}\n").as_bytes()).await?;
            }
            writer.shutdown().await?;
            io::Result::Ok(())
        });
    }
}

/// Sends the lines, reads them back, checks them, and reads the server's end of stream.
async fn line_echo_client() -> ProgramResult {
    let stream = TcpStream::connect(("server", ECHO_PORT)).await?;
    let peer = stream.peer_addr()?;
    if peer != "10.0.0.1:7000".parse()? {
        return Err(format!("connected to {peer}, not to the server's 10.0.0.1:7000").into());
    }
    let (reader, mut writer) = tokio::io::split(stream);
    let mut reader = BufReader::new(reader);
    for line in LINES {
        writer.write_all(format!("{line}\n").as_bytes()).await?;
        let mut echoed = String::new();
        reader.read_line(&mut echoed).await?;
        if echoed != format!("{line}\n") {
            return Err(format!("sent {line:?}, got {echoed:?} back").into());
        }
    }
    writer.shutdown().await?;
    let mut rest = Vec::new();
    reader.read_to_end(&mut rest).await?;
    if !rest.is_empty() {
        return Err(format!("{} bytes after the last echo", rest.len()).into());
    }
    Ok(())
}

fn line_echo(stack: &str, seed: u64) -> SimBuilder {
    Sim::builder()
        .seed(seed)
        .host("server", stack, line_echo_server())
        .client("client", stack, line_echo_client())
}

fn line_echo_runs_and_matches_its_golden(stack: &str) {
    let run = line_echo(stack, 1).run().expect("the simulation builds");
    run.assert_passed();
    assert!(
        matches!(
            run.program("client").map(|p| &p.end),
            Some(ProgramEnd::Finished { .. })
        ),
        "{:?}",
        run.programs
    );
    // The server runs on; it never holds the run open.
    assert_eq!(run.program("server").unwrap().end, ProgramEnd::Running);
    assert_capture_matches(&run, "lan", &golden(&format!("line_echo@{stack}")));
}

fn line_echo_over_smoltcp() {
    line_echo_runs_and_matches_its_golden("smoltcp");
}

fn line_echo_over_lwip() {
    line_echo_runs_and_matches_its_golden("lwip");
}

/// The same program and seed give byte-identical captures and traces; another seed gives
/// another run (the stacks' initial sequence numbers come from it).
fn same_program_and_seed_give_identical_captures() {
    let first = line_echo("smoltcp", 7).run().unwrap();
    let second = line_echo("smoltcp", 7).run().unwrap();
    let other = line_echo("smoltcp", 8).run().unwrap();
    first.assert_passed();
    assert_eq!(first.capture("lan"), second.capture("lan"));
    assert_eq!(first.trace_text(), second.trace_text());
    assert_ne!(first.capture("lan"), other.capture("lan"));
    // hyper too, under loss and a partition.
    let first = http("smoltcp", 9);
    let second = http("smoltcp", 9);
    assert_eq!(first.capture("lan"), second.capture("lan"));
}

async fn http_server() -> ProgramResult {
    let listener = TcpListener::bind(("0.0.0.0", HTTP_PORT)).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        wirelab::spawn(async move {
            let service =
                hyper::service::service_fn(|request: Request<hyper::body::Incoming>| async move {
                    let path = request.uri().path().to_string();
                    let mut body = format!("you asked for {path}\n").into_bytes();
                    body.resize(HTTP_BODY_BYTES, b'.');
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body))))
                });
            // hyper's Date header reads the wall clock: in virtual time it must go (a program
            // that wants one writes it from wirelab::time::now).
            hyper::server::conn::http1::Builder::new()
                .auto_date_header(false)
                .serve_connection(TokioIo::new(stream), service)
                .await
        });
    }
}

async fn http_client() -> ProgramResult {
    let stream = TcpStream::connect(("server", HTTP_PORT)).await?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    wirelab::spawn(connection);
    for index in 0..HTTP_REQUESTS {
        let path = format!("/page/{index}");
        let request = Request::builder()
            .uri(path.as_str())
            .header("host", "server")
            .body(http_body_util::Empty::<Bytes>::new())?;
        let response = sender.send_request(request).await?;
        if response.status() != hyper::StatusCode::OK {
            return Err(format!("{path}: status {}", response.status()).into());
        }
        let body = response.into_body().collect().await?.to_bytes();
        let expected_start = format!("you asked for {path}\n");
        if body.len() != HTTP_BODY_BYTES || !body.starts_with(expected_start.as_bytes()) {
            return Err(format!(
                "{path}: a body of {} bytes that does not answer it",
                body.len()
            )
            .into());
        }
        wirelab::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// hyper over `stack`, with 1% loss on both hosts' links in both directions and a partition
/// from 0.5 s to 2.5 s that the client's requests must ride out.
fn http(stack: &str, seed: u64) -> SimRun {
    let lossy = Impairments {
        latency_us: 1_000,
        loss: LossModel::Independent { probability: 0.01 },
        ..Impairments::default()
    };
    Sim::builder()
        .seed(seed)
        .host("server", stack, http_server())
        .client("client", stack, http_client())
        .impair("server", lossy.clone())
        .impair("client", lossy)
        .partition(Duration::from_millis(500), &["server"])
        .heal(Duration::from_millis(2500), "server")
        .run()
        .expect("the simulation builds")
}

fn http_runs_under_loss_and_a_partition(stack: &str) {
    let run = http(stack, 3);
    run.assert_passed();
    let client = run.program("client").unwrap();
    let ProgramEnd::Finished { at_us } = client.end else {
        panic!("{client:?}");
    };
    // Twenty requests 100 ms apart, and a 2 s partition to wait out.
    assert!(
        at_us > 2_500_000,
        "the client finished at {at_us} µs, inside the partition"
    );
    let dropped = run.report.stats.frames_dropped;
    assert!(
        dropped > 0,
        "neither the loss nor the partition dropped a frame"
    );
    assert_capture_matches(
        &run,
        "lan",
        &golden(&format!("http_loss_partition@{stack}")),
    );
}

fn hyper_http_over_smoltcp_under_loss_and_partition() {
    http_runs_under_loss_and_a_partition("smoltcp");
}

fn hyper_http_over_lwip_under_loss_and_partition() {
    http_runs_under_loss_and_a_partition("lwip");
}

/// UDP ping-pong between programs: `send_to`/`recv_from`, an ephemeral port, names.
fn udp_ping_pong() {
    let run = Sim::builder()
        .seed(2)
        .host("server", "smoltcp", async {
            let socket = UdpSocket::bind("0.0.0.0:5353").await?;
            let mut buf = [0u8; 1500];
            loop {
                let (n, from) = socket.recv_from(&mut buf).await?;
                socket.send_to(&buf[..n], from).await?;
            }
        })
        .client("client", "smoltcp", async {
            let socket = UdpSocket::bind("0.0.0.0:0").await?;
            let port = socket.local_addr()?.port();
            if port < 49152 {
                return Err(format!("ephemeral port {port} is outside 49152-65535").into());
            }
            let mut buf = [0u8; 1500];
            for i in 0..5u8 {
                let message = [i; 100];
                socket.send_to(&message, ("server", 5353)).await?;
                let (n, from) =
                    wirelab::time::timeout(Duration::from_secs(1), socket.recv_from(&mut buf))
                        .await??;
                if buf[..n] != message || from != "10.0.0.1:5353".parse()? {
                    return Err(
                        format!("reply {i} of {n} bytes from {from} is not the echo").into(),
                    );
                }
            }
            Ok(())
        })
        .run()
        .unwrap();
    run.assert_passed();
}

/// Errors come as `std::io::Error` with the kinds tokio users match on, and time is virtual:
/// a refused connection, an unknown name, a connection to a partitioned peer timing out.
fn errors_have_the_usual_kinds_and_time_is_virtual() {
    let run = Sim::builder()
        .seed(4)
        .time_limit(Duration::from_secs(7200))
        .idle_host("server", "smoltcp")
        .client("client", "smoltcp", async {
            let refused = TcpStream::connect(("server", 9)).await.unwrap_err();
            if refused.kind() != io::ErrorKind::ConnectionRefused {
                return Err(format!("connecting to a closed port: {refused:?}").into());
            }
            let unknown = TcpStream::connect(("nowhere", 9)).await.unwrap_err();
            if unknown.kind() != io::ErrorKind::NotFound {
                return Err(format!("an unknown name: {unknown:?}").into());
            }
            let before = wirelab::time::now();
            wirelab::time::sleep(Duration::from_secs(3600)).await;
            let slept = wirelab::time::now() - before;
            if slept != Duration::from_secs(3600) {
                return Err(format!("slept {slept:?} of virtual time, not an hour").into());
            }
            let timed_out =
                wirelab::time::timeout(Duration::from_millis(10), std::future::pending::<()>())
                    .await
                    .unwrap_err();
            let kind = io::Error::from(timed_out).kind();
            if kind != io::ErrorKind::TimedOut {
                return Err(format!("a timeout's io kind is {kind:?}").into());
            }
            Ok(())
        })
        .run()
        .unwrap();
    run.assert_passed();
    // An hour of virtual time, in a run that took a fraction of a second.
    assert!(run.report.stats.end_time_us >= 3_600_000_000);
}

/// A program's error and a program's panic are the program's findings, reported as such,
/// not the stack's; the run goes on to its end.
fn program_errors_and_panics_are_reported_as_the_programs() {
    let run = Sim::builder()
        .seed(5)
        .client("failing", "smoltcp", async {
            Err("the program gave up".into())
        })
        .client("panicking", "smoltcp", async {
            wirelab::time::sleep(Duration::from_millis(1)).await;
            panic!("a bug in the user's program")
        })
        .run()
        .unwrap();
    assert!(!run.passed());
    assert!(run.outcome().is_success(), "{}", run.outcome());
    let problems = run.problems().join("\n");
    assert!(
        problems.contains("the program of host `failing` failed at 0 µs: the program gave up"),
        "{problems}"
    );
    assert!(
        problems.contains(
            "the program of host `panicking` panicked at 1000 µs: a bug in the user's program"
        ),
        "{problems}"
    );
}

/// A builder mistake is an error that says what to do, not a panic.
fn builder_mistakes_are_errors() {
    let error = Sim::builder()
        .client("client", "smoltcp", async { Ok(()) })
        .configure("sever", |host| host.tcp_buffer_bytes = 1024)
        .run()
        .err()
        .expect("configuring a host that does not exist");
    assert!(
        error.to_string().contains("`configure` names host `sever`"),
        "{error}"
    );
    let error = Sim::builder()
        .client("client", "no-such-stack", async { Ok(()) })
        .run()
        .err()
        .expect("a stack that is not registered");
    assert!(error.to_string().contains("no-such-stack"), "{error}");
}

/// Every file in golden/programs/ is the golden of a test here.
fn no_orphan_program_goldens() {
    let known: Vec<String> = ["line_echo", "http_loss_partition"]
        .iter()
        .flat_map(|test| ["smoltcp", "lwip"].map(|stack| format!("{test}@{stack}.pcapng")))
        .collect();
    let folder = golden("x").parent().unwrap().to_path_buf();
    for entry in std::fs::read_dir(&folder).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().to_string();
        assert!(
            known.contains(&name),
            "golden/programs/{name} is the golden of no test in harness/tests/programs.rs"
        );
    }
}

fn main() {
    let lwip = wirelab::backends::lwip::available()
        .err()
        .map(|e| e.to_string());
    wirelab::needs::run(vec![
        wirelab::needs::test("line_echo_over_smoltcp", line_echo_over_smoltcp),
        wirelab::needs::test("line_echo_over_lwip", line_echo_over_lwip).needs(lwip.clone()),
        wirelab::needs::test(
            "same_program_and_seed_give_identical_captures",
            same_program_and_seed_give_identical_captures,
        ),
        wirelab::needs::test(
            "hyper_http_over_smoltcp_under_loss_and_partition",
            hyper_http_over_smoltcp_under_loss_and_partition,
        ),
        wirelab::needs::test(
            "hyper_http_over_lwip_under_loss_and_partition",
            hyper_http_over_lwip_under_loss_and_partition,
        )
        .needs(lwip),
        wirelab::needs::test("udp_ping_pong", udp_ping_pong),
        wirelab::needs::test(
            "errors_have_the_usual_kinds_and_time_is_virtual",
            errors_have_the_usual_kinds_and_time_is_virtual,
        ),
        wirelab::needs::test(
            "program_errors_and_panics_are_reported_as_the_programs",
            program_errors_and_panics_are_reported_as_the_programs,
        ),
        wirelab::needs::test("builder_mistakes_are_errors", builder_mistakes_are_errors),
        wirelab::needs::test("no_orphan_program_goldens", no_orphan_program_goldens),
    ])
}
