//! Seeded random requests, for what hand-written cases miss: label and field selectors, list
//! options and paths assembled from the tokens kube-apiserver's parsers care about. The same seed
//! gives the same corpus (`KUBESCRIBE_ORACLE_SEED`, default below).

use crate::corpus::{Entry, Expect, Group, NS};

/// The default seed.
pub(crate) const SEED: u64 = 0x6b75_6265_7363_7269;

/// xorshift64*: small, deterministic, good enough to pick tokens.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

/// Percent-encodes everything but unreserved characters (as a query value).
fn encode(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

const LABEL_KEYS: &[&str] = &[
    "app",
    "tier",
    "a.b/c",
    "k8s.io/n",
    "x-y",
    "A",
    "a_b",
    "-bad",
    "a/",
    "/a",
    "é",
    "Example.com/a",
    "a..b/c",
];
const LABEL_VALUES: &[&str] = &[
    "web", "", "a-b", "1", "-1", "a/b", "x_", "_x", "é", "v.v", "12", "a b",
];
const SPACES: &[&str] = &["", "", "", " ", "  ", "\t"];
const NOISE: &[&str] = &["(", ")", ",", "=", "!", " ", "\\", "in", "é", "%"];

const FIELD_NAMES: &[&str] = &[
    "metadata.name",
    "metadata.name",
    "metadata.name",
    "metadata.namespace",
    "metadata.name ",
    " metadata.name",
    "spec.x",
];
const FIELD_OPS: &[&str] = &["=", "=", "==", "!="];
const FIELD_VALUES: &[&str] = &[
    "o-a", "o-a", "o-b", "", ".", "..", "...", "a/b", "100%", "a\\,b", "a\\=b", "a\\\\b", " o-a",
    "é", "a\\nb", "a,b", "a=b", "o-a\\",
];

/// A label selector built from requirements, mostly well formed, sometimes with noise inserted.
fn label_selector(rng: &mut Rng) -> String {
    let mut terms = Vec::new();
    for _ in 0..1 + rng.below(3) {
        let key = rng.pick(LABEL_KEYS);
        let sp = |rng: &mut Rng| rng.pick(SPACES).to_owned();
        let value = |rng: &mut Rng| rng.pick(LABEL_VALUES).to_owned();
        let term = match rng.below(9) {
            0 => format!("{key}{}={}{}", sp(rng), sp(rng), value(rng)),
            1 => format!("{key}=={}", value(rng)),
            2 => format!("{key}!={}", value(rng)),
            3 => format!(
                "{key} in{}({}{})",
                sp(rng),
                value(rng),
                if rng.below(2) == 0 {
                    format!(",{}", value(rng))
                } else {
                    String::new()
                }
            ),
            4 => format!("{key} notin ({})", value(rng)),
            5 => key.to_owned(),
            6 => format!("!{}{key}", sp(rng)),
            7 => format!("{key}>{}", value(rng)),
            _ => format!("{key}<{}", value(rng)),
        };
        terms.push(term);
    }
    let mut selector = terms.join(",");
    if rng.below(5) == 0 {
        let at = rng.below(selector.len() + 1);
        if selector.is_char_boundary(at) {
            selector.insert_str(at, rng.pick(NOISE));
        }
    }
    selector
}

/// A field selector of one to three terms, usually naming `metadata.name`.
fn field_selector(rng: &mut Rng) -> String {
    let mut terms = Vec::new();
    for _ in 0..1 + rng.below(3) {
        terms.push(format!(
            "{}{}{}",
            rng.pick(FIELD_NAMES),
            rng.pick(FIELD_OPS),
            rng.pick(FIELD_VALUES)
        ));
    }
    let mut selector = terms.join(",");
    if rng.below(6) == 0 {
        selector.push(',');
    }
    selector
}

const OPTION_KEYS: &[&str] = &[
    "limit",
    "timeoutSeconds",
    "watch",
    "allowWatchBookmarks",
    "sendInitialEvents",
    "resourceVersion",
    "resourceVersionMatch",
    "continue",
    "labelSelector",
    "fieldSelector",
    "kind",
];

const OPTION_VALUES: &[&str] = &[
    "",
    "0",
    "1",
    "-1",
    "abc",
    "true",
    "false",
    "FALSE",
    "+1",
    "1e3",
    " 1",
    "9223372036854775808",
    "01",
    "1.5",
    "app=x",
    "metadata.name=o-a",
    "NotOlderThan",
    "%zz",
    "a;b",
];

const SEGMENTS: &[&str] = &[
    "api",
    "apis",
    "v1",
    "apps",
    "namespaces",
    "oracle",
    "pods",
    "configmaps",
    "deployments",
    "o-a",
    "status",
    "scale",
    "watch",
    "proxy",
    "finalize",
    "log",
    "exec",
    "",
    ".",
    "..",
    "%2F",
    "%2e",
    "x",
    "é",
    "%C3%A9",
    "+",
    ";",
    ":",
    "@",
    "nodes",
    "oracle.kubescribe.dev",
    "widgets",
    "%20",
    "~",
];

const METHODS: &[&str] = &[
    "GET", "GET", "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "get",
];

/// The generated groups: selectors and list options (lists of configmaps, every decision visible in
/// the name a `metadata.name` field selector gives or not), and random paths. Every request that
/// could be a watch carries a valid `timeoutSeconds=1` first, so none runs longer than a second.
pub(crate) fn groups(seed: u64) -> Vec<Group> {
    let c = "generated";
    let mut rng = Rng(seed | 1);
    let cms = format!("/api/v1/namespaces/{NS}/configmaps");
    let mut selectors = Vec::new();
    for _ in 0..200 {
        let selector = label_selector(&mut rng);
        selectors.push(
            Entry::new(
                c,
                "GET",
                format!(
                    "{cms}?labelSelector={}&fieldSelector=metadata.name%3Do-a",
                    encode(&selector)
                ),
            )
            .note(format!("label selector {selector:?}")),
        );
    }
    for _ in 0..200 {
        let selector = field_selector(&mut rng);
        selectors.push(
            Entry::new(
                c,
                "GET",
                format!("{cms}?fieldSelector={}", encode(&selector)),
            )
            .note(format!("field selector {selector:?}")),
        );
    }
    let mut options = Vec::new();
    for _ in 0..120 {
        let mut query = String::from("timeoutSeconds=1&fieldSelector=metadata.name%3Do-a");
        for _ in 0..1 + rng.below(4) {
            let key = rng.pick(OPTION_KEYS);
            let value = rng.pick(OPTION_VALUES);
            // A raw ';' drops the pair, a raw "%zz" drops it too; both on purpose.
            let value = if value == "%zz" || value == "a;b" {
                value.to_owned()
            } else {
                encode(value)
            };
            if rng.below(2) == 0 {
                query = format!("{key}={value}&{query}");
            } else {
                query = format!("{query}&{key}={value}");
            }
        }
        // The first timeoutSeconds must stay a valid 1 for watches: drop any added before it.
        if let Some(first) = query.find("timeoutSeconds=") {
            if !query[first..].starts_with("timeoutSeconds=1&") {
                continue;
            }
        }
        let method = if rng.below(5) == 0 { "HEAD" } else { "GET" };
        options.push(Entry::new(c, method, format!("{cms}?{query}")).note("list options"));
    }
    let mut paths = Vec::new();
    for _ in 0..220 {
        let n = 1 + rng.below(7);
        let mut path: String = (0..n).map(|_| format!("/{}", rng.pick(SEGMENTS))).collect();
        if rng.below(4) == 0 {
            path.push('/');
        }
        if rng.below(6) == 0 {
            path.insert(0, '/');
        }
        let method = rng.pick(METHODS);
        paths.push(Entry::new(c, method, format!("{path}?timeoutSeconds=1")).note("random path"));
    }
    let mut groups = vec![selectors, options, paths];
    for entry in groups.iter_mut().flatten() {
        entry.expect = Expect::Observed;
    }
    groups
}
