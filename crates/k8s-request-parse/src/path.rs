//! Path segmentation as `splitPath` in kube-apiserver's request info, as a
//! cursor that allocates nothing.

/// The segments of a path after `splitPath`: strip **all** leading and
/// trailing `/`, then split on `/`. An empty result has zero segments; empty
/// interior segments survive (`/api/v1//pods` gives `api`, `v1`, ``, `pods`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Segments<'a> {
    /// The unconsumed part of the trimmed path; `None` when no segment is
    /// left.
    rest: Option<&'a str>,
}

impl<'a> Segments<'a> {
    pub(crate) fn new(path: &'a str) -> Self {
        let trimmed = path.trim_matches('/');
        Segments {
            rest: (!trimmed.is_empty()).then_some(trimmed),
        }
    }

    /// The segment `n` places ahead (0 = the next one), without consuming.
    pub(crate) fn peek(&self, n: usize) -> Option<&'a str> {
        let mut cursor = *self;
        for _ in 0..n {
            cursor.next()?;
        }
        cursor.next()
    }

    /// At least `n` segments remain.
    pub(crate) fn has_at_least(&self, n: usize) -> bool {
        n == 0 || self.peek(n - 1).is_some()
    }

    /// How many segments remain.
    pub(crate) fn count_remaining(&self) -> usize {
        self.rest
            .map_or(0, |rest| rest.bytes().filter(|&b| b == b'/').count() + 1)
    }
}

impl<'a> Iterator for Segments<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let rest = self.rest?;
        // Segments are short: a plain byte scan beats memchr's set-up.
        match rest.bytes().position(|b| b == b'/') {
            Some(slash) => {
                self.rest = Some(&rest[slash + 1..]);
                Some(&rest[..slash])
            }
            None => {
                self.rest = None;
                Some(rest)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(p: &str) -> Vec<String> {
        Segments::new(p).map(String::from).collect()
    }

    #[test]
    fn splits_like_go() {
        assert!(split("").is_empty());
        assert!(split("/").is_empty());
        assert!(split("///").is_empty());
        assert_eq!(split("/api/v1//pods/"), ["api", "v1", "", "pods"]);
        assert_eq!(split("//api//"), ["api"]);
        assert_eq!(split("a"), ["a"]);
    }

    #[test]
    fn cursor_queries() {
        let s = Segments::new("/api/v1//pods/");
        assert_eq!(s.count_remaining(), 4);
        assert!(s.has_at_least(4) && !s.has_at_least(5) && s.has_at_least(0));
        assert_eq!(s.peek(2), Some(""));
        assert_eq!(s.peek(4), None);
        assert_eq!(Segments::new("//").count_remaining(), 0);
        assert!(!Segments::new("").has_at_least(1));
    }
}
