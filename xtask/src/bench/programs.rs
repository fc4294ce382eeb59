//! The async-program workloads of `cargo xtask bench`: a 1 MiB transfer and hyper HTTP/1.1 requests written against `wirelab::net`, timed as the other workloads are.

use std::convert::Infallible;
use std::time::Instant;

use anyhow::bail;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wirelab::net::{TcpListener, TcpStream};
use wirelab::{ProgramResult, Sim, SimRun};

fn pattern(offset: u64) -> u8 {
    (offset % 251) as u8
}

fn timed(run: impl FnOnce() -> Result<SimRun, wirelab::SimError>) -> anyhow::Result<(SimRun, f64)> {
    let start = Instant::now();
    let run = run()?;
    let wall_s = start.elapsed().as_secs_f64();
    let problems = run.problems();
    if !problems.is_empty() {
        bail!("the programs' run failed: {}", problems.join("; "));
    }
    Ok((run, wall_s))
}

/// `bytes` from a client program to a sink program that checks every byte, on smoltcp, as
/// `apps_tcp_1mib` does it with the built-in applications.
pub fn tcp(bytes: u64) -> anyhow::Result<Value> {
    let sink = async move {
        let listener = TcpListener::bind("0.0.0.0:5001").await?;
        let (mut stream, _) = listener.accept().await?;
        let mut buf = vec![0u8; 16 * 1024];
        let mut offset = 0u64;
        loop {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            if buf[..n]
                .iter()
                .enumerate()
                .any(|(i, b)| *b != pattern(offset + i as u64))
            {
                return Err("the sink read a byte that was not sent".into());
            }
            offset += n as u64;
        }
        if offset != bytes {
            return Err(format!("the sink read {offset} of {bytes} bytes").into());
        }
        ProgramResult::Ok(())
    };
    let source = async move {
        let mut stream = TcpStream::connect(("server", 5001)).await?;
        let mut chunk = vec![0u8; 16 * 1024];
        let mut offset = 0u64;
        while offset < bytes {
            let n = chunk.len().min((bytes - offset) as usize);
            for (i, b) in chunk[..n].iter_mut().enumerate() {
                *b = pattern(offset + i as u64);
            }
            stream.write_all(&chunk[..n]).await?;
            offset += n as u64;
        }
        stream.shutdown().await?;
        ProgramResult::Ok(())
    };
    let (run, wall_s) = timed(|| {
        Sim::builder()
            .seed(1)
            .client("client", "smoltcp", source)
            .host("server", "smoltcp", sink)
            .run()
    })?;
    Ok(json!({
        "bytes": bytes, "wall_s": wall_s,
        "frames": run.report.stats.frames_emitted,
        "virtual_s": run.report.stats.end_time_us as f64 / 1e6,
    }))
}

/// `requests` hyper HTTP/1.1 requests on one kept-alive connection, each answered with 1 KiB,
/// on smoltcp with no impairment.
pub fn http(requests: usize) -> anyhow::Result<Value> {
    let server = async {
        let listener = TcpListener::bind("0.0.0.0:80").await?;
        loop {
            let (stream, _) = listener.accept().await?;
            wirelab::spawn(async move {
                let service = hyper::service::service_fn(|_request| async {
                    Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from(vec![
                        b'x';
                        1024
                    ]))))
                });
                hyper::server::conn::http1::Builder::new()
                    .auto_date_header(false)
                    .serve_connection(TokioIo::new(stream), service)
                    .await
            });
        }
    };
    let client = async move {
        let stream = TcpStream::connect(("server", 80)).await?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        wirelab::spawn(connection);
        for _ in 0..requests {
            let request = hyper::Request::builder()
                .uri("/")
                .header("host", "server")
                .body(http_body_util::Empty::<Bytes>::new())?;
            let body = sender
                .send_request(request)
                .await?
                .into_body()
                .collect()
                .await?;
            if body.to_bytes().len() != 1024 {
                return Err("a response body that is not 1 KiB".into());
            }
        }
        ProgramResult::Ok(())
    };
    let (run, wall_s) = timed(|| {
        Sim::builder()
            .seed(1)
            .host("server", "smoltcp", server)
            .client("client", "smoltcp", client)
            .run()
    })?;
    Ok(json!({
        "requests": requests, "wall_s": wall_s,
        "requests_per_wall_s": requests as f64 / wall_s,
        "frames": run.report.stats.frames_emitted,
        "virtual_s": run.report.stats.end_time_us as f64 / 1e6,
    }))
}
