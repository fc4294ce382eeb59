//! turmoil as the application-level reference: every scenario whose applications turmoil models runs on turmoil and on smoltcp (and lwIP when installed), and the real transcripts agree with turmoil's, or disagree exactly as a recorded finding says; scenarios turmoil cannot model are listed with their reasons; an altered transcript is a disagreement.

use wirelab::judge::reference::{
    compare, plan, reference_verdict, run_reference, transcripts_of, verdict, ReferenceVerdict,
    Transcript,
};
use wirelab::scenario::{check_on, Scenario};

mod common;
use common::library;
use wirelab::sim::world::RunOptions;

/// Runs `scenario` on `stack` and gives the real transcripts of what turmoil models.
fn real_transcripts(scenario: &Scenario, stack: &'static str) -> Vec<Transcript> {
    let plan = plan(scenario.workload()).expect("a modelled scenario");
    let checked = check_on(
        scenario,
        Some(stack),
        scenario.config.seed,
        &wirelab::builtin_stacks(),
        &RunOptions::default(),
    )
    .unwrap_or_else(|e| panic!("{}: {e}", scenario.name));
    transcripts_of(
        scenario.on_stack(Some(stack)).workload(),
        &plan,
        &checked.report,
    )
}

/// Scenarios turmoil models none of the applications of, each with (part of) the reason.
const NOT_MODELLED: &[(&str, &str)] = &[
    ("arp/resolution_and_expiry", "ICMP echo"),
    ("icmp/ping_ipv4", "ICMP echo"),
    ("icmp/ping_ipv6", "ICMP echo"),
    ("scale/fifty_hosts_ping_server", "ICMP echo"),
    ("tcp/abort_with_rst", "abortive close"),
];

/// Applications left out of scenarios turmoil otherwise models: scenario, app index, reason.
const APPS_NOT_MODELLED: &[(&str, usize, &str)] = &[
    ("ip/mtu_mismatch", 2, "ICMP echo"),
    ("tcp/connect_timeout_syn_backoff", 0, "ICMP echo"),
];

/// Where a real stack disagrees with turmoil because of a finding the scenario records as a
/// known failure of that stack: scenario, stack, and every disagreement, in order.
const KNOWN_DISAGREEMENTS: &[(&str, &str, &[&str])] = &[(
    // smoltcp never retransmits its FIN: the server never reads the end of the stream, the
    // client stays in FIN-WAIT-1 and the run stalls.
    "tcp/fin_not_retransmitted",
    "smoltcp",
    &[
        "app 0 (tcp_server on server): stream 1: never saw the end of the peer's stream where turmoil's did",
        "app 1 (tcp_client on client): stream 1: never saw the end of the peer's stream where turmoil's did",
        "app 1 (tcp_client on client): never finished where turmoil's did",
    ],
)];

fn first_lines(verdict: &ReferenceVerdict) -> Vec<String> {
    match verdict {
        ReferenceVerdict::Disagree { disagreements, .. } => disagreements
            .iter()
            .map(|d| d.to_string().lines().next().unwrap_or_default().to_string())
            .collect(),
        _ => Vec::new(),
    }
}

/// Every scenario turmoil models, on `stack`: agreement, or exactly the recorded disagreement
/// of a known finding. Returns how many scenarios were compared.
fn library_agrees_on(stack: &'static str) -> usize {
    let mut compared = 0;
    let mut problems = Vec::new();
    for scenario in library() {
        let Ok(reference) = run_reference(scenario.workload()) else {
            continue;
        };
        assert!(
            reference.finished,
            "{}: the turmoil run did not finish",
            scenario.name
        );
        let actual = real_transcripts(&scenario, stack);
        let verdict = verdict(reference, &actual);
        compared += 1;
        let known = KNOWN_DISAGREEMENTS
            .iter()
            .find(|(name, s, _)| *name == scenario.name && *s == stack);
        match known {
            None if verdict.word() != "agree" => {
                problems.push(format!("{} on {}: {verdict}", scenario.name, stack))
            }
            None => {}
            Some((_, _, expected)) => {
                // The disagreement is a finding the scenario records for this stack.
                assert!(
                    !scenario.on_stack(Some(stack)).known_failures.is_empty(),
                    "{}: a known disagreement on {} needs a known failure in the scenario",
                    scenario.name,
                    stack
                );
                let lines = first_lines(&verdict);
                if lines != *expected {
                    problems.push(format!(
                        "{} on {}: expected exactly the known disagreement {expected:#?}, got {verdict}",
                        scenario.name,
                        stack
                    ));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
    compared
}

#[test]
fn every_modelled_scenario_agrees_with_turmoil_on_smoltcp() {
    let compared = library_agrees_on("smoltcp");
    assert_eq!(
        compared,
        library().len() - NOT_MODELLED.len(),
        "every scenario not listed as not modelled is compared"
    );
}

#[test]
fn every_modelled_scenario_agrees_with_turmoil_on_lwip() {
    if let Err(e) = wirelab::backends::lwip::available() {
        wirelab::skip_test(&e.to_string());
        return;
    }
    let compared = library_agrees_on("lwip");
    assert_eq!(compared, library().len() - NOT_MODELLED.len());
}

#[test]
fn what_turmoil_cannot_model_is_listed_with_its_reason() {
    let mut unlisted = Vec::new();
    for scenario in library() {
        match plan(scenario.workload()) {
            Err(reason) => match NOT_MODELLED.iter().find(|(n, _)| *n == scenario.name) {
                Some((_, why)) => assert!(reason.contains(why), "{}: {reason}", scenario.name),
                None => unlisted.push(format!("{}: {reason}", scenario.name)),
            },
            Ok(plan) => {
                assert!(
                    !NOT_MODELLED.iter().any(|(n, _)| *n == scenario.name),
                    "{} is modelled now: take it out of NOT_MODELLED",
                    scenario.name
                );
                for left_out in &plan.not_modelled {
                    match APPS_NOT_MODELLED
                        .iter()
                        .find(|(n, app, _)| *n == scenario.name && *app == left_out.app)
                    {
                        Some((_, _, why)) => assert!(left_out.reason.contains(why), "{left_out}"),
                        None => unlisted.push(format!("{}: {left_out}", scenario.name)),
                    }
                }
                let expected = APPS_NOT_MODELLED
                    .iter()
                    .filter(|(n, _, _)| *n == scenario.name)
                    .count();
                assert_eq!(plan.not_modelled.len(), expected, "{}", scenario.name);
            }
        }
    }
    assert!(
        unlisted.is_empty(),
        "not modelled but not listed here: {unlisted:#?}"
    );
}

#[test]
fn an_altered_tcp_transcript_is_a_disagreement_showing_both() {
    let scenario = library()
        .into_iter()
        .find(|s| s.name == "tcp/data_both_ways_and_close")
        .unwrap();
    let reference = run_reference(scenario.workload()).unwrap();
    let actual = real_transcripts(&scenario, "smoltcp");
    assert!(compare(&reference.transcripts, &actual).is_empty());

    // One byte of the client's received stream changed: same length, other hash, pattern
    // broken at that byte.
    let mut altered = actual.clone();
    let received = &mut altered[1].streams[0].received;
    received.xxh3 ^= 1;
    received.pattern_ok = 777;
    let found = compare(&reference.transcripts, &altered);
    assert_eq!(found.len(), 1, "{found:#?}");
    let text = found[0].to_string();
    assert!(
        text.starts_with("app 1 (tcp_client on client): stream 1: received 30000 B xxh3 "),
        "{text}"
    );
    assert!(text.contains("(pattern breaks at byte 777)"), "{text}");
    assert!(text.contains("\n  turmoil: app 1 (tcp_client on client), done; stream 1: connected, closed by peer; sent 20000 B"), "{text}");
    assert!(
        text.contains("\n  actual:  app 1 (tcp_client on client), done;"),
        "{text}"
    );

    // A connection that was reset instead of closed, and a client that never finished.
    let mut altered = actual.clone();
    altered[0].streams[0].end = Some(wirelab::judge::reference::End::Reset);
    altered[1].done = Some(false);
    let found: Vec<String> = compare(&reference.transcripts, &altered)
        .iter()
        .map(|d| d.to_string().lines().next().unwrap().to_string())
        .collect();
    assert_eq!(
        found,
        [
            "app 0 (tcp_server on server): stream 1: ended reset instead of no error",
            "app 1 (tcp_client on client): never finished where turmoil's did",
        ]
    );

    // An application missing from the real run.
    let found = compare(&reference.transcripts, &actual[..1]);
    assert_eq!(found.len(), 1);
    assert!(found[0].to_string().contains("actual:  (none)"));
}

#[test]
fn udp_delivery_must_be_a_subset_of_what_was_sent() {
    let scenario = library()
        .into_iter()
        .find(|s| s.name == "udp/ping_pong")
        .unwrap();
    let reference = run_reference(scenario.workload()).unwrap();
    let actual = real_transcripts(&scenario, "smoltcp");
    assert!(compare(&reference.transcripts, &actual).is_empty());

    // Losing datagrams is allowed: delivery is a subset.
    let mut lossy = actual.clone();
    lossy[0].datagrams_received.truncate(3);
    lossy[1].datagrams_received.clear();
    assert!(compare(&reference.transcripts, &lossy).is_empty());

    // A corrupted one is not.
    let mut corrupted = actual.clone();
    corrupted[1].datagrams_received[4].xxh3 ^= 0x8000;
    let found = compare(&reference.transcripts, &corrupted);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(
        found[0]
            .to_string()
            .starts_with("app 1 (udp_ping_pong on client): received 1 datagram(s) no application sent (corrupted or invented): 64 B "),
        "{}",
        found[0]
    );
}

#[test]
fn the_reference_is_deterministic_and_serializable() {
    for name in [
        "tcp/partition_and_heal",
        "udp/closed_port",
        "tcp/simultaneous_close",
    ] {
        let scenario = library().into_iter().find(|s| s.name == name).unwrap();
        let a = run_reference(scenario.workload()).unwrap();
        let b = run_reference(scenario.workload()).unwrap();
        assert_eq!(a, b, "{name}");
        let json = serde_json::to_string(&a).unwrap();
        let back: wirelab::judge::reference::ReferenceRun = serde_json::from_str(&json).unwrap();
        assert_eq!(back, a, "{name}");
    }
}

#[test]
fn reference_verdict_judges_a_real_run() {
    let scenario = library()
        .into_iter()
        .find(|s| s.name == "tcp/connect_timeout_syn_backoff")
        .unwrap();
    let checked = check_on(
        &scenario,
        Some("smoltcp"),
        scenario.config.seed,
        &wirelab::builtin_stacks(),
        &RunOptions::default(),
    )
    .unwrap();
    let verdict = reference_verdict(
        scenario.on_stack(Some("smoltcp")).workload(),
        &checked.report,
    );
    assert_eq!(verdict.word(), "agree", "{verdict}");
    let ReferenceVerdict::Agree {
        transcripts,
        not_modelled,
    } = &verdict
    else {
        unreachable!()
    };
    assert_eq!(transcripts.len(), 1);
    assert_eq!(
        transcripts[0].streams[0].end,
        Some(wirelab::judge::reference::End::TimedOut)
    );
    assert_eq!(not_modelled.len(), 1);
    let json = serde_json::to_value(&verdict).unwrap();
    assert_eq!(json["verdict"], "agree");

    let icmp = library()
        .into_iter()
        .find(|s| s.name == "icmp/ping_ipv4")
        .unwrap();
    let checked = check_on(
        &icmp,
        None,
        icmp.config.seed,
        &wirelab::builtin_stacks(),
        &RunOptions::default(),
    )
    .unwrap();
    let verdict = reference_verdict(icmp.workload(), &checked.report);
    assert_eq!(verdict.word(), "not modelled");
    assert!(verdict.to_string().contains("ICMP echo"), "{verdict}");
}
