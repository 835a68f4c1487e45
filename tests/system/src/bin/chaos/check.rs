//! The quiet period (the proxy's spool drains) and the join: what the upstream received, what the
//! callers got and what storage holds, counted.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::time::{Duration, Instant, SystemTime};

use kubescribe_system_tests::client::Failure;
use kubescribe_system_tests::stack::Stack;
use kubescribe_system_tests::upstream::SeenRequest;
use kubescribe_system_tests::Error;

use crate::faults::Faults;
use crate::load::{Policy, Request, Sent, SessionOutcome};
use crate::stored::Stored;

/// kube-sim keeps this many requests; a log this long may have lost its oldest.
const SIM_LOG_CAPACITY: usize = 20_000;
/// The spool must stay empty, and no response record be in flight, this long.
const SETTLED: Duration = Duration::from_secs(3);
/// Examples shown per kind of problem.
const EXAMPLES: usize = 5;

/// The proxy's recorder-client counters at the end of the quiet period.
#[derive(Debug, Default, Clone)]
pub(crate) struct Drain {
    /// How long the spool took to empty (and stay empty).
    pub(crate) took: Duration,
    /// Whether it did, within the limit.
    pub(crate) settled: bool,
    /// Records still in the spool.
    pub(crate) spooled_left: u64,
    /// Response records still being sent.
    pub(crate) responses_in_flight: i64,
    /// Records spooled and redelivered over the run, by kind.
    pub(crate) spooled: BTreeMap<String, u64>,
    pub(crate) redelivered: BTreeMap<String, u64>,
    /// Records dropped (never acknowledged), by `kind/reason`.
    pub(crate) dropped: BTreeMap<String, u64>,
}

impl Drain {
    fn dropped_total(&self) -> u64 {
        self.dropped.values().sum()
    }
}

impl std::fmt::Display for Drain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} left in the spool, {} response records in flight; spooled {:?}, redelivered {:?}, dropped {:?}",
            if self.settled { "drained" } else { "NOT drained" },
            self.spooled_left,
            self.responses_in_flight,
            self.spooled,
            self.redelivered,
            self.dropped
        )
    }
}

/// Waits (up to `limit`) until the spool of every proxy replica is empty and no response record
/// is in flight, and stays so for [`SETTLED`]. The counters are summed over the replicas (those of
/// a replica killed during the run count from its last start).
pub(crate) fn drain(stack: &Stack, limit: Duration) -> Result<Drain, Error> {
    let started = Instant::now();
    let mut quiet_since: Option<Instant> = None;
    loop {
        let metrics = Metrics::parse(&stack.replica_metrics()?.join("\n"));
        let mut drain = Drain {
            took: started.elapsed(),
            spooled_left: metrics.sum("recorder_client_spool_records", &[]) as u64,
            ..Drain::default()
        };
        for kind in ["event", "response"] {
            let label = [("kind", kind)];
            drain.spooled.insert(
                kind.into(),
                metrics.sum("recorder_client_records_spooled_total", &label) as u64,
            );
            drain.redelivered.insert(
                kind.into(),
                metrics.sum("recorder_client_records_redelivered_total", &label) as u64,
            );
        }
        for (labels, value) in metrics.series("recorder_client_records_dropped_total") {
            if value > 0.0 {
                let name = format!(
                    "{}/{}",
                    labels.get("kind").map_or("?", String::as_str),
                    labels.get("reason").map_or("?", String::as_str)
                );
                *drain.dropped.entry(name).or_default() += value as u64;
            }
        }
        let response = [("kind", "response")];
        drain.responses_in_flight = (metrics
            .sum("recorder_client_records_attempted_total", &response)
            - metrics.sum("recorder_client_records_delivered_total", &response)
            - metrics.sum("recorder_client_records_spooled_total", &response)
            - metrics.sum("recorder_client_records_dropped_total", &response))
            as i64;
        let quiet = drain.spooled_left == 0 && drain.responses_in_flight <= 0;
        match (quiet, quiet_since) {
            (true, Some(since)) if since.elapsed() >= SETTLED => {
                drain.settled = true;
                drain.took = since - started;
                return Ok(drain);
            }
            (true, None) => quiet_since = Some(Instant::now()),
            (false, _) => quiet_since = None,
            _ => {}
        }
        if started.elapsed() > limit {
            return Ok(drain);
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Prometheus text, by metric name: each series' labels and value.
struct Metrics(Vec<(String, HashMap<String, String>, f64)>);

impl Metrics {
    fn parse(text: &str) -> Self {
        let mut series = Vec::new();
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        {
            let Some((head, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(value) = value.parse::<f64>() else {
                continue;
            };
            let (name, labels) = match head.split_once('{') {
                Some((name, rest)) => (name, rest.trim_end_matches('}')),
                None => (head, ""),
            };
            let labels = labels
                .split(',')
                .filter_map(|pair| pair.split_once('='))
                .map(|(k, v)| (k.trim().to_owned(), v.trim().trim_matches('"').to_owned()))
                .collect();
            series.push((name.to_owned(), labels, value));
        }
        Metrics(series)
    }

    /// Series whose name ends with `suffix` (the registry may add a prefix).
    fn series(&self, suffix: &str) -> impl Iterator<Item = (&HashMap<String, String>, f64)> {
        let suffix = suffix.to_owned();
        self.0
            .iter()
            .filter(move |(name, _, _)| name.ends_with(&suffix))
            .map(|(_, labels, value)| (labels, *value))
    }

    /// The sum of the series named `…suffix` that carry every label in `labels`.
    fn sum(&self, suffix: &str, labels: &[(&str, &str)]) -> f64 {
        self.series(suffix)
            .filter(|(have, _)| {
                labels
                    .iter()
                    .all(|(k, v)| have.get(*k).is_some_and(|h| h == v))
            })
            .map(|(_, value)| value)
            .sum()
    }
}

/// What one policy's caller did and got.
#[derive(Debug, Default)]
pub(crate) struct PolicyTally {
    requests: usize,
    forwarded: usize,
    refused: usize,
    slowest_refusal: Duration,
    no_reply: usize,
    sessions_ran: usize,
    sessions_failed: usize,
    /// Sessions that ran to their end and whose output is in a stored cast.
    sessions_ran_recorded: usize,
    upstream_received: usize,
}

/// The four counts, their examples, and what else must hold.
#[derive(Debug, Default)]
pub(crate) struct Counts {
    tallies: BTreeMap<Policy, PolicyTally>,
    lost_events: Vec<String>,
    lost_responses: Vec<String>,
    closed_without_event: Vec<String>,
    open_refused: Vec<String>,
    duplicates: Vec<(String, usize)>,
    hung: Vec<String>,
    /// Fail-closed exec sessions that ran to their end whose output is in no stored cast.
    closed_sessions_without_cast: Vec<String>,
    drain: Drain,
    other: Vec<String>,
    stored_summary: String,
    /// Requests and sessions in flight through a proxy replica when it was killed: they may
    /// fail, and a response record may die with the replica (not counted against the proxy).
    died_with_replica: usize,
    /// Of those, requests that reached the upstream and whose response record is not stored.
    responses_died_with_replica: usize,
}

impl Counts {
    /// Acknowledged records (events and response records) that storage does not hold.
    pub(crate) fn lost_acked(&self) -> usize {
        self.lost_events.len() + self.lost_responses.len()
    }

    /// Fail-closed requests the upstream received whose event is not stored.
    pub(crate) fn closed_forwarded_without_event(&self) -> usize {
        self.closed_without_event.len()
    }

    /// Fail-open requests and sessions that did not go through.
    pub(crate) fn open_refused(&self) -> usize {
        self.open_refused.len()
    }

    /// Stored copies beyond the first, by idempotency key.
    pub(crate) fn duplicates(&self) -> usize {
        self.duplicates.iter().map(|(_, n)| n - 1).sum()
    }

    /// Fail-closed exec sessions that ran to their end with their output in no stored cast
    /// (reported; not one of the four counts).
    pub(crate) fn closed_sessions_without_cast(&self) -> usize {
        self.closed_sessions_without_cast.len()
    }

    /// Requests and sessions that passed their deadline.
    pub(crate) fn hung(&self) -> usize {
        self.hung.len()
    }

    /// Every count 0, nothing hung, the spool drained with nothing dropped, nothing else wrong.
    pub(crate) fn clean(&self) -> bool {
        self.lost_acked() == 0
            && self.closed_forwarded_without_event() == 0
            && self.open_refused() == 0
            && self.duplicates() == 0
            && self.hung() == 0
            && self.drain.settled
            && self.drain.dropped_total() == 0
            && self.other.is_empty()
    }

    /// The report: per policy, then each count with examples.
    pub(crate) fn report(&self) -> String {
        let mut out = String::from(
            "\n| policy | API requests | reached the upstream | refused by the proxy (slowest) | no reply | exec ran (cast stored) | exec failed | upstream received (incl. exec) |\n|---|---|---|---|---|---|---|---|\n",
        );
        for (policy, t) in &self.tallies {
            let _ = writeln!(
                out,
                "| {policy} ({}) | {} | {} | {} ({:.2} s) | {} | {} ({}) | {} | {} |",
                policy.caller(),
                t.requests,
                t.forwarded,
                t.refused,
                t.slowest_refusal.as_secs_f64(),
                t.no_reply,
                t.sessions_ran,
                t.sessions_ran_recorded,
                t.sessions_failed,
                t.upstream_received
            );
        }
        let _ = writeln!(out, "\nstored: {}", self.stored_summary);
        if self.died_with_replica > 0 {
            let _ = writeln!(
                out,
                "in flight through a proxy replica when it was killed: {} requests and sessions; {} of them reached the upstream and have no stored response record (the event of every one is checked)",
                self.died_with_replica, self.responses_died_with_replica
            );
        }
        let _ = writeln!(out, "spool: {}", self.drain);
        let mut section = |title: &str, n: usize, examples: &[String]| {
            let _ = writeln!(out, "{title}: {n}");
            for e in examples.iter().take(EXAMPLES) {
                let _ = writeln!(out, "    {e}");
            }
        };
        section(
            "1. lost acknowledged events",
            self.lost_events.len(),
            &self.lost_events,
        );
        section(
            "   lost acknowledged response records",
            self.lost_responses.len(),
            &self.lost_responses,
        );
        section(
            "2. fail-closed requests forwarded without a stored event",
            self.closed_without_event.len(),
            &self.closed_without_event,
        );
        section(
            "3. fail-open requests refused",
            self.open_refused.len(),
            &self.open_refused,
        );
        let dups: Vec<String> = self
            .duplicates
            .iter()
            .map(|(key, n)| format!("{key}: stored {n} times"))
            .collect();
        section("4. duplicates stored", self.duplicates(), &dups);
        section("hung (passed their deadline)", self.hung.len(), &self.hung);
        section(
            "fail-closed exec sessions that ran without a stored cast",
            self.closed_sessions_without_cast.len(),
            &self.closed_sessions_without_cast,
        );
        if !self.other.is_empty() {
            section("also wrong", self.other.len(), &self.other);
        }
        out
    }
}

/// Joins what the callers got, what the upstream received and what storage holds.
pub(crate) fn count(
    stack: &Stack,
    sent: &Sent,
    stored: &Stored,
    drain: &Drain,
    faults: &Faults,
) -> Result<Counts, Error> {
    let mut counts = Counts::default();
    let seen = stack.upstream_requests()?;
    if stack.upstream.has_kubelet() && seen.len() >= SIM_LOG_CAPACITY {
        counts.other.push(format!(
            "kube-sim's request log is full ({} requests): the oldest may be missing from the join; run shorter",
            seen.len()
        ));
    }
    let policy_of: HashMap<String, Policy> = [Policy::Closed, Policy::Open]
        .into_iter()
        .map(|p| Ok((stack.caller(p.caller())?.identity.impersonated_user(), p)))
        .collect::<Result<_, Error>>()?;
    let mut received: HashMap<Policy, Vec<&SeenRequest>> = HashMap::new();
    for request in &seen {
        if let Some(policy) = request
            .impersonated_user
            .as_ref()
            .and_then(|u| policy_of.get(u))
        {
            received.entry(*policy).or_default().push(request);
        }
    }
    let received_agents: HashMap<&str, &SeenRequest> =
        seen.iter().map(|r| (r.user_agent.as_str(), r)).collect();

    // Requests in flight through a proxy replica when it was killed (by user agent), and the
    // spans of the exec sessions that were (kubectl's own requests of such a session, found by
    // the time in their event's key, died with it too).
    let mut died: std::collections::HashSet<&str> = std::collections::HashSet::new();
    let mut died_sessions: Vec<(Policy, SystemTime, SystemTime)> = Vec::new();
    // What the callers got.
    for request in &sent.requests {
        let died_with_replica = faults.proxy_killed_during(request.sent_at, request.answered_at);
        if died_with_replica {
            died.insert(request.user_agent.as_str());
            counts.died_with_replica += 1;
        }
        let tally = counts.tallies.entry(request.policy).or_default();
        tally.requests += 1;
        let upstream = received_agents.get(request.user_agent.as_str());
        let forwarded = upstream.is_some();
        if forwarded {
            tally.forwarded += 1;
        }
        match &request.result {
            Err(Failure::Deadline { .. }) => counts.hung.push(describe(request)),
            Err(_) => tally.no_reply += 1,
            Ok(_) if !forwarded => {
                tally.refused += 1;
                tally.slowest_refusal = tally.slowest_refusal.max(request.took);
            }
            Ok(_) => {}
        }
        // A request that failed because its replica was killed was not refused by the proxy's
        // policy; one the proxy answered without forwarding was.
        let died_unanswered = died_with_replica && request.result.is_err();
        if request.policy == Policy::Open && !forwarded && !died_unanswered {
            counts.open_refused.push(describe(request));
        }
        // Causality: the proxy forwards a fail-closed request only once its event is stored, so the
        // commit that stored it began before the caller had the upstream's reply.
        let key = upstream.and_then(|r| r.audit_id.as_deref());
        if let (Policy::Closed, Some(key)) = (request.policy, key) {
            let answered_ms = request
                .answered_at
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0);
            if let Some(stored_ms) = stored.event_stored_at(key) {
                if stored_ms > answered_ms {
                    counts.closed_without_event.push(format!(
                        "{}: its event was stored {} ms after the caller had the upstream's reply",
                        describe(request),
                        stored_ms - answered_ms
                    ));
                }
            }
        }
    }
    for session in &sent.sessions {
        let tally = counts.tallies.entry(session.policy).or_default();
        let reached = received.get(&session.policy).is_some_and(|rs| {
            rs.iter()
                .any(|r| r.uri.contains("/exec?") && r.uri.contains(&session.marker))
        });
        let what = format!(
            "exec {} ({:.1} s, {}the upstream): {:?}",
            session.marker,
            session.took.as_secs_f64(),
            if reached {
                "reached "
            } else {
                "did not reach "
            },
            session.outcome
        );
        match &session.outcome {
            SessionOutcome::Ran => {
                tally.sessions_ran += 1;
                if has_cast(stored, &session.marker) {
                    tally.sessions_ran_recorded += 1;
                } else if session.policy == Policy::Closed {
                    let unfinished = holds(&stored.unfinished, &session.marker);
                    counts.closed_sessions_without_cast.push(format!(
                        "{what}: {}",
                        if unfinished {
                            "its output is only in an unfinished session (chunks or .partial)"
                        } else {
                            "its output is nowhere in storage"
                        }
                    ));
                }
            }
            SessionOutcome::Failed(_) => tally.sessions_failed += 1,
            SessionOutcome::Hung => counts.hung.push(what.clone()),
        }
        let died_with_replica = faults.proxy_killed_during(session.started_at, session.ended_at);
        if died_with_replica {
            counts.died_with_replica += 1;
            died_sessions.push((session.policy, session.started_at, session.ended_at));
        }
        if session.policy == Policy::Open
            && session.outcome != SessionOutcome::Ran
            && !died_with_replica
        {
            counts.open_refused.push(what);
        }
    }

    // What the upstream received against what storage holds. The proxy forwards a fail-closed
    // request only after a recorder acknowledged its event; every other record was acknowledged
    // once the spool drained with nothing dropped (checked in `clean`).
    for (policy, requests) in &received {
        counts.tallies.entry(*policy).or_default().upstream_received = requests.len();
        for request in requests {
            let Some(key) = request.audit_id.as_deref() else {
                counts.other.push(format!(
                    "{} {} ({}) reached the upstream without an Audit-ID",
                    request.method, request.uri, request.user_agent
                ));
                continue;
            };
            let what = format!(
                "{policy} {} {} ({}) key {key}",
                request.method, request.uri, request.user_agent
            );
            if stored.event_copies(key) == 0 {
                counts.lost_events.push(what.clone());
                if *policy == Policy::Closed {
                    counts.closed_without_event.push(what.clone());
                }
            }
            let in_died_session = key_time(key).is_some_and(|t| {
                died_sessions
                    .iter()
                    .any(|(p, from, to)| p == policy && *from <= t && t <= *to)
            });
            if stored.response_copies(key) == 0 {
                if died.contains(request.user_agent.as_str()) || in_died_session {
                    counts.responses_died_with_replica += 1;
                } else {
                    counts.lost_responses.push(what);
                }
            }
        }
    }
    let mut duplicates: Vec<(String, usize)> = stored
        .copies
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(key, n)| (key.clone(), *n))
        .collect();
    duplicates.sort();
    counts.duplicates = duplicates;
    for line in &stored.bad_lines {
        counts
            .other
            .push(format!("a stored line is not a record: {line}"));
    }
    let recorded_sessions = sent
        .sessions
        .iter()
        .filter(|s| has_cast(stored, &s.marker))
        .count();
    counts.stored_summary = format!(
        "{} events, {} response records ({} without a key), {} session casts ({} of the {} exec sessions' output in one)",
        stored.events,
        stored.responses,
        stored.keyless,
        stored.casts.len(),
        recorded_sessions,
        sent.sessions.len()
    );
    counts.drain = drain.clone();
    Ok(counts)
}

/// When the proxy received the request whose event key (a UUIDv7) is `key`: the key's first 48
/// bits are milliseconds since the Unix epoch.
fn key_time(key: &str) -> Option<SystemTime> {
    let hex: String = key.chars().filter(|c| *c != '-').take(12).collect();
    let ms = u64::from_str_radix(&hex, 16).ok()?;
    Some(std::time::UNIX_EPOCH + Duration::from_millis(ms))
}

/// Whether a stored cast holds the output of the session that echoed `marker`.
fn has_cast(stored: &Stored, marker: &str) -> bool {
    holds(&stored.casts, marker)
}

/// Whether one of `pieces` holds `marker`.
fn holds(pieces: &[Vec<u8>], marker: &str) -> bool {
    let marker = marker.as_bytes();
    pieces
        .iter()
        .any(|piece| piece.windows(marker.len()).any(|w| w == marker))
}

fn describe(request: &Request) -> String {
    let got = match &request.result {
        Ok(reply) => format!(
            "{} {:?}",
            reply.status,
            reply.text().trim().chars().take(160).collect::<String>()
        ),
        Err(failure) => failure.to_string(),
    };
    format!(
        "{} {} after {:.2} s: {got}",
        request.op,
        request.user_agent,
        request.took.as_secs_f64()
    )
}
