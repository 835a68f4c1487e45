//! The oracle's report: requests by category, the table of mismatches by field, the legitimate
//! differences applied, timings, kubectl runs, and one line per mismatch.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use crate::compare::{shorten, Tally, FIELDS, RULES};
use crate::corpus::Expect;
use crate::run::{KubectlRun, Sent};

/// How many requests of each kind were sent.
pub(crate) struct Counts {
    /// category → (sent, reached kube-apiserver's handlers, refused before audit)
    by_category: BTreeMap<String, (usize, usize, usize)>,
    /// category → status → how many responses had it
    statuses: BTreeMap<String, BTreeMap<u16, usize>>,
    kubectl_requests: usize,
    kubectl_commands: usize,
    skipped_vectors: Vec<(u64, String)>,
}

impl Counts {
    pub(crate) fn new(
        sent: &[Sent],
        kubectl_requests: usize,
        kubectl: &[KubectlRun],
        skipped_vectors: &[(u64, String)],
    ) -> Self {
        let mut by_category: BTreeMap<String, (usize, usize, usize)> = BTreeMap::new();
        let mut statuses: BTreeMap<String, BTreeMap<u16, usize>> = BTreeMap::new();
        for s in sent {
            *statuses
                .entry(s.entry.category.to_owned())
                .or_default()
                .entry(s.status())
                .or_default() += 1;
            let row = by_category.entry(s.entry.category.to_owned()).or_default();
            row.0 += 1;
            match s.outcome() {
                Expect::RefusedBeforeAudit | Expect::RefusedByProxy => row.2 += 1,
                _ => row.1 += 1,
            }
        }
        Self {
            by_category,
            statuses,
            kubectl_requests,
            kubectl_commands: kubectl.len(),
            skipped_vectors: skipped_vectors.to_vec(),
        }
    }

    /// Requests sent in all (the corpus and kubectl's).
    pub(crate) fn total(&self) -> usize {
        self.by_category.values().map(|r| r.0).sum::<usize>() + self.kubectl_requests
    }
}

/// Everything the report shows.
pub(crate) struct Report<'a> {
    pub(crate) tally: &'a Tally,
    pub(crate) counts: &'a Counts,
    pub(crate) kubectl: &'a [KubectlRun],
    pub(crate) timings: Vec<(&'static str, Duration)>,
}

impl Report<'_> {
    /// The report as Markdown.
    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        let mismatches = self.tally.mismatches.len();
        let _ = writeln!(
            out,
            "# kubescribe oracle: events against kube-apiserver's audit log\n"
        );
        let _ = writeln!(
            out,
            "{} requests through kubescribe-proxy (auth mode) to kube-apiserver v1.37.2; {} mismatch{}.\n",
            self.counts.total(),
            mismatches,
            if mismatches == 1 { "" } else { "es" }
        );

        let _ = writeln!(out, "## Mismatches by field\n");
        let _ = writeln!(out, "| field | compared | mismatched | example |");
        let _ = writeln!(out, "| --- | ---: | ---: | --- |");
        for field in FIELDS {
            let compared = self.tally.compared.get(field).copied().unwrap_or(0);
            let found = self.tally.mismatched(field);
            let example = found
                .first()
                .map(|d| shorten(d, 140).replace('|', "\\|"))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "| {field} | {compared} | {} | {example} |",
                found.len()
            );
        }

        let _ = writeln!(out, "\n## Legitimate differences applied\n");
        let _ = writeln!(out, "| rule | applied | why | example |");
        let _ = writeln!(out, "| --- | ---: | --- | --- |");
        for (rule, why) in RULES {
            let (count, example) = self.tally.applied.get(rule).cloned().unwrap_or_default();
            let _ = writeln!(
                out,
                "| {rule} | {count} | {why} | {} |",
                shorten(&example, 120).replace('|', "\\|")
            );
        }

        let _ = writeln!(out, "\n## Requests by category\n");
        let _ = writeln!(out, "| category | requests | audited (or answered by Go) | refused before audit (by kube-apiserver, or CONNECT by the proxy) | statuses the caller got |");
        let _ = writeln!(out, "| --- | ---: | ---: | ---: | --- |");
        for (category, (sent, audited, refused)) in &self.counts.by_category {
            let statuses = self
                .counts
                .statuses
                .get(category)
                .map(|by_status| {
                    by_status
                        .iter()
                        .map(|(status, n)| format!("{status}×{n}"))
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "| {category} | {sent} | {audited} | {refused} | {statuses} |"
            );
        }
        let _ = writeln!(
            out,
            "| kubectl ({} invocations) | {} | {} | 0 | |",
            self.counts.kubectl_commands,
            self.counts.kubectl_requests,
            self.counts.kubectl_requests
        );
        let _ = writeln!(out, "| **total** | **{}** | | | |", self.counts.total());
        let _ = writeln!(out, "\nVectors confirmed by kube-apiserver (expectations equal to its audit event, or its refusal):\n");
        for (source, (confirmed, sent)) in &self.tally.vectors {
            let _ = writeln!(out, "- `{source}`: {confirmed} of {sent} sent");
        }
        if !self.counts.skipped_vectors.is_empty() {
            let _ = writeln!(out, "\nVectors not sent:");
            for (id, why) in &self.counts.skipped_vectors {
                let _ = writeln!(out, "- #{id}: {why}");
            }
        }

        let _ = writeln!(out, "\n## Timings\n");
        for (what, took) in &self.timings {
            let _ = writeln!(out, "- {what}: {:.1} s", took.as_secs_f64());
        }

        let _ = writeln!(out, "\n## kubectl invocations\n");
        for run in self.kubectl {
            let first_error = run
                .stderr
                .lines()
                .find(|l| !l.trim().is_empty())
                .map(|l| format!(" — {}", shorten(l, 120)))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "- `kubectl {}`: exit {} in {:.1} s{first_error}",
                run.args.join(" "),
                run.code.map_or("signal".to_owned(), |c| c.to_string()),
                run.took.as_secs_f64()
            );
        }

        if mismatches > 0 {
            let _ = writeln!(out, "\n## Mismatches\n");
            for (field, detail) in &self.tally.mismatches {
                let _ = writeln!(out, "- MISMATCH {field}: {detail}");
            }
        }
        out
    }
}
