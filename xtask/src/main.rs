//! wirelab's command line (`cargo xtask ...`): run the scenario library, bless goldens, benchmark, and fuzz.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod bench;
mod conformance;
mod fuzz;
mod scenarios;
mod scripts;
mod tap;

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    about = "wirelab: deterministic network simulation for user-space TCP/IP stacks"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the scenario files, write captures, traces and snapshots, compare with the goldens.
    Scenarios {
        /// Only scenarios whose name contains this.
        #[arg(long)]
        filter: Option<String>,
        /// Run with this seed instead of each scenario's own (goldens are compared only at a
        /// scenario's own seed).
        #[arg(long)]
        seed: Option<u64>,
        /// Run each scenario with this many consecutive seeds, from --seed or its own, checking
        /// expectations and oracles on every one.
        #[arg(long)]
        seeds: Option<u64>,
        /// Worker threads (the output is the same for any number).
        #[arg(long)]
        jobs: Option<usize>,
        /// Where captures, traces and the summary go.
        #[arg(long, default_value = "target/wirelab")]
        out: PathBuf,
        /// Rewrite the goldens with what this run produced.
        #[arg(long)]
        bless: bool,
        /// Run every host on this stack (smoltcp or lwip) instead of the scenario's own; each
        /// run goes in a child process, so a stack that aborts fails only its run. Its goldens
        /// are golden/<name>@<stack>.* (with --bless, written there).
        #[arg(long, value_parser = harness::scenario::parse_stack)]
        stack: Option<harness::config::StackKind>,
        /// Run every scenario on two stacks (like smoltcp,lwip), each in a child process, and
        /// report their verdicts and normalized differences (text, and <out>/diff.json).
        #[arg(long, value_parser = scenarios::parse_pair)]
        diff: Option<(harness::config::StackKind, harness::config::StackKind)>,
        /// Test hook: make an lwIP assertion fire in the child running this scenario.
        #[arg(long, hide = true)]
        test_lwip_assert: Option<String>,
    },
    /// Run every scenario (and script) on each available backend and print the RFC requirement
    /// matrix; write it to scenarios/CONFORMANCE.md and <out>/conformance.json.
    Conformance {
        /// Where conformance.json and the lwIP runs' artifacts go.
        #[arg(long, default_value = "target/wirelab")]
        out: PathBuf,
        /// Fail (exit 1) when the committed scenarios/CONFORMANCE.md differs from what this
        /// run would write; write nothing there.
        #[arg(long)]
        check: bool,
        /// Worker threads.
        #[arg(long)]
        jobs: Option<usize>,
    },
    /// Internal: run one scenario in this process and print its result as JSON.
    #[command(hide = true)]
    ScenarioChild {
        name: String,
        #[arg(long)]
        seed: u64,
        #[arg(long, value_parser = harness::scenario::parse_stack)]
        stack: harness::config::StackKind,
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        bless: bool,
        #[arg(long)]
        no_artifacts: bool,
        /// Also judge the run against turmoil's application-level reference.
        #[arg(long)]
        reference: bool,
    },
    /// Internal: play one conformance script on one backend and print its result as JSON.
    #[command(hide = true)]
    ScriptChild {
        name: String,
        #[arg(long, value_parser = harness::scenario::parse_stack)]
        backend: harness::config::StackKind,
        #[arg(long)]
        out: PathBuf,
    },
    /// Measure the simulator against its baselines and targets (release build).
    Bench {
        /// Also write the figures as JSON to this file.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Smaller workloads, for a quick look.
        #[arg(long)]
        quick: bool,
        /// Run only the workloads whose name contains this.
        #[arg(long)]
        filter: Option<String>,
    },
    /// Expose a smoltcp host on a TAP device in a namespace of wirelab's own (root and
    /// /dev/net/tun needed), in real time, for ping, curl, tcpdump and friends.
    Tap {
        /// Stop after this many seconds (default: run until Ctrl-C).
        #[arg(long)]
        seconds: Option<u64>,
        /// Bytes the TCP server on port 7 sends to every connection.
        #[arg(long, default_value_t = 1000)]
        reply_bytes: u64,
        /// Write every frame to this pcap file at the end.
        #[arg(long)]
        pcap: Option<PathBuf>,
        /// The host's seed (ISNs, ephemeral ports).
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Build the cargo-fuzz targets (on stable) and fuzz them; print exec/s and coverage.
    Fuzz {
        /// One target (decode_frame, checksum_agreement, smoltcp_ingress, scenario_parse,
        /// pcap_read, simulation); all of them when left out.
        target: Option<String>,
        /// Seconds of fuzzing per target.
        #[arg(long = "time", default_value_t = 60)]
        time_s: u64,
        /// Targets fuzzed at once (one core each).
        #[arg(long, default_value_t = 1)]
        jobs: usize,
        /// Regenerate the seed corpora (fuzz/corpus/<target>/seed-*) and dictionaries from the
        /// golden captures and scenario files, and fuzz nothing.
        #[arg(long)]
        write_seeds: bool,
        /// Stop each target after this many executions (with --seed, the same inputs on every
        /// machine: what CI's smoke run uses, so that it passes or fails the same way).
        #[arg(long)]
        runs: Option<u64>,
        /// libFuzzer's random seed.
        #[arg(long)]
        seed: Option<u64>,
    },
    /// Regenerate scenarios/schema.json, the JSON Schema of scenario files, from the types.
    Schema,
    /// Internal: run one benchmark workload in this process and print its figures as JSON.
    #[command(hide = true)]
    BenchOne { name: String, scale: u64 },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Scenarios {
            filter,
            seed,
            seeds,
            jobs,
            out,
            bless,
            stack,
            diff,
            test_lwip_assert,
        } => scripts::scenarios_then_scripts(scenarios::Options {
            filter,
            seed,
            seeds,
            jobs,
            out,
            bless,
            stack,
            diff,
            test_lwip_assert,
        }),
        Command::ScriptChild { name, backend, out } => {
            scripts::child(&name, backend, &out, &scenarios::workspace_root())
                .map(|()| ExitCode::SUCCESS)
        }
        Command::ScenarioChild {
            name,
            seed,
            stack,
            out,
            bless,
            no_artifacts,
            reference,
        } => scenarios::child(&name, seed, stack, &out, bless, !no_artifacts, reference)
            .map(|()| ExitCode::SUCCESS),
        Command::Conformance { out, check, jobs } => {
            conformance::run(conformance::Options { out, check, jobs })
        }
        Command::Bench {
            json,
            quick,
            filter,
        } => bench::run(json, quick, filter).map(|()| ExitCode::SUCCESS),
        Command::Tap {
            seconds,
            reply_bytes,
            pcap,
            seed,
        } => tap::run(tap::Options {
            seconds,
            reply_bytes,
            pcap,
            seed,
        })
        .map(|()| ExitCode::SUCCESS),
        Command::Fuzz {
            target,
            time_s,
            jobs,
            write_seeds,
            runs,
            seed,
        } => fuzz::run(fuzz::Options {
            target,
            time_s,
            jobs,
            write_seeds,
            runs,
            seed,
        }),
        Command::Schema => scenarios::write_schema().map(|()| ExitCode::SUCCESS),
        Command::BenchOne { name, scale } => {
            bench::run_one(&name, scale).map(|()| ExitCode::SUCCESS)
        }
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}
