//! The `Sim` builder: users' async programs on named hosts over chosen stacks, on simulated segments with impairments and scheduled faults, run in virtual time into a `SimRun` to assert on.

use std::cell::RefCell;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::rc::Rc;
use std::time::Duration;

use judge::oracle::Violation;
use sim::config::{
    Cidr, EventAction, HostConfig, Impairments, ScheduledEvent, SegmentConfig, SegmentKind,
};
use sim::world::{HostedApp, Outcome, RunError, RunOptions, RunReport, World};
use sim::WorldConfig;
use stack::{MacAddr, Registry};

use crate::host::{Names, Program, ProgramEnd, ProgramOutcome, ProgramResult};

/// The segment hosts join when the builder names none.
pub const DEFAULT_SEGMENT: &str = "lan";

/// Entry point: `Sim::builder()`.
pub struct Sim;

impl Sim {
    /// A simulation with seed 0, no hosts yet, the built-in stacks and captures on.
    pub fn builder() -> SimBuilder {
        SimBuilder {
            config: WorldConfig::new(0),
            programs: Vec::new(),
            stacks: None,
            ipv6: false,
            mistakes: Vec::new(),
        }
    }
}

struct ProgramSpec {
    host: String,
    client: bool,
    program: std::pin::Pin<Box<dyn Future<Output = ProgramResult>>>,
}

/// Builds a simulation: segments, hosts and their programs, impairments and faults.
///
/// Hosts join the segment added last (`lan` when none was). Each host gets the address
/// `10.0.S.N/24`, where `S` is its segment's position and `N` its own position on the
/// segment, counting from 1, and, with [`SimBuilder::ipv6`], `fd00:0:0:S::N/64`; programs
/// reach the others by name through [`crate::net::lookup`] and the sockets' address
/// arguments.
pub struct SimBuilder {
    config: WorldConfig,
    programs: Vec<ProgramSpec>,
    stacks: Option<Registry>,
    ipv6: bool,
    /// Mistakes found while building, reported by [`SimBuilder::run`].
    mistakes: Vec<String>,
}

/// Why a simulation could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The network as built is not valid (an unknown host in an event, a stack that cannot
    /// be built, a bad impairment).
    #[error(transparent)]
    World(#[from] RunError),
    /// Something the builder itself checks.
    #[error("{0}")]
    Builder(String),
}

impl SimBuilder {
    /// The run's root seed: the same programs and seed give byte-identical captures.
    pub fn seed(mut self, seed: u64) -> SimBuilder {
        self.config.seed = seed;
        self
    }

    /// Adds a switched segment; the hosts added after it join it.
    pub fn segment(mut self, name: &str) -> SimBuilder {
        self.config.segments.push(SegmentConfig {
            name: name.to_string(),
            kind: SegmentKind::Switch,
        });
        self
    }

    /// Gives every host an IPv6 address as well (`fd00:0:0:S::N/64`).
    pub fn ipv6(mut self, enabled: bool) -> SimBuilder {
        self.ipv6 = enabled;
        self
    }

    /// The stacks hosts name (the built-in ones by default: `smoltcp`, `lwip`, `linux`).
    pub fn stacks(mut self, stacks: Registry) -> SimBuilder {
        self.stacks = Some(stacks);
        self
    }

    /// The run ends with a time-limit outcome when virtual time would pass `limit`.
    pub fn time_limit(mut self, limit: Duration) -> SimBuilder {
        self.config.time_limit_us = u64::try_from(limit.as_micros()).unwrap_or(u64::MAX);
        self
    }

    fn add_host(&mut self, name: &str, stack: &str) {
        if self.config.segments.is_empty() {
            self.config.segments.push(SegmentConfig {
                name: DEFAULT_SEGMENT.to_string(),
                kind: SegmentKind::Switch,
            });
        }
        let segment_index = self.config.segments.len() - 1;
        let segment = self.config.segments[segment_index].name.clone();
        let position = self
            .config
            .hosts
            .iter()
            .filter(|h| h.segment == segment)
            .count()
            + 1;
        let mut host = HostConfig::new(name, segment);
        host.stack = stack.to_string();
        let s = segment_index as u8;
        host.ipv4 = Some(Cidr {
            addr: IpAddr::V4(Ipv4Addr::new(10, 0, s, position as u8)),
            prefix_len: 24,
        });
        if self.ipv6 {
            host.ipv6 = Some(Cidr {
                addr: IpAddr::V6(Ipv6Addr::new(
                    0xfd00,
                    0,
                    0,
                    s.into(),
                    0,
                    0,
                    0,
                    position as u16,
                )),
                prefix_len: 64,
            });
        }
        self.config.hosts.push(host);
    }

    /// A host running `program` on `stack`: a server, say. It does not hold the run open;
    /// the run ends when every client has ended.
    pub fn host<F>(mut self, name: &str, stack: &str, program: F) -> SimBuilder
    where
        F: Future<Output = ProgramResult> + 'static,
    {
        self.add_host(name, stack);
        self.programs.push(ProgramSpec {
            host: name.to_string(),
            client: false,
            program: Box::pin(program),
        });
        self
    }

    /// A host running `program` on `stack`, which the run waits for.
    pub fn client<F>(mut self, name: &str, stack: &str, program: F) -> SimBuilder
    where
        F: Future<Output = ProgramResult> + 'static,
    {
        self.add_host(name, stack);
        self.programs.push(ProgramSpec {
            host: name.to_string(),
            client: true,
            program: Box::pin(program),
        });
        self
    }

    /// A host with no program of its own (it still answers ARP and pings).
    pub fn idle_host(mut self, name: &str, stack: &str) -> SimBuilder {
        self.add_host(name, stack);
        self
    }

    /// Changes the configuration of host `name` (MTU, TCP buffers, congestion control, its
    /// link's impairments), as a scenario file's `[[hosts]]` table would.
    pub fn configure(mut self, name: &str, change: impl FnOnce(&mut HostConfig)) -> SimBuilder {
        match self.config.hosts.iter_mut().find(|h| h.name == name) {
            Some(host) => change(host),
            None => self.mistakes.push(format!(
                "`configure` names host `{name}`, which was not added (add it with .host, \
                 .client or .idle_host first)"
            )),
        }
        self
    }

    /// The same impairments on both directions of host `name`'s link.
    pub fn impair(self, name: &str, impairments: Impairments) -> SimBuilder {
        self.configure(name, |host| {
            host.link.to_segment = impairments.clone();
            host.link.from_segment = impairments;
        })
    }

    /// Schedules a fault (a link down or up, a partition, a heal, new impairments) at `at`.
    pub fn event(mut self, at: Duration, action: EventAction) -> SimBuilder {
        self.config.events.push(ScheduledEvent {
            at_us: u64::try_from(at.as_micros()).unwrap_or(u64::MAX),
            action,
        });
        self
    }

    /// Splits the segment of the first named host at `at`: the hosts named cannot reach the
    /// others until [`SimBuilder::heal`].
    pub fn partition(self, at: Duration, hosts: &[&str]) -> SimBuilder {
        let segment = self.segment_of(hosts.first().copied().unwrap_or(""));
        let group = hosts.iter().map(|h| h.to_string()).collect();
        self.event(
            at,
            EventAction::Partition {
                segment,
                groups: vec![group],
            },
        )
    }

    /// Ends the partition of `host`'s segment at `at`.
    pub fn heal(self, at: Duration, host: &str) -> SimBuilder {
        let segment = self.segment_of(host);
        self.event(at, EventAction::Heal { segment })
    }

    fn segment_of(&self, host: &str) -> String {
        self.config
            .hosts
            .iter()
            .find(|h| h.name == host)
            .map(|h| h.segment.clone())
            .unwrap_or_else(|| DEFAULT_SEGMENT.to_string())
    }

    /// Runs the simulation to its end.
    pub fn run(self) -> Result<SimRun, SimError> {
        let SimBuilder {
            config,
            programs,
            stacks,
            ipv6: _,
            mistakes,
        } = self;
        if let Some(mistake) = mistakes.into_iter().next() {
            return Err(SimError::Builder(mistake));
        }
        let mut seen = std::collections::BTreeSet::new();
        for host in &config.hosts {
            if !seen.insert(host.name.as_str()) {
                return Err(SimError::Builder(format!(
                    "two hosts are named `{}`: names must be unique",
                    host.name
                )));
            }
        }
        let names: Rc<Names> = Rc::new(
            config
                .hosts
                .iter()
                .map(|h| {
                    let addrs = h.ipv4.iter().chain(h.ipv6.iter()).map(|c| c.addr).collect();
                    (h.name.clone(), addrs)
                })
                .collect(),
        );
        let stacks = stacks.unwrap_or_else(backends::builtin);
        let mut outcomes = Vec::new();
        let mut hosted = Vec::new();
        for spec in programs {
            let index = config.host_index(&spec.host).expect("checked above");
            let outcome = Rc::new(RefCell::new(ProgramOutcome {
                host: spec.host.clone(),
                client: spec.client,
                end: ProgramEnd::Running,
            }));
            outcomes.push(outcome.clone());
            hosted.push(HostedApp {
                host: spec.host.clone(),
                app: Box::new(Program::new(
                    spec.host,
                    index,
                    names[&config.hosts[index].name].clone(),
                    names.clone(),
                    spec.client,
                    spec.program,
                    outcome,
                )),
            });
        }
        let macs: Vec<MacAddr> = (0..config.hosts.len())
            .map(|i| config.host_mac(i))
            .collect();
        let world = World::with_apps(config, &[], hosted, &stacks, &RunOptions::default())?;
        let report = world.run();
        let programs = outcomes.iter().map(|o| o.borrow().clone()).collect();
        Ok(SimRun {
            report,
            programs,
            macs,
        })
    }
}

/// What a simulation did: the world's report (outcome, counters, trace, captures) and how
/// each program ended, with helpers for a test to assert on.
pub struct SimRun {
    /// The world's report, as a scenario run has it.
    pub report: RunReport,
    /// Each program's end, in the order the builder added them.
    pub programs: Vec<ProgramOutcome>,
    macs: Vec<MacAddr>,
}

impl SimRun {
    /// How the run ended.
    pub fn outcome(&self) -> &Outcome {
        &self.report.outcome
    }

    /// The program of host `host`.
    pub fn program(&self, host: &str) -> Option<&ProgramOutcome> {
        self.programs.iter().find(|p| p.host == host)
    }

    /// What the trace oracles (checksums, TCP sequence and window sanity, frames to unowned
    /// MACs) found in the run's trace.
    pub fn violations(&self) -> Vec<Violation> {
        judge::oracle::check(&self.report.trace, &self.report.names, &self.macs)
    }

    /// The decoded trace, one line per event: what `insta::assert_snapshot!` takes.
    pub fn trace_text(&self) -> String {
        self.report.trace_text()
    }

    /// The capture of segment `segment` (pcapng), as a scenario run writes it.
    pub fn capture(&self, segment: &str) -> Option<&[u8]> {
        self.report
            .captures
            .iter()
            .find(|c| c.segment == segment)
            .and_then(|c| c.bytes.as_deref())
    }

    /// Everything that makes the run a failure: an outcome other than completed, a program
    /// that failed or panicked (or a client still running), a trace-oracle violation.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if !self.report.outcome.is_success() {
            problems.push(format!("the run {}", self.report.outcome));
        }
        for program in &self.programs {
            match &program.end {
                ProgramEnd::Failed { at_us, error } => problems.push(format!(
                    "the program of host `{}` failed at {at_us} µs: {error}",
                    program.host
                )),
                ProgramEnd::Panicked { at_us, message } => problems.push(format!(
                    "the program of host `{}` panicked at {at_us} µs: {message}",
                    program.host
                )),
                ProgramEnd::Running if program.client => problems.push(format!(
                    "the client program of host `{}` had not ended",
                    program.host
                )),
                _ => {}
            }
        }
        problems.extend(
            self.violations()
                .iter()
                .map(|v| format!("trace oracle: {v}")),
        );
        problems
    }

    /// True when [`SimRun::problems`] finds nothing.
    pub fn passed(&self) -> bool {
        self.problems().is_empty()
    }

    /// Panics with the seed and every problem when the run did not pass: for `#[test]`s.
    #[track_caller]
    pub fn assert_passed(&self) {
        let problems = self.problems();
        assert!(
            problems.is_empty(),
            "the simulation (seed {}) did not pass:\n  {}",
            self.report.seed,
            problems.join("\n  ")
        );
    }
}
