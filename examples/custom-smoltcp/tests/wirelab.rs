//! wirelab's whole scenario library and conformance scripts against this crate's stack: one trial each, goldens in tests/golden/, and what this stack is known to fail, each with why.

use custom_smoltcp::CappedSmoltcp;

/// What this stack fails, and why. Most are smoltcp's own findings, which the library records
/// for the built-in smoltcp; four are what CUBIC changes: smoltcp starts it with one segment in
/// flight (RFC 5681 allows up to three of this size), where the scripts expect the segments
/// smoltcp without congestion control sends at once.
const KNOWN_FAILURES: &[(&str, &str)] = &[
    (
        "scenario::tcp/connect_timeout_syn_backoff@capped-smoltcp",
        "rfc9293:3.10.8: the RST after the user timeout acknowledges 0, which the peer never sent",
    ),
    (
        "script::icmp/port_unreachable_hard_error@capped-smoltcp",
        "rfc9293:SHLD-26: a port unreachable during the handshake is ignored",
    ),
    (
        "script::tcp/close_with_unread_data_sends_rst@capped-smoltcp",
        "rfc9293:SHLD-3: close() with unread data sends a FIN, not a RST",
    ),
    (
        "script::tcp/data_on_syn@capped-smoltcp",
        "rfc9293:3.10.7.2: data on a SYN is dropped",
    ),
    (
        "script::tcp/established_rst_in_window_challenge_ack@capped-smoltcp",
        "rfc5961:3.2: an in-window RST draws no challenge ACK",
    ),
    (
        "script::tcp/established_syn_challenge_ack@capped-smoltcp",
        "rfc5961:4.2: a SYN on an established connection draws no challenge ACK",
    ),
    (
        "script::tcp/keepalive_probe_after_idle@capped-smoltcp",
        "rfc9293:MUST-26: a keep-alive goes out the moment keep-alives are switched on",
    ),
    (
        "script::tcp/keepalive_switched_off@capped-smoltcp",
        "rfc9293:MUST-26: a keep-alive goes out the moment keep-alives are switched on",
    ),
    (
        "script::tcp/sws_sender_waits_for_window@capped-smoltcp",
        "rfc9293:MUST-38: a small segment fills a small window",
    ),
    (
        "script::tcp/syn_to_broadcast_dropped@capped-smoltcp",
        "rfc9293:MUST-57: a SYN to the subnet broadcast is answered",
    ),
    (
        "script::tcp/fast_retransmit@capped-smoltcp",
        "CUBIC: one segment in flight at first, the script expects two",
    ),
    (
        "script::tcp/psh_on_last_segment@capped-smoltcp",
        "CUBIC: one segment in flight at first, the script expects two",
    ),
    (
        "script::tcp/window_scale_negotiated@capped-smoltcp",
        "CUBIC: one segment in flight at first, the script expects two",
    ),
    (
        "script::icmp/source_quench_ignored@capped-smoltcp",
        "CUBIC: one segment in flight at first, the script expects more",
    ),
];

fn main() {
    let mut suite = wirelab::Suite::library().stack("capped-smoltcp", CappedSmoltcp::new);
    for (trial, why) in KNOWN_FAILURES {
        suite = suite.known_failure(trial, why);
    }
    suite.run()
}
