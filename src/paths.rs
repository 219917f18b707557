//! Which request paths are protected. The decision is made on a normalised path (percent-decoded
//! until stable, `\` as `/`, `;parameters` cut from each segment as Java servers do, empty and dot
//! segments resolved, ASCII lowercase) so that no encoding trick makes a WOPI path look
//! unprotected. Normalisation is used only for this decision: the
//! proof is checked over, and the upstream receives, the raw request target.

/// Protected path prefixes. An empty list protects nothing (stated here, not implied).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathRules {
    prefixes: Vec<String>,
}

impl PathRules {
    /// Rules from prefixes that start with `/`.
    pub fn new(prefixes: &[String]) -> Self {
        PathRules { prefixes: prefixes.iter().map(|p| normalise(p.as_bytes())).collect() }
    }

    /// True when no path is protected.
    pub fn protects_nothing(&self) -> bool {
        self.prefixes.is_empty()
    }

    /// True when the path of `raw_target` (origin-form or absolute-form) is under a prefix.
    pub fn is_protected(&self, raw_target: &[u8]) -> bool {
        if self.prefixes.is_empty() {
            return false;
        }
        let path = normalise(path_of(raw_target));
        self.prefixes.iter().any(|prefix| under(&path, prefix))
    }
}

/// `prefix` matches whole segments: `/wopi/` covers `/wopi/x`; `/wopi` covers `/wopi` and `/wopi/x`
/// but not `/wopix`.
fn under(path: &str, prefix: &str) -> bool {
    path.starts_with(prefix)
        && (prefix.ends_with('/') || path.len() == prefix.len() || path.as_bytes()[prefix.len()] == b'/')
}

/// The path part of a request target, without query or fragment.
fn path_of(raw_target: &[u8]) -> &[u8] {
    let mut rest = raw_target;
    if let Some(scheme_end) = find(rest, b"://") {
        if !rest.starts_with(b"/") {
            rest = &rest[scheme_end + 3..];
            rest = rest.iter().position(|&b| b == b'/').map_or(&b"/"[..], |slash| &rest[slash..]);
        }
    }
    let end = rest.iter().position(|&b| b == b'?' || b == b'#').unwrap_or(rest.len());
    &rest[..end]
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Percent-decodes until stable (at most 4 rounds), folds `\` to `/`, cuts `;parameters` from
/// each segment, resolves `.`, `..` and empty segments, lowercases ASCII. Keeps a trailing `/`.
pub fn normalise(path: &[u8]) -> String {
    let mut bytes = path.to_vec();
    for _ in 0..4 {
        let decoded: Vec<u8> = percent_encoding::percent_decode(&bytes).collect();
        if decoded == bytes {
            break;
        }
        bytes = decoded;
    }
    let text = String::from_utf8_lossy(&bytes).replace('\\', "/").to_ascii_lowercase();
    let mut segments: Vec<&str> = Vec::new();
    for segment in text.split('/') {
        let segment = segment.split(';').next().unwrap_or_default();
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut out = String::with_capacity(text.len() + 1);
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    if out.is_empty() || text.ends_with('/') || text.ends_with("/.") || text.ends_with("/..") {
        out.push('/');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(p: &[&str]) -> PathRules {
        PathRules::new(&p.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn empty_list_protects_nothing() {
        let r = rules(&[]);
        assert!(r.protects_nothing());
        assert!(!r.is_protected(b"/wopi/files/1"));
    }

    #[test]
    fn encoding_tricks_stay_protected() {
        let r = rules(&["/wopi/"]);
        for target in [
            &b"/wopi/files/1?access_token=x"[..],
            b"/WOPI/files/1",
            b"/%77opi/files/1",
            b"/%2577opi/files/1",
            b"//wopi//files/1",
            b"/x/../wopi/files/1",
            b"/./wopi/files",
            b"\\wopi\\files",
            b"http://evil/wopi/files/1",
            b"/wopi/",
            b"/wopi;jsessionid=1/files/1",
            b"/x;/../wopi/files",
        ] {
            assert!(r.is_protected(target), "{}", String::from_utf8_lossy(target));
        }
        for target in [&b"/wopix/files"[..], b"/status", b"/", b"/index.php?x=/wopi/"] {
            assert!(!r.is_protected(target), "{}", String::from_utf8_lossy(target));
        }
    }

    #[test]
    fn prefix_without_slash_matches_whole_segments() {
        let r = rules(&["/index.php/apps/richdocuments/wopi"]);
        assert!(r.is_protected(b"/index.php/apps/richdocuments/wopi"));
        assert!(r.is_protected(b"/index.php/apps/richdocuments/wopi/files/5"));
        assert!(!r.is_protected(b"/index.php/apps/richdocuments/wopix"));
    }
}
