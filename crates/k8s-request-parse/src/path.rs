//! Path segmentation as `splitPath` in kube-apiserver's request info.

/// Strips **all** leading and trailing `/`, then splits on `/`. An empty
/// result has zero segments; empty interior segments survive
/// (`/api/v1//pods` gives `["api", "v1", "", "pods"]`).
pub(crate) fn split_path(path: &[u8]) -> Vec<&[u8]> {
    let start = path.iter().position(|&b| b != b'/');
    let Some(start) = start else {
        return Vec::new();
    };
    let end = path
        .iter()
        .rposition(|&b| b != b'/')
        .map_or(start, |i| i + 1);
    let trimmed = &path[start..end];
    let mut segments = Vec::with_capacity(8);
    segments.extend(trimmed.split(|&b| b == b'/'));
    segments
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_like_go() {
        let split = |p: &str| -> Vec<String> {
            split_path(p.as_bytes())
                .into_iter()
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect()
        };
        assert!(split("").is_empty());
        assert!(split("/").is_empty());
        assert!(split("///").is_empty());
        assert_eq!(split("/api/v1//pods/"), ["api", "v1", "", "pods"]);
        assert_eq!(split("//api//"), ["api"]);
        assert_eq!(split("a"), ["a"]);
    }
}
