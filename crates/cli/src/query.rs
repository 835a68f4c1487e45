//! The filter flags of `events` and `sessions`, and the query parameters they become
//! (docs/api.md: `GET /api/v1/events`, `GET /api/v1/sessions`). Values are passed as given; the
//! recorder matches them exactly (names, verbs) or as a substring (`--contains`).

use crate::error::CliError;
use crate::time_arg;

/// Which of the recorder's own records of reads to list.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Reads {
    /// Leave them out.
    #[default]
    Exclude,
    /// Only them: who read what.
    Only,
    /// With the other events.
    Include,
}

impl Reads {
    fn as_str(self) -> &'static str {
        match self {
            Reads::Exclude => "exclude",
            Reads::Only => "only",
            Reads::Include => "include",
        }
    }
}

/// Filters both lists take: when, and whose.
#[derive(Debug, Clone, Default, clap::Args)]
pub(crate) struct CommonFilters {
    /// At or after this time (an event's receipt, a session's start): a time ago (15m, 2h, 7d),
    /// RFC 3339, or Unix seconds.
    #[arg(long, value_name = "TIME")]
    pub(crate) since: Option<String>,
    /// Before this time (same forms as --since).
    #[arg(long, value_name = "TIME")]
    pub(crate) until: Option<String>,
    /// The caller's tailnet login name (source.nodeUser), e.g. alice@example.com.
    #[arg(long, value_name = "LOGIN")]
    pub(crate) user: Option<String>,
    /// The caller's node name (source.node).
    #[arg(long, value_name = "NODE")]
    pub(crate) node: Option<String>,
}

impl CommonFilters {
    fn push_into(&self, query: &mut Vec<(String, String)>, now: i64) -> Result<(), CliError> {
        push_time(query, "--since", self.since.as_ref(), now)?;
        push_time(query, "--until", self.until.as_ref(), now)?;
        push(query, "user", self.user.as_ref());
        push(query, "node", self.node.as_ref());
        Ok(())
    }
}

/// Filters of `kubescribe events` (all combined with AND).
#[derive(Debug, Clone, Default, clap::Args)]
pub(crate) struct EventFilters {
    #[command(flatten)]
    pub(crate) common: CommonFilters,
    /// One of the caller's node tags, e.g. tag:ci.
    #[arg(long, value_name = "TAG")]
    pub(crate) tag: Option<String>,
    /// The Kubernetes verb (get, list, watch, create, update, patch, delete, …).
    #[arg(long)]
    pub(crate) verb: Option<String>,
    /// The resource (pods, secrets, …).
    #[arg(long)]
    pub(crate) resource: Option<String>,
    /// The namespace.
    #[arg(long, short = 'n')]
    pub(crate) namespace: Option<String>,
    /// The object's name.
    #[arg(long)]
    pub(crate) name: Option<String>,
    /// A case-insensitive substring of the stored event (its path, body, user agent, …).
    #[arg(long, short = 'q', value_name = "TEXT")]
    pub(crate) contains: Option<String>,
    /// The recorder's records of reads (who read what): left out, only them, or included.
    #[arg(long, value_enum, default_value_t = Reads::Exclude)]
    pub(crate) reads: Reads,
}

/// Filters of `kubescribe sessions` (all combined with AND).
#[derive(Debug, Clone, Default, clap::Args)]
pub(crate) struct SessionFilters {
    #[command(flatten)]
    pub(crate) common: CommonFilters,
    /// The pod's namespace.
    #[arg(long, short = 'n')]
    pub(crate) namespace: Option<String>,
    /// The pod.
    #[arg(long)]
    pub(crate) pod: Option<String>,
    /// Only sessions still running.
    #[arg(long, conflicts_with = "ended")]
    pub(crate) live: bool,
    /// Only sessions that have ended.
    #[arg(long)]
    pub(crate) ended: bool,
}

fn push(query: &mut Vec<(String, String)>, key: &str, value: Option<&String>) {
    if let Some(value) = value {
        query.push((key.to_owned(), value.clone()));
    }
}

fn push_time(
    query: &mut Vec<(String, String)>,
    flag: &'static str,
    value: Option<&String>,
    now: i64,
) -> Result<(), CliError> {
    if let Some(text) = value {
        let seconds =
            time_arg::unix_seconds(text, now).map_err(|reason| CliError::Usage { flag, reason })?;
        query.push((flag.trim_start_matches('-').to_owned(), seconds.to_string()));
    }
    Ok(())
}

impl EventFilters {
    /// The query parameters, relative times counted back from `now`.
    pub(crate) fn to_query(&self, now: i64) -> Result<Vec<(String, String)>, CliError> {
        let mut query = Vec::new();
        self.common.push_into(&mut query, now)?;
        push(&mut query, "tag", self.tag.as_ref());
        push(&mut query, "verb", self.verb.as_ref());
        push(&mut query, "resource", self.resource.as_ref());
        push(&mut query, "namespace", self.namespace.as_ref());
        push(&mut query, "name", self.name.as_ref());
        push(&mut query, "q", self.contains.as_ref());
        query.push(("reads".to_owned(), self.reads.as_str().to_owned()));
        Ok(query)
    }
}

impl SessionFilters {
    /// The query parameters, relative times counted back from `now`.
    pub(crate) fn to_query(&self, now: i64) -> Result<Vec<(String, String)>, CliError> {
        let mut query = Vec::new();
        self.common.push_into(&mut query, now)?;
        push(&mut query, "namespace", self.namespace.as_ref());
        push(&mut query, "pod", self.pod.as_ref());
        if self.live {
            query.push(("live".to_owned(), "true".to_owned()));
        } else if self.ended {
            query.push(("live".to_owned(), "false".to_owned()));
        }
        Ok(query)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_filters_become_the_documented_parameters() {
        let filters = EventFilters {
            common: CommonFilters {
                since: Some("1h".into()),
                user: Some("alice@example.com".into()),
                ..CommonFilters::default()
            },
            verb: Some("delete".into()),
            contains: Some("kube-system".into()),
            reads: Reads::Only,
            ..EventFilters::default()
        };
        let query = filters.to_query(10_000).expect("valid");
        let expected: Vec<(String, String)> = [
            ("since", "6400"),
            ("user", "alice@example.com"),
            ("verb", "delete"),
            ("q", "kube-system"),
            ("reads", "only"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        assert_eq!(query, expected);
    }

    #[test]
    fn a_bad_time_names_its_flag() {
        let filters = SessionFilters {
            common: CommonFilters {
                until: Some("soon".into()),
                ..CommonFilters::default()
            },
            ..SessionFilters::default()
        };
        let err = filters.to_query(0).expect_err("bad time");
        assert!(err.to_string().starts_with("--until: "), "{err}");
    }
}
