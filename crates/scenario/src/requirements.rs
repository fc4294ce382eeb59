//! The RFC requirement catalogue (`requirements.toml`, embedded): typed loading, validation and lookup by id.
//!
//! Scenarios and scripts declare the requirement ids they exercise; every id they use must be
//! in this catalogue. RFC 9293's requirements keep the RFC's own labels (`rfc9293:MUST-7`);
//! the other RFCs are catalogued by section (`rfc6298:5.5`) or, where the RFC has no numbered
//! sections, by a short name (`rfc792:echo`).

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

/// The catalogue's text, as checked in next to this file.
pub const CATALOGUE_TOML: &str = include_str!("requirements.toml");

/// How many MUSTs RFC 9293 numbers (MUST-1 ..= MUST-69).
pub const RFC9293_MUSTS: u32 = 69;

/// How strong a requirement is, as its RFC words it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Kind {
    #[serde(rename = "MUST")]
    Must,
    #[serde(rename = "SHLD")]
    Should,
    #[serde(rename = "REC")]
    Recommended,
    #[serde(rename = "MAY")]
    May,
    /// Behaviour a section describes without a numbered requirement.
    #[serde(rename = "section")]
    Section,
}

impl Kind {
    /// The label as RFC 9293 writes it (`MUST`, `SHLD`, `REC`, `MAY`), or `section`.
    pub fn label(self) -> &'static str {
        match self {
            Kind::Must => "MUST",
            Kind::Should => "SHLD",
            Kind::Recommended => "REC",
            Kind::May => "MAY",
            Kind::Section => "section",
        }
    }

    fn from_label(label: &str) -> Option<Kind> {
        [
            Kind::Must,
            Kind::Should,
            Kind::Recommended,
            Kind::May,
            Kind::Section,
        ]
        .into_iter()
        .find(|k| k.label() == label)
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

/// One RFC the catalogue draws from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rfc {
    /// `rfc9293`.
    pub id: String,
    pub title: String,
}

/// One requirement.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Requirement {
    /// `rfc9293:MUST-7`, `rfc6298:5.5`, `rfc792:echo`.
    pub id: String,
    pub kind: Kind,
    /// Where the RFC states it: a section number, or a heading for RFCs without numbers.
    pub section: String,
    /// One line, in our own words.
    pub summary: String,
}

impl Requirement {
    /// The RFC part of the id: `rfc9293`.
    pub fn rfc(&self) -> &str {
        self.id.split_once(':').map_or(&self.id[..], |(rfc, _)| rfc)
    }

    /// True for RFC 9293's MUST-1 ..= MUST-69.
    pub fn is_rfc9293_must(&self) -> bool {
        self.kind == Kind::Must && self.rfc() == "rfc9293"
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogueFile {
    #[serde(default)]
    rfc: Vec<Rfc>,
    #[serde(default)]
    requirement: Vec<Requirement>,
}

/// A catalogue that cannot be used, with every problem found (not just the first).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the requirement catalogue is invalid:\n  {}", problems.join("\n  "))]
pub struct CatalogueError {
    pub problems: Vec<String>,
}

/// The validated catalogue: RFCs and requirements in file order, with an index by id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Catalogue {
    rfcs: Vec<Rfc>,
    requirements: Vec<Requirement>,
    index: BTreeMap<String, usize>,
}

impl Catalogue {
    /// The catalogue checked in at `crates/scenario/src/requirements.toml`, parsed and validated once,
    /// including the rule that RFC 9293's 69 MUSTs are all there.
    pub fn builtin() -> Result<&'static Catalogue, CatalogueError> {
        static BUILTIN: OnceLock<Result<Catalogue, CatalogueError>> = OnceLock::new();
        BUILTIN
            .get_or_init(|| {
                let catalogue = Catalogue::parse(CATALOGUE_TOML)?;
                catalogue.check_rfc9293_complete()?;
                Ok(catalogue)
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// Parses and validates a catalogue: well-formed ids that match their kind and section,
    /// no duplicates, every RFC declared, numbered labels without gaps, one-line summaries.
    pub fn parse(text: &str) -> Result<Catalogue, CatalogueError> {
        let file: CatalogueFile = toml::from_str(text).map_err(|e| CatalogueError {
            problems: vec![e.to_string().trim_end().to_string()],
        })?;
        let mut problems = Vec::new();
        let mut rfc_ids = BTreeMap::new();
        for rfc in &file.rfc {
            if !is_rfc_name(&rfc.id) {
                problems.push(format!("`{}` is not an RFC id like `rfc9293`", rfc.id));
            }
            if rfc_ids.insert(rfc.id.as_str(), ()).is_some() {
                problems.push(format!("RFC `{}` is declared twice", rfc.id));
            }
            if rfc.title.trim().is_empty() {
                problems.push(format!("RFC `{}` has no title", rfc.id));
            }
        }
        let mut index = BTreeMap::new();
        // Numbers used per (rfc, kind), to find gaps in labelled requirements.
        let mut numbers: BTreeMap<(String, Kind), Vec<u32>> = BTreeMap::new();
        for (i, r) in file.requirement.iter().enumerate() {
            if index.insert(r.id.clone(), i).is_some() {
                problems.push(format!("`{}` is catalogued twice", r.id));
            }
            match check_id(r) {
                Ok(Some(n)) => numbers
                    .entry((r.rfc().to_string(), r.kind))
                    .or_default()
                    .push(n),
                Ok(None) => {}
                Err(problem) => problems.push(format!("`{}`: {problem}", r.id)),
            }
            if is_rfc_name(r.rfc()) && !rfc_ids.contains_key(r.rfc()) {
                problems.push(format!(
                    "`{}`: {} is not declared in an [[rfc]] table",
                    r.id,
                    r.rfc()
                ));
            }
            if r.section.trim().is_empty() {
                problems.push(format!("`{}` has no section", r.id));
            }
            if r.summary.trim().is_empty() || r.summary.contains('\n') {
                problems.push(format!(
                    "`{}`: the summary must be one non-empty line",
                    r.id
                ));
            }
        }
        for ((rfc, kind), mut used) in numbers {
            used.sort_unstable();
            let missing: Vec<String> = (1..=used.last().copied().unwrap_or(0))
                .filter(|n| used.binary_search(n).is_err())
                .map(|n| format!("{rfc}:{kind}-{n}"))
                .collect();
            if !missing.is_empty() {
                problems.push(format!(
                    "{rfc}'s {kind} labels have gaps: {} missing",
                    missing.join(", ")
                ));
            }
        }
        if !problems.is_empty() {
            return Err(CatalogueError { problems });
        }
        Ok(Catalogue {
            rfcs: file.rfc,
            requirements: file.requirement,
            index,
        })
    }

    /// Fails unless RFC 9293's MUSTs are exactly MUST-1 ..= MUST-69.
    pub fn check_rfc9293_complete(&self) -> Result<(), CatalogueError> {
        let mut numbers: Vec<u32> = self
            .rfc9293_musts()
            .filter_map(|r| label_number(r, "MUST"))
            .collect();
        numbers.sort_unstable();
        let expected: Vec<u32> = (1..=RFC9293_MUSTS).collect();
        if numbers == expected {
            return Ok(());
        }
        let missing: Vec<String> = expected
            .iter()
            .filter(|n| numbers.binary_search(n).is_err())
            .map(|n| format!("MUST-{n}"))
            .collect();
        let extra: Vec<String> = numbers
            .iter()
            .filter(|n| !expected.contains(n))
            .map(|n| format!("MUST-{n}"))
            .collect();
        Err(CatalogueError {
            problems: vec![format!(
                "RFC 9293 numbers MUST-1 ..= MUST-{RFC9293_MUSTS}; the catalogue has {} of them (missing: {}; beyond the range: {})",
                numbers.len(),
                if missing.is_empty() { "none".to_string() } else { missing.join(", ") },
                if extra.is_empty() { "none".to_string() } else { extra.join(", ") },
            )],
        })
    }

    /// The requirement with this id.
    pub fn get(&self, id: &str) -> Option<&Requirement> {
        self.index.get(id).map(|&i| &self.requirements[i])
    }

    /// Every requirement, in catalogue order (RFC 9293 first, by kind and number).
    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    /// The RFCs the catalogue draws from, in catalogue order.
    pub fn rfcs(&self) -> &[Rfc] {
        &self.rfcs
    }

    /// RFC 9293's MUST-1 ..= MUST-69, in catalogue order.
    pub fn rfc9293_musts(&self) -> impl Iterator<Item = &Requirement> {
        self.requirements.iter().filter(|r| r.is_rfc9293_must())
    }

    /// Why `id` cannot be used: `None` when it is catalogued, otherwise a sentence naming it,
    /// with the closest catalogued id when one is near.
    pub fn unknown(&self, id: &str) -> Option<String> {
        if self.get(id).is_some() {
            return None;
        }
        let hint = sim::config::did_you_mean(id, self.index.keys().map(String::as_str));
        Some(format!(
            "requirement `{id}` is not in the catalogue (crates/scenario/src/requirements.toml){hint}"
        ))
    }
}

fn is_rfc_name(text: &str) -> bool {
    text.strip_prefix("rfc").is_some_and(|n| {
        !n.is_empty() && !n.starts_with('0') && n.bytes().all(|b| b.is_ascii_digit())
    })
}

/// `3`, `3.10.7.4`: dotted numbers without leading zeros.
fn is_section_number(text: &str) -> bool {
    !text.is_empty()
        && text.split('.').all(|part| {
            !part.is_empty()
                && part.bytes().all(|b| b.is_ascii_digit())
                && (part == "0" || !part.starts_with('0'))
        })
}

/// `echo`, `destination-unreachable`.
fn is_name(text: &str) -> bool {
    !text.is_empty()
        && text
            .split('-')
            .all(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_lowercase()))
}

/// The n of a `<label>-n` id, like 7 for `rfc9293:MUST-7`.
fn label_number(r: &Requirement, label: &str) -> Option<u32> {
    let (_, rest) = r.id.split_once(':')?;
    let n = rest.strip_prefix(label)?.strip_prefix('-')?;
    if n.starts_with('0') || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    n.parse().ok()
}

/// Checks that an id is well formed and agrees with its kind and section; returns the label
/// number of RFC 9293's labelled requirements.
fn check_id(r: &Requirement) -> Result<Option<u32>, String> {
    let Some((rfc, rest)) = r.id.split_once(':') else {
        return Err("an id is `rfcNNNN:<label or section>`, like `rfc9293:MUST-7`".to_string());
    };
    if !is_rfc_name(rfc) {
        return Err(format!("`{rfc}` is not an RFC id like `rfc9293`"));
    }
    if rfc == "rfc9293" && r.kind != Kind::Section {
        let label = rest.split_once('-').map(|(label, _)| label);
        if label.and_then(Kind::from_label) != Some(r.kind) {
            return Err(format!(
                "an RFC 9293 {} is labelled `rfc9293:{}-n`",
                r.kind,
                r.kind.label()
            ));
        }
        return match label_number(r, r.kind.label()) {
            Some(n) if n > 0 => Ok(Some(n)),
            _ => Err("the label number is a positive integer without leading zeros".to_string()),
        };
    }
    if is_section_number(rest) {
        if rest != r.section {
            return Err(format!(
                "the id names section {rest} but the section field says {}",
                r.section
            ));
        }
        return Ok(None);
    }
    if rfc == "rfc9293" {
        return Err("an RFC 9293 section entry is `rfc9293:<section number>`".to_string());
    }
    if is_name(rest) {
        return Ok(None);
    }
    Err(format!(
        "`{rest}` is neither a section number (`5.5`) nor a lowercase name (`destination-unreachable`)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn builtin() -> &'static Catalogue {
        match Catalogue::builtin() {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        }
    }

    const HEADER: &str =
        "[[rfc]]\nid = \"rfc9293\"\ntitle = \"TCP\"\n[[rfc]]\nid = \"rfc792\"\ntitle = \"ICMP\"\n";

    fn entry(id: &str, kind: &str, section: &str) -> String {
        format!(
            "[[requirement]]\nid = \"{id}\"\nkind = \"{kind}\"\nsection = \"{section}\"\nsummary = \"Something.\"\n"
        )
    }

    fn problems(text: &str) -> Vec<String> {
        match Catalogue::parse(text) {
            Ok(_) => Vec::new(),
            Err(e) => e.problems,
        }
    }

    #[test]
    fn the_builtin_catalogue_is_valid_and_has_rfc9293s_69_musts() {
        let catalogue = builtin();
        let musts: Vec<&str> = catalogue.rfc9293_musts().map(|r| r.id.as_str()).collect();
        assert_eq!(musts.len(), 69);
        assert_eq!(musts.first(), Some(&"rfc9293:MUST-1"));
        assert_eq!(musts.last(), Some(&"rfc9293:MUST-69"));
        let shoulds = catalogue
            .requirements()
            .iter()
            .filter(|r| r.rfc() == "rfc9293" && r.kind == Kind::Should)
            .count();
        let mays = catalogue
            .requirements()
            .iter()
            .filter(|r| r.rfc() == "rfc9293" && r.kind == Kind::May)
            .count();
        assert_eq!((shoulds, mays), (31, 18));
    }

    #[test]
    fn rfc9293_labels_sit_in_the_sections_the_rfc_states_them() {
        let catalogue = builtin();
        for (id, section) in [
            ("rfc9293:MUST-2", "3.1"),
            ("rfc9293:MUST-3", "3.1"),
            ("rfc9293:MUST-13", "3.6.1"),
            ("rfc9293:MUST-14", "3.7.1"),
            ("rfc9293:MUST-15", "3.7.1"),
            ("rfc9293:MUST-20", "3.8.3"),
            ("rfc9293:MUST-36", "3.8.6.1"),
            ("rfc9293:MUST-58", "3.10.7.4"),
            ("rfc9293:MUST-64", "3.2"),
            ("rfc9293:MUST-66", "3.4"),
            ("rfc9293:MUST-69", "3.1"),
            ("rfc9293:SHLD-31", "3.10.7.4"),
            ("rfc9293:MAY-18", "3.8.2"),
        ] {
            let found = catalogue.get(id).map(|r| r.section.as_str());
            assert_eq!(found, Some(section), "{id}");
        }
    }

    #[test]
    fn lookup_finds_catalogued_ids_and_suggests_near_misses() {
        let catalogue = builtin();
        let rto = catalogue.get("rfc6298:5.5").map(|r| r.kind);
        assert_eq!(rto, Some(Kind::Must));
        assert_eq!(catalogue.unknown("rfc5961:3.2"), None);
        let typo = catalogue.unknown("rfc9293:MUTS-7").unwrap_or_default();
        assert!(
            typo.contains("`rfc9293:MUTS-7` is not in the catalogue"),
            "{typo}"
        );
        assert!(typo.contains("did you mean `rfc9293:MUST-7`"), "{typo}");
        assert!(catalogue.unknown("rfc9999:1").is_some());
    }

    #[test]
    fn every_catalogued_rfc_has_requirements_and_every_id_its_kind() {
        let catalogue = builtin();
        for rfc in catalogue.rfcs() {
            assert!(
                catalogue.requirements().iter().any(|r| r.rfc() == rfc.id),
                "{} has no requirement",
                rfc.id
            );
        }
        for required in [
            "rfc1122:3.2.2.6",
            "rfc6298:2.1",
            "rfc5961:3.2",
            "rfc5961:4.2",
            "rfc5961:5.2",
            "rfc792:echo",
            "rfc792:destination-unreachable",
            "rfc768:datagram",
            "rfc826:resolution",
        ] {
            assert!(catalogue.get(required).is_some(), "{required} is missing");
        }
    }

    #[test]
    fn a_small_valid_catalogue_parses() {
        let text = format!(
            "{HEADER}{}{}{}",
            entry("rfc9293:MUST-1", "MUST", "3.1"),
            entry("rfc9293:3.5", "section", "3.5"),
            entry("rfc792:echo", "MUST", "Echo")
        );
        let catalogue = Catalogue::parse(&text).map_err(|e| e.to_string());
        let ids: Vec<String> = catalogue
            .map(|c| c.requirements().iter().map(|r| r.id.clone()).collect())
            .unwrap_or_default();
        assert_eq!(ids, ["rfc9293:MUST-1", "rfc9293:3.5", "rfc792:echo"]);
    }

    #[test]
    fn duplicates_gaps_and_malformed_ids_are_all_reported() {
        let text = format!(
            "{HEADER}{}{}{}{}{}{}{}",
            entry("rfc9293:MUST-1", "MUST", "3.1"),
            entry("rfc9293:MUST-1", "MUST", "3.1"),
            entry("rfc9293:MUST-3", "MUST", "3.1"),
            entry("rfc9293:SHLD-2", "MUST", "3.1"),
            entry("rfc792:Echo", "MUST", "Echo"),
            entry("rfc768:datagram", "MUST", "UDP"),
            entry("rfc792:3.1", "section", "3.2"),
        );
        let found = problems(&text);
        let expect = [
            "`rfc9293:MUST-1` is catalogued twice",
            "`rfc9293:SHLD-2`: an RFC 9293 MUST is labelled `rfc9293:MUST-n`",
            "`rfc792:Echo`: `Echo` is neither a section number",
            "`rfc768:datagram`: rfc768 is not declared",
            "`rfc792:3.1`: the id names section 3.1 but the section field says 3.2",
            "rfc9293's MUST labels have gaps: rfc9293:MUST-2 missing",
        ];
        for e in expect {
            assert!(found.iter().any(|p| p.contains(e)), "{e} not in {found:#?}");
        }
        assert_eq!(found.len(), expect.len(), "{found:#?}");
    }

    #[test]
    fn a_catalogue_short_of_rfc9293s_musts_is_rejected() {
        let text = format!("{HEADER}{}", entry("rfc9293:MUST-1", "MUST", "3.1"));
        let catalogue = Catalogue::parse(&text);
        let complete = catalogue.map(|c| c.check_rfc9293_complete());
        let message = match complete {
            Ok(Err(e)) => e.to_string(),
            other => format!("unexpected: {other:?}"),
        };
        assert!(message.contains("the catalogue has 1 of them"), "{message}");
        assert!(message.contains("MUST-69"), "{message}");
    }

    #[test]
    fn bad_toml_and_unknown_fields_are_errors_not_panics() {
        let broken = problems("[[requirement]\nid = ");
        assert_eq!(broken.len(), 1);
        let unknown = problems(&format!(
            "{HEADER}[[requirement]]\nid = \"rfc9293:MUST-1\"\nkind = \"MUST\"\nsection = \"3.1\"\nsummary = \"x\"\nnote = \"y\"\n"
        ));
        assert!(unknown.iter().any(|p| p.contains("note")), "{unknown:?}");
        let kind = problems(&format!(
            "{HEADER}{}",
            entry("rfc9293:MUST-1", "SHALL", "3.1")
        ));
        assert!(kind.iter().any(|p| p.contains("SHALL")), "{kind:?}");
        let multi = problems(&format!(
            "{HEADER}[[requirement]]\nid = \"rfc792:echo\"\nkind = \"MUST\"\nsection = \"Echo\"\nsummary = \"\"\"two\nlines\"\"\"\n"
        ));
        assert_eq!(
            multi,
            ["`rfc792:echo`: the summary must be one non-empty line"]
        );
    }
}
