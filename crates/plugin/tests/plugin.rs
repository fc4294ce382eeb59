//! The plug-in protocol end to end: smoltcp served as a plug-in gives byte for byte the run the in-process backend gives, and a plug-in that crashes, hangs, garbles or gives up fails its run with its name, the request, the reason and its last words, while the next run goes on and no process is left behind.
//!
//! This test binary is its own plug-in: started again with `WIRELAB_TEST_PLUGIN` set to a
//! behaviour, it serves smoltcp, or misbehaves in that way at its first `POLL`.

use std::io::{Read, Write};
use std::time::Duration;

use libtest_mimic::{Arguments, Failed, Trial};
use sim::apps::AppConfig;
use sim::config::SegmentKind;
use sim::library::{tcp_transfer_apps, two_hosts};
use sim::world::{run, Outcome, RunOptions, RunReport};
use stack::Registry;
use wirelab_plugin::protocol::{Kind, Status, Writer};
use wirelab_plugin::PluginFactory;

/// Set in a child of this binary: how it behaves as a plug-in.
const BEHAVIOUR_ENV: &str = "WIRELAB_TEST_PLUGIN";

/// Plays a plug-in that answers `HELLO` and `CREATE`, then misbehaves at the first `POLL` as
/// `behaviour` says.
fn misbehave(behaviour: &str) -> ! {
    let mut input = std::io::stdin().lock();
    let mut output = std::io::stdout().lock();
    let mut answer = |status: u8, body: &Writer| {
        let len = (body.bytes.len() + 1) as u32;
        let _ = output.write_all(&len.to_le_bytes());
        let _ = output.write_all(&[status]);
        let _ = output.write_all(&body.bytes);
        let _ = output.flush();
    };
    loop {
        let mut len = [0u8; 4];
        if input.read_exact(&mut len).is_err() {
            std::process::exit(0);
        }
        let mut message = vec![0u8; u32::from_le_bytes(len) as usize];
        if input.read_exact(&mut message).is_err() {
            std::process::exit(0);
        }
        let mut body = Writer::new();
        match Kind::from_byte(message[0]) {
            Some(Kind::Hello) => {
                body.u16(wirelab_plugin::protocol::VERSION)
                    .string("misbehaving")
                    .u32(1);
                answer(Status::Ok as u8, &body);
            }
            Some(Kind::Create) => {
                body.option_u64(None);
                answer(Status::Ok as u8, &body);
            }
            Some(Kind::Receive) => {}
            Some(Kind::Poll) => {
                eprintln!("about to {behaviour}");
                match behaviour {
                    "crash" => {
                        eprintln!("segmentation fault in the stack under test (simulated)");
                        std::process::exit(139);
                    }
                    "hang" => std::thread::sleep(Duration::from_secs(3600)),
                    "garbage" => answer(7, &body),
                    _ => {
                        body.string("out of memory in the stack under test");
                        answer(Status::Failed as u8, &body);
                    }
                }
            }
            _ => {
                body.option_u64(None);
                answer(Status::Ok as u8, &body);
            }
        }
    }
}

/// A factory that starts this binary as a plug-in behaving as `behaviour`.
fn factory(behaviour: &str) -> PluginFactory {
    let exe = std::env::current_exe().expect("this test binary");
    let mut factory = PluginFactory::new(
        format!("test-{behaviour}"),
        vec![exe.display().to_string()],
        std::env::temp_dir(),
    );
    factory.command.env = vec![(BEHAVIOUR_ENV.to_string(), behaviour.to_string())];
    factory.timeout = Duration::from_millis(500);
    factory
}

/// The built-in stacks and the test plug-ins.
fn stacks() -> Registry {
    let mut stacks = backends::builtin();
    for behaviour in ["smoltcp", "crash", "hang", "garbage", "failed"] {
        stacks.register(format!("test-{behaviour}"), factory(behaviour));
    }
    stacks
}

/// A TCP transfer of `bytes` between two hosts on `stack`, over a point-to-point link.
fn transfer(stack: &str, bytes: u64) -> RunReport {
    let mut config = two_hosts(7, SegmentKind::Switch);
    for host in &mut config.hosts {
        host.stack = stack.to_string();
    }
    let apps: Vec<AppConfig> = tcp_transfer_apps(bytes);
    run(config, &apps, &stacks(), &RunOptions::default()).expect("the world builds")
}

/// This binary's plug-in children still alive.
fn live_children() -> Vec<String> {
    let me = std::process::id().to_string();
    let mut children = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let status = std::fs::read_to_string(entry.path().join("status")).unwrap_or_default();
        let parent = status
            .lines()
            .find_map(|l| l.strip_prefix("PPid:"))
            .map(str::trim);
        let zombie = status
            .lines()
            .any(|l| l.starts_with("State:") && l.contains('Z'));
        if parent == Some(me.as_str()) && !zombie {
            children.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    children
}

fn served_smoltcp_is_the_in_process_smoltcp_byte_for_byte() -> Result<(), Failed> {
    let here = transfer("smoltcp", 200_000);
    let there = transfer("test-smoltcp", 200_000);
    if here.outcome != Outcome::Completed || there.outcome != Outcome::Completed {
        return Err(format!("outcomes: {} and {}", here.outcome, there.outcome).into());
    }
    if here.trace_hash() != there.trace_hash() {
        return Err(format!(
            "the plug-in's run differs: trace {:016x} against {:016x}",
            there.trace_hash(),
            here.trace_hash()
        )
        .into());
    }
    let bytes = |r: &RunReport| r.captures[0].bytes.clone();
    if bytes(&here) != bytes(&there) || here.stats != there.stats {
        return Err("the captures or the run's counters differ".into());
    }
    Ok(())
}

/// A run on a plug-in that misbehaves so fails with a message holding every `part`.
fn fails_with(behaviour: &str, parts: &[&str]) -> Result<(), Failed> {
    let report = transfer(&format!("test-{behaviour}"), 10_000);
    let Outcome::StackPanic { host, message } = &report.outcome else {
        return Err(format!("the run ended {}", report.outcome).into());
    };
    for part in parts {
        if !message.contains(part) {
            return Err(format!("`{part}` is not in the failure of {host}: {message}").into());
        }
    }
    // The next run is not disturbed, and no plug-in process is left.
    let next = transfer("smoltcp", 10_000);
    if next.outcome != Outcome::Completed {
        return Err(format!("the next run ended {}", next.outcome).into());
    }
    let left = live_children();
    if !left.is_empty() {
        return Err(format!("plug-in processes left behind: {left:?}").into());
    }
    Ok(())
}

fn main() {
    if let Ok(behaviour) = std::env::var(BEHAVIOUR_ENV) {
        if behaviour == "smoltcp" {
            wirelab_plugin::serve("smoltcp (test)", backends::smoltcp::SmoltcpStack::new);
        }
        misbehave(&behaviour);
    }
    let mut args = Arguments::from_args();
    // Each trial checks that no plug-in process outlives its runs: one trial at a time.
    args.test_threads = Some(1);
    let trials = vec![
        Trial::test(
            "served_smoltcp_is_the_in_process_smoltcp_byte_for_byte",
            served_smoltcp_is_the_in_process_smoltcp_byte_for_byte,
        ),
        Trial::test(
            "a_plugin_that_crashes_fails_its_run_with_its_last_words",
            || {
                fails_with(
                    "crash",
                    &[
                        "the plug-in test-crash failed in POLL",
                        "it closed its standard output",
                        "exited with exit status: 139",
                        "segmentation fault in the stack under test",
                    ],
                )
            },
        ),
        Trial::test(
            "a_plugin_that_hangs_fails_its_run_after_the_timeout",
            || {
                fails_with(
                    "hang",
                    &[
                        "the plug-in test-hang failed in POLL",
                        "did not answer in time",
                        "about to hang",
                    ],
                )
            },
        ),
        Trial::test("a_plugin_that_breaks_the_protocol_fails_its_run", || {
            fails_with(
                "garbage",
                &["failed in POLL", "status 7, which is not 0, 1 or 2"],
            )
        }),
        Trial::test(
            "a_plugin_that_gives_up_fails_its_run_with_its_reason",
            || {
                fails_with(
                    "failed",
                    &[
                        "failed in POLL",
                        "it reported: out of memory in the stack under test",
                    ],
                )
            },
        ),
        Trial::test(
            "a_missing_plugin_program_is_unavailable_with_the_hint",
            || {
                let mut factory =
                    PluginFactory::new("absent", vec!["./no/such/program".into()], "/");
                factory.missing_hint = Some("build it first".into());
                match stack::StackFactory::available(&factory) {
                    Err(why) if why.contains("does not exist; build it first") => Ok(()),
                    other => Err(format!("{other:?}").into()),
                }
            },
        ),
    ];
    libtest_mimic::run(&args, trials).exit()
}
