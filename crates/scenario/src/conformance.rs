//! The conformance matrix: catalogued requirements by backend (pass, fail with its source and finding, or not covered), built from coverage rows and rendered as Markdown and JSON.
//!
//! A coverage row says that one source (a scenario or a script) ran on one backend, which
//! requirements it exercises, and whether it passed. A requirement fails on a backend when any
//! source that names it failed there; it passes when it is covered there and nothing failed.
//! Everything is ordered (catalogue order for requirements, names for backends and sources),
//! so the same rows always render to the same bytes.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::requirements::{Catalogue, Kind, RFC9293_MUSTS};

/// How one source fared on one backend.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    Pass,
    /// The source failed (or records a known finding); `finding` says what went wrong.
    Fail {
        finding: String,
    },
}

/// One source run on one backend, and the requirements it exercises.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Coverage {
    /// `scenario tcp/handshake`, `script tcp/rst_closed_port`.
    pub source: String,
    /// `smoltcp`, `lwip`.
    pub backend: String,
    pub requirements: Vec<String>,
    pub verdict: Verdict,
}

/// A failing source, as shown against a requirement.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Failure {
    pub source: String,
    pub finding: String,
}

/// One requirement on one backend.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Cell {
    /// Covered, and every covering source passed.
    Pass {
        sources: Vec<String>,
    },
    /// At least one covering source failed; `passing` lists those that did not.
    Fail {
        failures: Vec<Failure>,
        passing: Vec<String>,
    },
    NotCovered,
}

impl Cell {
    /// `pass`, `fail` or `not covered`.
    pub fn label(&self) -> &'static str {
        match self {
            Cell::Pass { .. } => "pass",
            Cell::Fail { .. } => "fail",
            Cell::NotCovered => "not covered",
        }
    }
}

/// One catalogued requirement and its cell per backend.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Row {
    pub id: String,
    pub kind: Kind,
    pub section: String,
    pub summary: String,
    /// By backend name.
    pub results: BTreeMap<String, Cell>,
}

/// Counts for one backend.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct BackendSummary {
    /// Sources (scenarios, scripts) run on this backend, and how many of them failed or
    /// recorded a known finding there.
    pub sources: usize,
    pub sources_failing: usize,
    /// Catalogued requirements that pass, fail, or are not covered on this backend.
    pub pass: usize,
    pub fail: usize,
    pub not_covered: usize,
    /// The same for RFC 9293's MUSTs.
    pub must_pass: usize,
    pub must_fail: usize,
}

/// The headline figures.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// RFC 9293's MUSTs: how many there are, and how many at least one source covers on at
    /// least one backend.
    pub rfc9293_musts: usize,
    pub rfc9293_musts_covered: usize,
    /// The MUSTs nothing covers yet, in order.
    pub rfc9293_musts_not_covered: Vec<String>,
    /// Catalogued requirements of any kind covered on at least one backend.
    pub requirements: usize,
    pub requirements_covered: usize,
    pub backends: BTreeMap<String, BackendSummary>,
}

/// A requirement id that a source declares but the catalogue does not know.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Uncatalogued {
    pub source: String,
    pub id: String,
}

/// The whole matrix.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Matrix {
    pub backends: Vec<String>,
    pub summary: Summary,
    pub rows: Vec<Row>,
    /// Declared ids missing from the catalogue (a test keeps this empty for scenario files).
    pub uncatalogued: Vec<Uncatalogued>,
}

impl Matrix {
    /// Builds the matrix for every catalogued requirement and every backend that appears in
    /// `coverage`.
    pub fn build(catalogue: &Catalogue, coverage: &[Coverage]) -> Matrix {
        let backends: BTreeSet<&str> = coverage.iter().map(|c| c.backend.as_str()).collect();
        // (requirement, backend) -> (passing sources, failures)
        type Seen = (BTreeSet<String>, BTreeSet<Failure>);
        let mut seen: BTreeMap<(&str, &str), Seen> = BTreeMap::new();
        let mut uncatalogued = BTreeSet::new();
        let mut backend_summaries: BTreeMap<String, BackendSummary> = backends
            .iter()
            .map(|b| (b.to_string(), BackendSummary::default()))
            .collect();
        // (backend, source) -> whether any of its rows failed
        let mut sources: BTreeMap<(&str, &str), bool> = BTreeMap::new();
        for row in coverage {
            let failing = sources
                .entry((row.backend.as_str(), row.source.as_str()))
                .or_default();
            *failing |= row.verdict != Verdict::Pass;
            for id in &row.requirements {
                if catalogue.get(id).is_none() {
                    uncatalogued.insert(Uncatalogued {
                        source: row.source.clone(),
                        id: id.clone(),
                    });
                    continue;
                }
                let entry = seen.entry((id.as_str(), row.backend.as_str())).or_default();
                match &row.verdict {
                    Verdict::Pass => {
                        entry.0.insert(row.source.clone());
                    }
                    Verdict::Fail { finding } => {
                        entry.1.insert(Failure {
                            source: row.source.clone(),
                            finding: finding.clone(),
                        });
                    }
                }
            }
        }
        for ((backend, _), failing) in sources {
            if let Some(summary) = backend_summaries.get_mut(backend) {
                summary.sources += 1;
                summary.sources_failing += usize::from(failing);
            }
        }
        let mut rows = Vec::new();
        let mut musts_covered = 0;
        let mut musts_not_covered = Vec::new();
        let mut covered = 0;
        for requirement in catalogue.requirements() {
            let mut results = BTreeMap::new();
            let mut anywhere = false;
            for &backend in &backends {
                let cell = match seen.remove(&(requirement.id.as_str(), backend)) {
                    None => Cell::NotCovered,
                    Some((passing, failures)) if failures.is_empty() => Cell::Pass {
                        sources: passing.into_iter().collect(),
                    },
                    Some((passing, failures)) => {
                        // A source that failed is not also listed as passing (a scenario
                        // that passes but records a known finding gives both rows).
                        let failed: BTreeSet<&String> =
                            failures.iter().map(|f| &f.source).collect();
                        Cell::Fail {
                            passing: passing
                                .iter()
                                .filter(|s| !failed.contains(s))
                                .cloned()
                                .collect(),
                            failures: failures.into_iter().collect(),
                        }
                    }
                };
                anywhere |= cell != Cell::NotCovered;
                if let Some(summary) = backend_summaries.get_mut(backend) {
                    let must = requirement.is_rfc9293_must();
                    match cell {
                        Cell::Pass { .. } => {
                            summary.pass += 1;
                            summary.must_pass += usize::from(must);
                        }
                        Cell::Fail { .. } => {
                            summary.fail += 1;
                            summary.must_fail += usize::from(must);
                        }
                        Cell::NotCovered => summary.not_covered += 1,
                    }
                }
                results.insert(backend.to_string(), cell);
            }
            covered += usize::from(anywhere);
            if requirement.is_rfc9293_must() {
                if anywhere {
                    musts_covered += 1;
                } else {
                    musts_not_covered.push(requirement.id.clone());
                }
            }
            rows.push(Row {
                id: requirement.id.clone(),
                kind: requirement.kind,
                section: requirement.section.clone(),
                summary: requirement.summary.clone(),
                results,
            });
        }
        Matrix {
            backends: backends.iter().map(|b| b.to_string()).collect(),
            summary: Summary {
                rfc9293_musts: catalogue.rfc9293_musts().count(),
                rfc9293_musts_covered: musts_covered,
                rfc9293_musts_not_covered: musts_not_covered,
                requirements: catalogue.requirements().len(),
                requirements_covered: covered,
                backends: backend_summaries,
            },
            rows,
            uncatalogued: uncatalogued.into_iter().collect(),
        }
    }

    /// The row of one requirement.
    pub fn row(&self, id: &str) -> Option<&Row> {
        self.rows.iter().find(|r| r.id == id)
    }

    /// The matrix as pretty JSON, with a final newline.
    pub fn render_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).unwrap_or_else(|e| {
            // Serializing plain strings, numbers and maps with string keys cannot fail; say so
            // in the output rather than panicking if it ever does.
            format!("{{\"error\": \"cannot serialize the matrix: {e}\"}}")
        });
        text.push('\n');
        text
    }

    /// The headline figures in a few lines of text, for the terminal.
    pub fn render_summary(&self) -> String {
        let s = &self.summary;
        let mut out = format!(
            "RFC 9293 MUSTs covered: {} of {} (target: 50 of {RFC9293_MUSTS})\nrequirements covered: {} of {}\n",
            s.rfc9293_musts_covered, s.rfc9293_musts, s.requirements_covered, s.requirements
        );
        for (backend, b) in &s.backends {
            out.push_str(&format!(
                "{backend}: {} pass, {} fail, {} not covered ({} MUSTs pass, {} fail); {} sources, {} failing or with a known finding\n",
                b.pass, b.fail, b.not_covered, b.must_pass, b.must_fail, b.sources, b.sources_failing
            ));
        }
        out
    }

    /// The matrix as Markdown: a summary, one table per RFC, then every failure with its
    /// finding.
    pub fn render_markdown(&self, catalogue: &Catalogue) -> String {
        let mut out = String::new();
        out.push_str("<!-- Generated by `cargo xtask conformance`; do not edit. -->\n\n");
        out.push_str("# Conformance matrix\n\n");
        out.push_str(
            "Each catalogued requirement (crates/scenario/src/requirements.toml) by backend: **pass** when \
             every scenario or script that exercises it passes there, **fail** when one of them \
             fails or records a known finding against it, and a dash when nothing covers it yet.\n\n",
        );
        out.push_str("## Summary\n\n");
        let s = &self.summary;
        out.push_str(&format!(
            "- RFC 9293 MUSTs covered by at least one scenario or script: **{} of {}**\n",
            s.rfc9293_musts_covered, s.rfc9293_musts
        ));
        out.push_str(&format!(
            "- Catalogued requirements covered: {} of {}\n\n",
            s.requirements_covered, s.requirements
        ));
        if !self.backends.is_empty() {
            out.push_str("| Backend | Pass | Fail | Not covered | MUSTs pass | MUSTs fail | Sources | Failing or with a finding |\n");
            out.push_str("|---|---|---|---|---|---|---|---|\n");
            for (backend, b) in &s.backends {
                out.push_str(&format!(
                    "| {backend} | {} | {} | {} | {} | {} | {} | {} |\n",
                    b.pass,
                    b.fail,
                    b.not_covered,
                    b.must_pass,
                    b.must_fail,
                    b.sources,
                    b.sources_failing
                ));
            }
            out.push('\n');
        }
        if !s.rfc9293_musts_not_covered.is_empty() {
            let names: Vec<&str> = s
                .rfc9293_musts_not_covered
                .iter()
                .map(|id| id.trim_start_matches("rfc9293:"))
                .collect();
            out.push_str(&format!(
                "RFC 9293 MUSTs not covered yet: {}.\n\n",
                names.join(", ")
            ));
        }
        for rfc in catalogue.rfcs() {
            let rows: Vec<&Row> = self
                .rows
                .iter()
                .filter(|r| r.id.split(':').next() == Some(rfc.id.as_str()))
                .collect();
            if rows.is_empty() {
                continue;
            }
            out.push_str(&format!(
                "## {}: {}\n\n",
                rfc.id.replacen("rfc", "RFC ", 1),
                rfc.title
            ));
            out.push_str("| Requirement | Kind | Section | Summary |");
            for backend in &self.backends {
                out.push_str(&format!(" {backend} |"));
            }
            out.push_str(" Covered by |\n|---|---|---|---|");
            for _ in &self.backends {
                out.push_str("---|");
            }
            out.push_str("---|\n");
            for row in rows {
                out.push_str(&format!(
                    "| `{}` | {} | {} | {} |",
                    row.id,
                    row.kind,
                    cell_text(&row.section),
                    cell_text(&row.summary)
                ));
                let mut sources = BTreeSet::new();
                for backend in &self.backends {
                    let cell = row.results.get(backend).unwrap_or(&Cell::NotCovered);
                    let shown = match cell {
                        Cell::Pass { sources: s } => {
                            sources.extend(s.iter().cloned());
                            "pass"
                        }
                        Cell::Fail { failures, passing } => {
                            sources.extend(passing.iter().cloned());
                            sources.extend(failures.iter().map(|f| f.source.clone()));
                            "**fail**"
                        }
                        Cell::NotCovered => "–",
                    };
                    out.push_str(&format!(" {shown} |"));
                }
                let sources: Vec<String> = sources.into_iter().collect();
                out.push_str(&format!(" {} |\n", cell_text(&sources.join(", "))));
            }
            out.push('\n');
        }
        let failures: Vec<(&Row, &String, &Failure)> = self
            .rows
            .iter()
            .flat_map(|row| {
                row.results
                    .iter()
                    .flat_map(move |(backend, cell)| match cell {
                        Cell::Fail { failures, .. } => failures
                            .iter()
                            .map(|f| (row, backend, f))
                            .collect::<Vec<_>>(),
                        _ => Vec::new(),
                    })
            })
            .collect();
        if !failures.is_empty() {
            out.push_str("## Failures and findings\n\n");
            for (row, backend, failure) in failures {
                out.push_str(&format!(
                    "- `{}` on {backend}, {}:\n\n",
                    row.id, failure.source
                ));
                out.push_str(&fenced(&failure.finding));
            }
        }
        if !self.uncatalogued.is_empty() {
            out.push_str("## Requirement ids missing from the catalogue\n\n");
            for u in &self.uncatalogued {
                out.push_str(&format!("- `{}`, declared by {}\n", u.id, u.source));
            }
            out.push('\n');
        }
        out
    }
}

/// Text safe inside a Markdown table cell: one line, pipes escaped.
fn cell_text(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('|', "\\|")
        .replace(['\n', '\r'], " ")
}

/// An indented fenced block holding `text` verbatim, fenced with more backticks than it
/// contains in a row.
fn fenced(text: &str) -> String {
    let mut longest = 0;
    let mut run = 0;
    for c in text.chars() {
        run = if c == '`' { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    let fence = "`".repeat(longest.max(2) + 1);
    let mut out = format!("  {fence}text\n");
    for line in text.lines() {
        out.push_str("  ");
        out.push_str(line);
        out.push('\n');
    }
    out.push_str(&format!("  {fence}\n\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalogue() -> &'static Catalogue {
        match Catalogue::builtin() {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        }
    }

    fn row(source: &str, backend: &str, requirements: &[&str], verdict: Verdict) -> Coverage {
        Coverage {
            source: source.to_string(),
            backend: backend.to_string(),
            requirements: requirements.iter().map(|r| r.to_string()).collect(),
            verdict,
        }
    }

    fn fail(finding: &str) -> Verdict {
        Verdict::Fail {
            finding: finding.to_string(),
        }
    }

    fn sample() -> Vec<Coverage> {
        vec![
            row(
                "scenario tcp/handshake",
                "smoltcp",
                &["rfc9293:MUST-14", "rfc9293:3.5"],
                Verdict::Pass,
            ),
            row(
                "scenario tcp/handshake",
                "lwip",
                &["rfc9293:MUST-14", "rfc9293:3.5"],
                fail("expected 1 SYN, saw 2"),
            ),
            row(
                "script tcp/mss",
                "lwip",
                &["rfc9293:MUST-14", "rfc9293:MUST-16"],
                Verdict::Pass,
            ),
            row(
                "scenario tcp/bulk",
                "smoltcp",
                &["rfc9293:MUST-2", "rfc9999:1"],
                Verdict::Pass,
            ),
        ]
    }

    #[test]
    fn cells_are_pass_fail_or_not_covered_per_backend() {
        let matrix = Matrix::build(catalogue(), &sample());
        assert_eq!(matrix.backends, ["lwip", "smoltcp"]);
        let mss = matrix.row("rfc9293:MUST-14").map(|r| r.results.clone());
        let mss = mss.unwrap_or_default();
        assert_eq!(
            mss.get("smoltcp"),
            Some(&Cell::Pass {
                sources: vec!["scenario tcp/handshake".to_string()]
            })
        );
        assert_eq!(
            mss.get("lwip"),
            Some(&Cell::Fail {
                failures: vec![Failure {
                    source: "scenario tcp/handshake".to_string(),
                    finding: "expected 1 SYN, saw 2".to_string(),
                }],
                passing: vec!["script tcp/mss".to_string()],
            })
        );
        let effective = matrix.row("rfc9293:MUST-16").map(|r| r.results.clone());
        let effective = effective.unwrap_or_default();
        assert_eq!(effective.get("smoltcp"), Some(&Cell::NotCovered));
        assert_eq!(effective.get("lwip").map(Cell::label), Some("pass"));
        let untouched = matrix.row("rfc9293:MUST-69").map(|r| r.results.clone());
        assert!(untouched
            .unwrap_or_default()
            .values()
            .all(|c| *c == Cell::NotCovered));
    }

    #[test]
    fn the_summary_counts_musts_and_cells_per_backend() {
        let matrix = Matrix::build(catalogue(), &sample());
        let s = &matrix.summary;
        assert_eq!(s.rfc9293_musts, 69);
        assert_eq!(s.rfc9293_musts_covered, 3);
        assert_eq!(s.rfc9293_musts_not_covered.len(), 66);
        assert!(!s
            .rfc9293_musts_not_covered
            .contains(&"rfc9293:MUST-16".to_string()));
        assert_eq!(s.requirements_covered, 4);
        let lwip = s.backends.get("lwip").cloned().unwrap_or_default();
        assert_eq!(
            (lwip.pass, lwip.fail, lwip.must_pass, lwip.must_fail),
            (1, 2, 1, 1)
        );
        assert_eq!((lwip.sources, lwip.sources_failing), (2, 1));
        let smoltcp_sources = s
            .backends
            .get("smoltcp")
            .map(|b| (b.sources, b.sources_failing));
        assert_eq!(smoltcp_sources, Some((2, 0)));
        assert_eq!(lwip.pass + lwip.fail + lwip.not_covered, s.requirements);
        let smoltcp = s.backends.get("smoltcp").cloned().unwrap_or_default();
        assert_eq!((smoltcp.pass, smoltcp.fail, smoltcp.must_pass), (3, 0, 2));
        assert_eq!(
            matrix.uncatalogued,
            [Uncatalogued {
                source: "scenario tcp/bulk".to_string(),
                id: "rfc9999:1".to_string()
            }]
        );
    }

    #[test]
    fn a_passing_source_with_a_known_finding_fails_only_the_requirement_it_names() {
        let rows = vec![
            row(
                "scenario tcp/timeout",
                "smoltcp",
                &["rfc9293:MUST-20"],
                Verdict::Pass,
            ),
            row(
                "scenario tcp/timeout",
                "smoltcp",
                &["rfc9293:3.10.8"],
                fail("known finding: tcp-ack-beyond-sent"),
            ),
        ];
        let matrix = Matrix::build(catalogue(), &rows);
        let cell = |id: &str| {
            matrix
                .row(id)
                .and_then(|r| r.results.get("smoltcp").cloned())
        };
        assert_eq!(
            cell("rfc9293:MUST-20").as_ref().map(Cell::label),
            Some("pass")
        );
        assert_eq!(
            cell("rfc9293:3.10.8"),
            Some(Cell::Fail {
                failures: vec![Failure {
                    source: "scenario tcp/timeout".to_string(),
                    finding: "known finding: tcp-ack-beyond-sent".to_string()
                }],
                passing: Vec::new(),
            })
        );
        let smoltcp = matrix
            .summary
            .backends
            .get("smoltcp")
            .cloned()
            .unwrap_or_default();
        assert_eq!((smoltcp.sources, smoltcp.sources_failing), (1, 1));
    }

    #[test]
    fn rendering_is_deterministic_whatever_the_row_order() {
        let mut reversed = sample();
        reversed.reverse();
        let a = Matrix::build(catalogue(), &sample());
        let b = Matrix::build(catalogue(), &reversed);
        assert_eq!(
            a.render_markdown(catalogue()),
            b.render_markdown(catalogue())
        );
        assert_eq!(a.render_json(), b.render_json());
    }

    #[test]
    fn markdown_shows_cells_sources_findings_and_unknown_ids() {
        let mut rows = sample();
        rows.push(row(
            "script tcp/pipes",
            "smoltcp",
            &["rfc9293:MUST-7"],
            fail("a | b\n```\nnested fence"),
        ));
        let matrix = Matrix::build(catalogue(), &rows);
        let md = matrix.render_markdown(catalogue());
        assert!(md.starts_with("<!-- Generated by `cargo xtask conformance`"));
        assert!(md.contains("**4 of 69**"), "{md}");
        assert!(
            md.contains("| Requirement | Kind | Section | Summary | lwip | smoltcp | Covered by |")
        );
        assert!(md.contains("| `rfc9293:MUST-14` | MUST | 3.7.1 |"), "{md}");
        assert!(
            md.contains("| **fail** | pass | scenario tcp/handshake, script tcp/mss |\n"),
            "{md}"
        );
        assert!(md.contains("## RFC 6298: Computing TCP's Retransmission Timer"));
        assert!(md.contains("- `rfc9293:MUST-14` on lwip, scenario tcp/handshake:\n\n  ```text\n  expected 1 SYN, saw 2\n  ```\n"), "{md}");
        assert!(
            md.contains("  ````text\n  a | b\n  ```\n  nested fence\n  ````\n"),
            "{md}"
        );
        assert!(md.contains("- `rfc9999:1`, declared by scenario tcp/bulk"));
        // Every table row has as many cells as its header.
        for line in md.lines().filter(|l| l.starts_with("| `")) {
            let cells = line.matches(" |").count();
            assert_eq!(cells, 7, "{line}");
        }
    }

    #[test]
    fn json_carries_summary_rows_and_tagged_cells() {
        let matrix = Matrix::build(catalogue(), &sample());
        let value: serde_json::Value = match serde_json::from_str(&matrix.render_json()) {
            Ok(v) => v,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(value["summary"]["rfc9293_musts_covered"], 3);
        assert_eq!(value["backends"], serde_json::json!(["lwip", "smoltcp"]));
        let first = &value["rows"][0];
        assert_eq!(first["id"], "rfc9293:MUST-1");
        assert_eq!(first["kind"], "MUST");
        assert_eq!(first["results"]["smoltcp"]["status"], "not_covered");
        let mss = value["rows"]
            .as_array()
            .and_then(|rows| rows.iter().find(|r| r["id"] == "rfc9293:MUST-14"))
            .cloned()
            .unwrap_or_default();
        assert_eq!(mss["results"]["lwip"]["status"], "fail");
        assert_eq!(
            mss["results"]["lwip"]["failures"][0]["finding"],
            "expected 1 SYN, saw 2"
        );
        let verdict = serde_json::to_value(fail("x")).unwrap_or_default();
        assert_eq!(
            verdict,
            serde_json::json!({"verdict": "fail", "finding": "x"})
        );
    }

    #[test]
    fn no_coverage_gives_an_empty_matrix_not_a_panic() {
        let matrix = Matrix::build(catalogue(), &[]);
        assert!(matrix.backends.is_empty());
        assert_eq!(matrix.summary.rfc9293_musts_covered, 0);
        let md = matrix.render_markdown(catalogue());
        assert!(md.contains("**0 of 69**"));
        assert!(!md.contains("## Failures"));
    }
}
