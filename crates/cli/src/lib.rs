//! The `wirelab` command: run scenario files and conformance scripts from any folder, check them without running, compare two stacks, print the RFC matrix, list the stacks, and put a smoltcp host on a TAP device.
//!
//! [`main_with`] is the whole command over a registry of stacks: the `wirelab` binary passes
//! the built-in ones, and a stack's author can build a binary of their own that passes a
//! registry with their stack in it, so that it takes part in `--stack`, `--diff` and the
//! conformance matrix like the built-in ones:
//!
//! ```no_run
//! use wirelab::backends::smoltcp::SmoltcpStack as MyStack; // your stack here
//!
//! fn main() -> std::process::ExitCode {
//!     let mut stacks = wirelab::builtin_stacks();
//!     stacks.register_fn("mystack", MyStack::new);
//!     wirelab_cli::main_with(stacks)
//! }
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use wirelab::scenario::runner;
use wirelab::Registry;

pub mod check;
pub mod conformance;
pub mod diff;
pub mod run;
pub mod tap;

/// The exit code of a command that could not do what it was asked (bad input, a missing stack).
pub const BAD_INPUT: u8 = 2;

#[derive(Parser)]
#[command(
    name = "wirelab",
    version,
    about = "wirelab: deterministic network simulation and conformance for user-space TCP/IP stacks"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run scenario files and conformance scripts (files, or folders of them), write captures,
    /// traces and snapshots, and compare them with the goldens.
    Run {
        #[command(flatten)]
        args: run::RunArgs,
    },
    /// Parse and validate scenario files and scripts without running them (exit 2 with
    /// file:line:column on the first line of each error).
    Check {
        /// Scenario files, .pkt scripts, or folders of them.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Run every scenario and script on each available stack and print the RFC requirement
    /// matrix; write it as Markdown and JSON.
    Conformance {
        #[command(flatten)]
        args: conformance::ConformanceArgs,
    },
    /// List the registered stacks and whether this machine can run them.
    Stacks,
    /// Print the JSON Schema of scenario files (or write it to a file).
    Schema {
        /// Write it here instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Expose a smoltcp host on a TAP device in a namespace of wirelab's own (root and
    /// /dev/net/tun needed), in real time, for ping, curl, tcpdump and friends.
    Tap {
        #[command(flatten)]
        args: tap::TapArgs,
    },
}

/// The whole `wirelab` command over `stacks`, its arguments read from the process: what the
/// `wirelab` binary's `main` is, with the built-in stacks. The stacks of the plug-ins file
/// (`$WIRELAB_PLUGINS`, or `wirelab-plugins.toml` in the current folder) are added.
pub fn main_with(mut stacks: Registry) -> ExitCode {
    if let Some(path) = wirelab::plugin::config::default_path() {
        if let Err(error) = wirelab::plugin::config::register_from(&path, &mut stacks) {
            eprintln!("error: the plug-ins file {error}");
            return ExitCode::from(BAD_INPUT);
        }
    }
    serve_child_if_asked(&stacks);
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run { args } => {
            let command = format!("wirelab run {}", run::shown_paths(&args.paths));
            run::run(args, &stacks, &command)
        }
        Command::Check { paths } => Ok(check::run(&paths, &stacks)),
        Command::Conformance { args } => conformance::run(args, &stacks),
        Command::Stacks => Ok(list_stacks(&stacks)),
        Command::Schema { out } => write_schema(out.as_deref()),
        Command::Tap { args } => tap::run(args),
    };
    finish(result)
}

/// The exit code of a command's result; an error is printed and exits [`BAD_INPUT`].
pub fn finish(result: anyhow::Result<ExitCode>) -> ExitCode {
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(BAD_INPUT)
        }
    }
}

/// In a child process started to play one run (see [`runner::CHILD_ENV`]): does that run and
/// exits. A child that may hold linux hosts removes their namespaces when it is interrupted.
pub fn serve_child_if_asked(stacks: &Registry) {
    if !runner::is_child() {
        return;
    }
    // The process exits without unwinding on a signal, so no destructor would remove them.
    let _ = ctrlc::set_handler(|| {
        wirelab::backends::linux::netns::remove_live_namespaces();
        std::process::exit(130);
    });
    runner::serve_child_if_asked(stacks);
}

fn list_stacks(stacks: &Registry) -> ExitCode {
    for name in stacks.names() {
        let Some(factory) = stacks.get(name) else {
            continue;
        };
        let state = match factory.available() {
            Ok(()) => "available".to_string(),
            Err(why) => format!("not available: {why}"),
        };
        println!("{name:<12} {} ({state})", factory.description());
    }
    ExitCode::SUCCESS
}

fn write_schema(out: Option<&std::path::Path>) -> anyhow::Result<ExitCode> {
    let schema = wirelab::scenario::format::json_schema();
    match out {
        Some(path) => {
            wirelab::scenario::golden::write_atomic(path, schema.as_bytes())
                .map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?;
            println!("wrote {}", path.display());
        }
        None => print!("{schema}"),
    }
    Ok(ExitCode::SUCCESS)
}
