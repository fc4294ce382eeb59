//! `Suite`: wirelab's scenario library (or a folder of your own) as a `cargo test` binary, one libtest-mimic trial per scenario and script, on the stacks you name, with goldens kept in your repository.
//!
//! ```no_run
//! // tests/wirelab.rs, with `[[test]] name = "wirelab" harness = false` in Cargo.toml
//! use wirelab::backends::smoltcp::SmoltcpStack as MyStack; // your stack here
//!
//! fn main() {
//!     wirelab::Suite::library()
//!         .stack("mystack", MyStack::new)
//!         .run()
//! }
//! ```
//!
//! Every scenario becomes a trial `scenario::<name>@mystack` (as written, without `@`, for a
//! suite that runs scenarios on the stacks they name), every script `script::<name>@mystack`.
//! A trial passes when the run passes its checks and matches its goldens: the capture byte for
//! byte, the decoded snapshot through insta, so that `cargo insta review` shows what changed.
//! `WIRELAB_BLESS=1 cargo test --test wirelab` writes the goldens (captures and snapshots) of
//! every trial it runs. A stack this machine lacks (lwIP not installed, no root for the
//! kernel) makes its trials `ignored`, with the reason; `WIRELAB_NO_SKIP=1` fails them instead.
//! Runs on stacks that may abort the process (lwIP) run in a child process of the test binary,
//! so that an abort fails one trial, with its seed and last words.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use libtest_mimic::{Arguments, Completion, Failed, Trial};
use scenario::folder::{self, Found};
use scenario::runner::{self, Settings};
use scenario::script::{self, Script, Verdict};
use scenario::Scenario;
use stack::{Registry, Stack, StackConfig, StackFactory};

/// Set in a child process of a suite's test binary to the name of the one trial it runs.
const TRIAL_ENV: &str = "WIRELAB_SUITE_TRIAL";

/// Set (to anything but `0`) to write the goldens of every trial run instead of comparing.
pub const BLESS_ENV: &str = "WIRELAB_BLESS";

/// Set by CI: a trial whose stack is missing here fails instead of being ignored.
pub const NO_SKIP_ENV: &str = "WIRELAB_NO_SKIP";

/// wirelab's own scenario library, as shipped with this crate.
fn library_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("scenarios"), |p| p.join("scenarios"))
}

/// The folder of the crate under test (cargo sets it for tests), or the current folder.
fn crate_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(|| PathBuf::from("."), PathBuf::from)
}

/// A stack this suite runs everything on, or `None` for the stacks the scenarios name.
type Target = Option<String>;

/// A trial a user's crate knows fails on its stack, recorded so that the trial asserts that
/// it fails.
#[derive(Clone, Debug)]
struct KnownFailure {
    /// The trial's name as the test output shows it.
    trial: String,
    /// Why: the requirement the stack breaks, or how it differs from what the script expects.
    why: String,
}

/// One trial, before it becomes a libtest-mimic [`Trial`].
enum Planned {
    Scenario { index: usize, target: Target },
    Script { index: usize, backend: String },
}

/// A test suite over scenario files and scripts; see the [module documentation](self).
pub struct Suite {
    paths: Vec<PathBuf>,
    golden: Option<PathBuf>,
    stacks: Registry,
    targets: Vec<Target>,
    scenarios: bool,
    scripts: bool,
    known_failures: Vec<KnownFailure>,
    extra: Vec<Trial>,
}

impl Suite {
    /// wirelab's scenario library and conformance scripts. Goldens go in the crate under test,
    /// `tests/golden/` (see [`Suite::golden`]).
    pub fn library() -> Suite {
        let mut suite = Suite::folder(library_root());
        suite.golden = Some(crate_dir().join("tests").join("golden"));
        suite
    }

    /// The scenario files and scripts at or under `path` (a folder or a file; relative paths
    /// are taken from the crate under test). Goldens go in `golden/` beside the folder's root,
    /// as the `wirelab` command keeps them.
    pub fn folder(path: impl AsRef<Path>) -> Suite {
        let path = path.as_ref();
        let path = if path.is_relative() {
            crate_dir().join(path)
        } else {
            path.to_path_buf()
        };
        Suite {
            paths: vec![path],
            golden: None,
            stacks: backends::builtin(),
            targets: Vec::new(),
            scenarios: true,
            scripts: true,
            known_failures: Vec::new(),
            extra: Vec::new(),
        }
    }

    /// Also the scenario files and scripts at or under `path`.
    pub fn and_folder(mut self, path: impl AsRef<Path>) -> Suite {
        let path = path.as_ref();
        self.paths.push(if path.is_relative() {
            crate_dir().join(path)
        } else {
            path.to_path_buf()
        });
        self
    }

    /// Keeps the goldens in `dir` (relative paths are taken from the crate under test).
    pub fn golden(mut self, dir: impl AsRef<Path>) -> Suite {
        let dir = dir.as_ref();
        self.golden = Some(if dir.is_relative() {
            crate_dir().join(dir)
        } else {
            dir.to_path_buf()
        });
        self
    }

    /// Registers a stack built by `build` from each host's configuration, and runs every
    /// scenario and script on it.
    pub fn stack<S, F>(mut self, name: &str, build: F) -> Suite
    where
        S: Stack + 'static,
        F: Fn(StackConfig) -> S + Send + Sync + 'static,
    {
        self.stacks.register_fn(name, build);
        self.on(name)
    }

    /// Registers `factory` as `name` without running anything on it (scenarios may name it).
    pub fn register(mut self, name: &str, factory: impl StackFactory + 'static) -> Suite {
        self.stacks.register(name, factory);
        self
    }

    /// Registers the stacks of the plug-ins file at `path` (relative paths are taken from the
    /// crate under test; see `wirelab::plugin::config`).
    pub fn plugins(mut self, path: impl AsRef<Path>) -> Suite {
        let path = path.as_ref();
        let path = if path.is_relative() {
            crate_dir().join(path)
        } else {
            path.to_path_buf()
        };
        if let Err(error) = plugin::config::register_from(&path, &mut self.stacks) {
            let error = format!("the plug-ins file {error}");
            self.extra
                .push(Trial::test("suite::plugins", move || Err(error.into())));
        }
        self
    }

    /// Runs every scenario and script with every host on the registered stack `name`.
    pub fn on(mut self, name: &str) -> Suite {
        self.targets.push(Some(name.to_string()));
        self
    }

    /// Runs every scenario on the stacks it names (the default when no stack is given), and
    /// scripts on smoltcp.
    pub fn as_written(mut self) -> Suite {
        self.targets.push(None);
        self
    }

    /// Leaves out the conformance scripts.
    pub fn without_scripts(mut self) -> Suite {
        self.scripts = false;
        self
    }

    /// Leaves out the scenario files.
    pub fn without_scenarios(mut self) -> Suite {
        self.scenarios = false;
        self
    }

    /// Records that the trial `trial` (its name as the test output shows it, like
    /// `script::tcp/fast_retransmit@mystack`) fails, and `why`: the requirement the stack
    /// breaks (`rfc6298:5.1: the FIN is never retransmitted`), or how it legitimately differs
    /// from what a script expects. The trial then passes only while it fails: a scenario must
    /// fail its checks (its goldens still count, so they show what the stack does), a script
    /// must fail. When it passes, the trial fails, asking for the record to go.
    pub fn known_failure(mut self, trial: &str, why: &str) -> Suite {
        self.known_failures.push(KnownFailure {
            trial: trial.to_string(),
            why: why.to_string(),
        });
        self
    }

    /// Adds a trial of your own to the run.
    pub fn trial(mut self, trial: Trial) -> Suite {
        self.extra.push(trial);
        self
    }

    /// The stacks this suite can build hosts from: the built-in ones and those registered.
    pub fn stacks(&self) -> &Registry {
        &self.stacks
    }

    /// Reads the scenarios and scripts, runs the trials cargo test asks for, and exits with
    /// libtest's exit code. In a child process it runs its one trial instead.
    pub fn run(self) -> ! {
        let mut args = Arguments::from_args();
        let shared = std::sync::Arc::new(Shared::new(
            self.paths.clone(),
            self.golden.clone(),
            self.stacks.clone(),
            self.known_failures.clone(),
        ));
        let targets = if self.targets.is_empty() {
            vec![None]
        } else {
            self.targets.clone()
        };
        let planned = plan(&shared.found, &targets, self.scenarios, self.scripts);
        if let Some(wanted) = std::env::var_os(TRIAL_ENV) {
            let wanted = wanted.to_string_lossy().into_owned();
            let result = planned
                .iter()
                .find(|p| shared.trial_name(p) == wanted)
                .map(|p| shared.run_here(p))
                .unwrap_or_else(|| Err(format!("no trial is called {wanted}")));
            match result {
                Ok(_) => std::process::exit(0),
                Err(message) => {
                    eprintln!("{message}");
                    std::process::exit(1);
                }
            }
        }
        // Real-time scripts sleep through their scripts: more threads than cores keep a
        // suite with the kernel in it short.
        if args.test_threads.is_none()
            && targets
                .iter()
                .flatten()
                .any(|t| self.stacks.get(t).is_some_and(|f| f.real_time()))
        {
            args.test_threads = Some(8);
        }
        let mut trials: Vec<Trial> = shared
            .found
            .errors
            .iter()
            .enumerate()
            .map(|(i, error)| {
                let error = error.clone();
                Trial::test(format!("file::{}", error_subject(&error, i)), move || {
                    Err(error.into())
                })
            })
            .collect();
        if shared.found.is_empty() {
            let paths: Vec<String> = self.paths.iter().map(|p| p.display().to_string()).collect();
            trials.push(Trial::test("suite::finds_something", move || {
                Err(format!("no scenario file or script under {}", paths.join(", ")).into())
            }));
        }
        let names: Vec<String> = planned.iter().map(|p| shared.trial_name(p)).collect();
        let stale: Vec<String> = shared
            .known_failures
            .iter()
            .filter(|k| !names.contains(&k.trial))
            .map(|k| k.trial.clone())
            .collect();
        trials.push(Trial::test(
            "suite::known_failures_name_trials",
            move || {
                if stale.is_empty() {
                    Ok(())
                } else {
                    Err(format!(
                        "known failures recorded for trials that do not exist: {}",
                        stale.join(", ")
                    )
                    .into())
                }
            },
        ));
        for planned in planned {
            let name = shared.trial_name(&planned);
            let shared = std::sync::Arc::clone(&shared);
            trials.push(Trial::ignorable_test(name, move || {
                shared.run_trial(&planned)
            }));
        }
        trials.extend(self.extra);
        libtest_mimic::run(&args, trials).exit()
    }
}

/// What a trial's failing file is called: the path its message starts with, or its number.
fn error_subject(error: &str, index: usize) -> String {
    error
        .split(':')
        .next()
        .filter(|s| !s.is_empty())
        .map_or_else(|| format!("error{index}"), str::to_string)
}

/// Every trial of the suite, in a fixed order: scenarios by name, each on every target, then
/// scripts by name, each on every target.
fn plan(found: &Found, targets: &[Target], scenarios: bool, scripts: bool) -> Vec<Planned> {
    let mut planned = Vec::new();
    if scenarios {
        for index in 0..found.scenarios.len() {
            for target in targets {
                planned.push(Planned::Scenario {
                    index,
                    target: target.clone(),
                });
            }
        }
    }
    if scripts {
        let mut backends: Vec<String> = targets
            .iter()
            .map(|t| {
                t.clone()
                    .unwrap_or_else(|| sim::config::DEFAULT_STACK.to_string())
            })
            .collect();
        backends.dedup();
        for index in 0..found.scripts.len() {
            for backend in &backends {
                planned.push(Planned::Script {
                    index,
                    backend: backend.clone(),
                });
            }
        }
    }
    planned
}

/// What every trial reads: the scenarios and scripts found, the stacks, where goldens live.
struct Shared {
    found: Found,
    stacks: Registry,
    golden: PathBuf,
    known_failures: Vec<KnownFailure>,
}

impl Shared {
    fn new(
        paths: Vec<PathBuf>,
        golden: Option<PathBuf>,
        stacks: Registry,
        known_failures: Vec<KnownFailure>,
    ) -> Shared {
        let found = folder::find(&paths, &stacks);
        let roots: Vec<PathBuf> = paths.iter().map(|p| folder::root_of(p)).collect();
        let golden = golden.unwrap_or_else(|| {
            roots.first().map_or_else(
                || PathBuf::from(folder::GOLDEN_DIR),
                |r| folder::golden_of(r),
            )
        });
        Shared {
            found,
            stacks,
            golden,
            known_failures,
        }
    }

    fn trial_name(&self, planned: &Planned) -> String {
        match planned {
            Planned::Scenario { index, target } => {
                let name = &self.found.scenarios[*index].name;
                match target {
                    Some(stack) => format!("scenario::{name}@{stack}"),
                    None => format!("scenario::{name}"),
                }
            }
            Planned::Script { index, backend } => {
                format!("script::{}@{backend}", self.found.scripts[*index].name)
            }
        }
    }

    /// The stack a trial needs, if it is not available here: the reason.
    fn missing(&self, planned: &Planned) -> Option<String> {
        let names: Vec<&str> = match planned {
            Planned::Scenario {
                target: Some(stack),
                ..
            } => vec![stack.as_str()],
            Planned::Scenario {
                index,
                target: None,
            } => self.found.scenarios[*index]
                .config
                .hosts
                .iter()
                .map(|h| h.stack.as_str())
                .collect(),
            Planned::Script { backend, .. } => vec![backend.as_str()],
        };
        names.into_iter().find_map(|name| {
            let factory = self.stacks.get(name)?;
            factory
                .available()
                .err()
                .map(|why| format!("stack {name} is not available here: {why}"))
        })
    }

    /// The trial as libtest-mimic runs it: ignored when its stack is missing, in a child
    /// process when its stack needs one, here otherwise.
    fn run_trial(&self, planned: &Planned) -> Result<Completion, Failed> {
        if let Some(why) = self.missing(planned) {
            if std::env::var_os(NO_SKIP_ENV).is_some() {
                return Err(format!("{NO_SKIP_ENV} is set but {why}").into());
            }
            return Ok(Completion::ignored_with(why));
        }
        if let Planned::Scenario { index, target } = planned {
            let scenario = &self.found.scenarios[*index];
            if let Some(stack) = target {
                if let Some(why) = runner::cannot_run_on(scenario, stack, &self.stacks) {
                    return Ok(Completion::ignored_with(format!("not on {stack}: {why}")));
                }
            }
        }
        let isolated = match planned {
            Planned::Scenario { index, target } => runner::needs_own_process(
                &self.found.scenarios[*index],
                target.as_deref(),
                &self.stacks,
            ),
            Planned::Script { backend, .. } => self
                .stacks
                .get(backend)
                .is_some_and(|f| f.needs_own_process()),
        };
        let result = if isolated {
            self.run_in_child(planned)
        } else {
            self.run_here(planned)
        };
        result.map_err(Failed::from)
    }

    /// Runs this test binary again for the one trial, and reports how the child ended.
    fn run_in_child(&self, planned: &Planned) -> Result<Completion, String> {
        let name = self.trial_name(planned);
        let exe = std::env::current_exe().map_err(|e| format!("finding this test binary: {e}"))?;
        let output = Command::new(exe)
            .env(TRIAL_ENV, &name)
            .env("RUST_BACKTRACE", "0")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("starting a child process: {e}"))?;
        if output.status.success() {
            return Ok(Completion::Completed);
        }
        let how = match std::os::unix::process::ExitStatusExt::signal(&output.status) {
            Some(_) => format!(
                "the child process running {name} {}; its last words:\n",
                scenario::child::how_it_ended(output.status)
            ),
            None => String::new(),
        };
        Err(format!("{how}{}", scenario::child::last_words(&output, 60)))
    }

    /// Runs the trial in this process.
    fn run_here(&self, planned: &Planned) -> Result<Completion, String> {
        match planned {
            Planned::Scenario { index, target } => {
                self.scenario_trial(&self.found.scenarios[*index], target.as_deref())
            }
            Planned::Script { index, backend } => {
                self.script_trial(&self.found.scripts[*index], backend)
            }
        }
    }

    fn scenario_trial(
        &self,
        scenario: &Scenario,
        stack: Option<&str>,
    ) -> Result<Completion, String> {
        let bless = std::env::var_os(BLESS_ENV).is_some_and(|v| v != "0");
        let mut settings = Settings::new(&self.golden);
        settings.bless = bless;
        // insta compares the snapshot below, so that `cargo insta review` can show it.
        settings.compare_snapshot = false;
        let judged = runner::run_scenario(
            scenario,
            stack,
            scenario.config.seed,
            &self.stacks,
            &settings,
        );
        let trial = match stack {
            Some(stack) => format!("scenario::{}@{stack}", scenario.name),
            None => format!("scenario::{}", scenario.name),
        };
        let rerun = format!(
            "reproduce: cargo test --test {} -- --exact {trial}",
            test_binary_name()
        );
        let known = self.known_failure(&trial);
        let mut problems = judged.summary.problems.clone();
        if let Some(known) = known {
            if judged.checks_passed {
                return Err(format!(
                    "{trial} is recorded as a known failure ({}), but it passes its checks now: remove the known failure\n{rerun}",
                    known.why
                ));
            }
            // Its failing checks are what the known failure records; its goldens still count.
            problems = judged.golden_problems.clone();
        }
        if !problems.is_empty() {
            let hint = if judged.checks_passed && !bless {
                format!(
                    "\nbless with: {BLESS_ENV}=1 cargo test --test {} -- --exact {trial}",
                    test_binary_name()
                )
            } else {
                String::new()
            };
            return Err(format!("{}{hint}\n{rerun}", problems.join("\n")));
        }
        if let (Some((snapshot, path)), false) = (&judged.snapshot, bless) {
            assert_snapshot(snapshot, path)?;
        }
        Ok(Completion::Completed)
    }

    /// The user's record of the trial `trial` failing, if there is one.
    fn known_failure(&self, trial: &str) -> Option<&KnownFailure> {
        self.known_failures.iter().find(|k| k.trial == trial)
    }

    fn script_trial(&self, script: &Script, backend: &str) -> Result<Completion, String> {
        let run = script::run(script, backend, &self.stacks, runner::SCRIPT_SEED);
        let trial = format!("script::{}@{backend}", script.name);
        let real_time = self.stacks.get(backend).is_some_and(|f| f.real_time());
        if !real_time {
            let again = script::run(script, backend, &self.stacks, runner::SCRIPT_SEED);
            if run.capture != again.capture || run.trace != again.trace {
                return Err("two runs of the same script and seed differ".into());
            }
        }
        if let Some(known) = self.known_failure(&trial) {
            return match &run.failure {
                Some(_) => Ok(Completion::Completed),
                None => Err(format!(
                    "{trial} is recorded as a known failure ({}), but it passes now: remove the known failure",
                    known.why
                )),
            };
        }
        match script::judge(script, &run) {
            Verdict::Passed | Verdict::KnownFailure(_) => Ok(Completion::Completed),
            Verdict::NotRun(reason) if real_time => Ok(Completion::ignored_with(reason)),
            Verdict::NotRun(reason) => Err(format!(
                "only real-time stacks may decline a script, but {backend} did: {reason}"
            )),
            Verdict::Unexpected(message) => Err(format!("{message}\n--- trace ---\n{}", run.trace)),
        }
    }
}

/// The test binary's name as `cargo test --test` takes it (cargo appends a hash).
fn test_binary_name() -> String {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .map(|stem| match stem.rsplit_once('-') {
            Some((name, hash)) if hash.chars().all(|c| c.is_ascii_hexdigit()) => name.to_string(),
            _ => stem,
        })
        .unwrap_or_else(|| "<test>".to_string())
}

/// Compares `snapshot` with the golden snapshot at `path` through insta, which on a
/// difference leaves a `.snap.new` beside it for `cargo insta review`.
fn assert_snapshot(snapshot: &str, path: &Path) -> Result<(), String> {
    let folder = path
        .parent()
        .ok_or("a snapshot path has a folder")?
        .to_path_buf();
    let name = path
        .file_stem()
        .and_then(|s| s.to_str())
        .ok_or("a snapshot path has a name")?
        .to_string();
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path(folder);
    settings.set_prepend_module_to_snapshot(false);
    settings.set_omit_expression(false);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        settings.bind(|| insta::assert_snapshot!(name, snapshot));
    }));
    result.map_err(|payload| {
        format!(
            "the snapshot differs from {}: {}\n  review with: cargo insta review",
            path.display(),
            sim::world::panic_message(payload.as_ref())
        )
    })
}
