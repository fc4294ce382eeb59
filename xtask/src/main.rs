//! wirelab's development commands (`cargo xtask ...`): the scenario library and its matrix through the `wirelab` command, benchmarks, fuzzing, the schema.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod bench;
mod fuzz;

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
    /// Run the scenario library (scenarios/: scenario files, then conformance scripts) with
    /// the goldens in golden/: `wirelab run scenarios/` from the workspace's root (or the
    /// paths given).
    Scenarios {
        #[command(flatten)]
        args: wirelab_cli::run::RunArgs,
    },
    /// Run the library on each available backend, print the RFC requirement matrix, and
    /// write it to scenarios/CONFORMANCE.md and <out>/conformance.json.
    Conformance {
        /// Where conformance.json and the runs' artifacts go.
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
    /// /dev/net/tun needed), in real time: `wirelab tap`.
    Tap {
        #[command(flatten)]
        args: wirelab_cli::tap::TapArgs,
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
    /// Internal: serve wirelab's smoltcp backend over the plug-in protocol (for the bench).
    #[command(hide = true)]
    PluginServe,
}

/// The workspace's root, where `scenarios/` and `golden/` live, wherever xtask runs from.
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives inside the workspace")
        .to_path_buf()
}

fn main() -> ExitCode {
    let plugins = workspace_root().join(wirelab::plugin::config::FILE_NAME);
    let stacks = match wirelab::stacks_with_plugins(&plugins) {
        Ok(stacks) => stacks,
        Err(error) => {
            eprintln!("error: the plug-ins file {error}");
            return ExitCode::from(2);
        }
    };
    wirelab_cli::serve_child_if_asked(&stacks);
    let cli = Cli::parse();
    let root = workspace_root();
    let result = match cli.command {
        Command::Scenarios { mut args } => {
            if args.paths.is_empty() {
                args.paths = vec![root.join("scenarios")];
                args.golden = args.golden.or_else(|| Some(root.join("golden")));
            }
            wirelab_cli::run::run(args, &stacks, "cargo xtask scenarios")
        }
        Command::Conformance { out, check, jobs } => wirelab_cli::conformance::run(
            wirelab_cli::conformance::ConformanceArgs {
                paths: vec![root.join("scenarios")],
                out,
                markdown: Some(root.join("scenarios/CONFORMANCE.md")),
                check,
                stacks: Vec::new(),
                jobs,
                command: "cargo xtask conformance".to_string(),
            },
            &stacks,
        ),
        Command::Bench {
            json,
            quick,
            filter,
        } => bench::run(json, quick, filter).map(|()| ExitCode::SUCCESS),
        Command::Tap { args } => wirelab_cli::tap::run(args),
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
        Command::Schema => write_schema(&root),
        Command::BenchOne { name, scale } => {
            bench::run_one(&name, scale).map(|()| ExitCode::SUCCESS)
        }
        Command::PluginServe => bench::plugin_serve(),
    };
    wirelab_cli::finish(result)
}

/// Writes the scenario files' JSON Schema where editors and the tidy test find it.
fn write_schema(root: &Path) -> anyhow::Result<ExitCode> {
    let path = root.join("scenarios/schema.json");
    wirelab::scenario::golden::write_atomic(
        &path,
        wirelab::scenario::format::json_schema().as_bytes(),
    )
    .map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?;
    println!("wrote {}", path.display());
    Ok(ExitCode::SUCCESS)
}
