//! Which WOPI operation a request is (docs/operations.md): method + path after the `/wopi` segment +
//! `X-WOPI-Override` (+ `X-WOPI-OldLock` for UnlockAndRelock).
//!
//! Where hosts route on the path alone, so does this: Nextcloud's richdocuments sends every
//! `POST …/files/{id}/contents` to its PutFile handler without reading `X-WOPI-Override`, so any
//! write to `…/contents` is PutFile, and HEAD is routed as GET. Only `…/files/{id}` and
//! `…/containers/{id}` POSTs are told apart by the override, as hosts dispatch them.
//!
//! On `POST …/files/{id}` the override is read as hosts read it, exactly: Nextcloud's
//! `WopiController::postFile` compares it case-sensitively and runs PutRelativeFile for anything
//! it does not recognise. So a missing override, or one that is not a canonical name (uppercase
//! letters, digits and `_`, as Microsoft's list and Collabora spell them), or one that belongs to
//! another endpoint (`PUT`, a container's), is [`Classified::override_invalid`]; a canonical name
//! that no built-in operation has is [`Operation::Custom`] when the configuration names it, else
//! [`Operation::OtherOverride`] (whose rules are PutRelativeFile's unless the configuration names
//! it: [`crate::config::is_other_override`]).

use std::collections::HashSet;
use std::fmt;
use std::sync::{Mutex, OnceLock};

macro_rules! operations {
    ($($variant:ident),* $(,)?) => {
        /// A WOPI operation.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Operation {
            $(
                #[doc = stringify!($variant)]
                $variant,
            )*
            /// A canonical `X-WOPI-Override` on `POST …/files/{id}` that no built-in operation
            /// has, named in the configuration (`operations.deny`, `operations.max_body`, a
            /// per-operation budget): its own operation, named by its value. Metrics count it
            /// with [`Operation::OtherOverride`], so their label set stays fixed.
            Custom(CustomOverride),
        }

        impl Operation {
            /// Every built-in operation, in table order (the metrics' rows).
            pub const ALL: &'static [Operation] = &[$(Operation::$variant),*];

            /// Microsoft's name (or a custom override's value), used in logs and configuration.
            pub fn name(self) -> &'static str {
                match self {
                    $(Operation::$variant => stringify!($variant),)*
                    Operation::Custom(custom) => custom.0,
                }
            }
        }
    };
}

/// The value of a canonical `X-WOPI-Override` that the configuration names, interned once per
/// process (configuration text is bounded; requests never intern).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CustomOverride(&'static str);

fn custom_names() -> &'static Mutex<HashSet<&'static str>> {
    static NAMES: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    NAMES.get_or_init(|| Mutex::new(HashSet::new()))
}

impl CustomOverride {
    /// Interns `name` (a canonical override, [`is_canonical_override`]) for the configuration.
    fn intern(name: &str) -> CustomOverride {
        let mut names = custom_names().lock().unwrap_or_else(|e| e.into_inner());
        if let Some(known) = names.get(name) {
            return CustomOverride(known);
        }
        let leaked: &'static str = Box::leak(name.to_owned().into_boxed_str());
        names.insert(leaked);
        CustomOverride(leaked)
    }

    /// The interned name equal to `sent`, if the configuration named it.
    fn lookup(sent: &[u8]) -> Option<CustomOverride> {
        let sent = std::str::from_utf8(sent).ok()?;
        custom_names().lock().unwrap_or_else(|e| e.into_inner()).get(sent).map(|n| CustomOverride(n))
    }
}

/// Longest override value read as a name.
const MAX_OVERRIDE: usize = 64;

/// An `X-WOPI-Override` value as Microsoft and Collabora spell them: an uppercase letter, then
/// uppercase letters, digits and `_`, at most 64 bytes.
pub fn is_canonical_override(value: &[u8]) -> bool {
    value.len() <= MAX_OVERRIDE
        && value.first().is_some_and(u8::is_ascii_uppercase)
        && value.iter().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || *b == b'_')
}

operations!(
    CheckFileInfo,
    GetFile,
    PutFile,
    PutRelativeFile,
    Lock,
    UnlockAndRelock,
    RefreshLock,
    Unlock,
    GetLock,
    RenameFile,
    DeleteFile,
    PutUserInfo,
    GetShareUrl,
    EnumerateAncestors,
    GetEcosystem,
    CheckContainerInfo,
    EnumerateChildren,
    CreateChildContainer,
    CreateChildFile,
    DeleteContainer,
    RenameContainer,
    GetContainerShareUrl,
    CheckEcosystem,
    Bootstrapper,
    OtherOverride,
    Unknown,
);

impl Operation {
    /// From its name, or from the `X-WOPI-Override` value of a file operation
    /// (`DELETE`, `RENAME_FILE`, `PUT_RELATIVE`, ...), case-insensitively; any other canonical
    /// override value (`COBALT`, `ADD_ACTIVITIES`) names a [`Operation::Custom`] one.
    pub fn from_config_name(text: &str) -> Option<Operation> {
        if let Some(op) = Operation::ALL.iter().find(|op| op.name().eq_ignore_ascii_case(text)) {
            return Some(*op);
        }
        if let Some(op) = Operation::from_override(text) {
            return Some(op);
        }
        if is_canonical_override(text.as_bytes()) && !KNOWN_ELSEWHERE.contains(&text.as_bytes()) {
            return Some(Operation::Custom(CustomOverride::intern(text)));
        }
        None
    }

    /// The built-in operation an override value names, case-insensitively.
    fn from_override(text: &str) -> Option<Operation> {
        Some(match text.to_ascii_uppercase().as_str() {
            "PUT" => Operation::PutFile,
            "PUT_RELATIVE" => Operation::PutRelativeFile,
            "LOCK" => Operation::Lock,
            "REFRESH_LOCK" => Operation::RefreshLock,
            "UNLOCK" => Operation::Unlock,
            "GET_LOCK" => Operation::GetLock,
            "RENAME_FILE" => Operation::RenameFile,
            "DELETE" => Operation::DeleteFile,
            "PUT_USER_INFO" => Operation::PutUserInfo,
            "GET_SHARE_URL" => Operation::GetShareUrl,
            "CREATE_CHILD_CONTAINER" => Operation::CreateChildContainer,
            "CREATE_CHILD_FILE" => Operation::CreateChildFile,
            "DELETE_CONTAINER" => Operation::DeleteContainer,
            "RENAME_CONTAINER" => Operation::RenameContainer,
            _ => return None,
        })
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An operation and the file (or container) id it names, raw as in the path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Classified<'a> {
    /// The operation.
    pub operation: Operation,
    /// The `{id}` path segment of a file operation, undecoded.
    pub file_id: Option<&'a [u8]>,
    /// A `POST …/files/{id}` whose `X-WOPI-Override` is missing, not canonical, or another
    /// endpoint's: the host would run another operation than any the gate could judge (refused).
    pub override_invalid: bool,
}

/// Classifies a request. `override_` is `X-WOPI-Override`; `old_lock` whether `X-WOPI-OldLock`
/// is present. A path that only classifies once normalised (percent-encoded, dot segments) gets
/// that operation but no file id, so deny rules cannot be dodged by encoding.
pub fn classify<'a>(method: &str, raw_target: &'a [u8], override_: Option<&[u8]>, old_lock: bool) -> Classified<'a> {
    let raw = classify_path(method, raw_target, override_, old_lock);
    if raw.operation != Operation::Unknown || raw.override_invalid {
        return raw;
    }
    let path = raw_target.split(|&b| b == b'?').next().unwrap_or_default();
    let normalised = crate::paths::normalise(path);
    Classified { file_id: None, ..classify_path(method, normalised.as_bytes(), override_, old_lock) }
}

/// Overrides of other endpoints: never a `POST …/files/{id}` operation, never a custom name.
const KNOWN_ELSEWHERE: [&[u8]; 5] =
    [b"PUT", b"CREATE_CHILD_CONTAINER", b"CREATE_CHILD_FILE", b"DELETE_CONTAINER", b"RENAME_CONTAINER"];

/// The operation of a `POST …/files/{id}`, read as the host reads `X-WOPI-Override`: exactly.
/// `None` when it is missing, not canonical, or another endpoint's.
fn file_post(override_: Option<&[u8]>, old_lock: bool) -> Option<Operation> {
    use Operation::*;
    let sent = override_.filter(|v| is_canonical_override(v))?;
    Some(match sent {
        b"PUT_RELATIVE" => PutRelativeFile,
        b"LOCK" if old_lock => UnlockAndRelock,
        b"LOCK" => Lock,
        b"REFRESH_LOCK" => RefreshLock,
        b"UNLOCK" => Unlock,
        b"GET_LOCK" => GetLock,
        b"RENAME_FILE" => RenameFile,
        b"DELETE" => DeleteFile,
        b"PUT_USER_INFO" => PutUserInfo,
        b"GET_SHARE_URL" => GetShareUrl,
        other if KNOWN_ELSEWHERE.contains(&other) => return None,
        other => CustomOverride::lookup(other).map_or(OtherOverride, Custom),
    })
}

fn classify_path<'a>(method: &str, raw_target: &'a [u8], override_: Option<&[u8]>, old_lock: bool) -> Classified<'a> {
    let path = &raw_target[..raw_target.iter().position(|&b| b == b'?' || b == b'#').unwrap_or(raw_target.len())];
    let unknown = Classified { operation: Operation::Unknown, file_id: None, override_invalid: false };
    // The segments after the last `wopi` one (at most 3 matter; more match nothing), on the stack.
    let mut after: [&[u8]; 3] = [&[]; 3];
    let mut after_wopi: Option<usize> = None;
    for segment in path.split(|&b| b == b'/').filter(|s| !s.is_empty()) {
        if segment.eq_ignore_ascii_case(b"wopibootstrapper") {
            return Classified { operation: Operation::Bootstrapper, ..unknown };
        }
        if segment.eq_ignore_ascii_case(b"wopi") {
            after_wopi = Some(0);
        } else if let Some(n) = after_wopi.as_mut() {
            if let Some(slot) = after.get_mut(*n) {
                *slot = segment;
            }
            *n += 1;
        }
    }
    let rest = match after_wopi {
        Some(n) if n <= after.len() => &after[..n],
        _ => return unknown,
    };
    let over = override_name(override_);
    // Frameworks route HEAD to the GET handler.
    let get = method.eq_ignore_ascii_case("GET") || method.eq_ignore_ascii_case("HEAD");
    let post = method.eq_ignore_ascii_case("POST");
    let kind = |s: &[u8], name: &str| s.eq_ignore_ascii_case(name.as_bytes());
    use Operation::*;
    let (operation, id) = match rest {
        [files, id] if kind(files, "files") => {
            let op = match (get, post) {
                (true, _) => CheckFileInfo,
                (_, true) => match file_post(override_, old_lock) {
                    Some(op) => op,
                    None => return Classified { override_invalid: true, ..unknown },
                },
                _ => Unknown,
            };
            (op, Some(*id))
        }
        [files, id, contents] if kind(files, "files") && kind(contents, "contents") => {
            // The only write at this path is PutFile, whatever X-WOPI-Override says (or lacks).
            (if get { GetFile } else { PutFile }, Some(*id))
        }
        [files, id, leaf] if kind(files, "files") && get && kind(leaf, "ancestry") => (EnumerateAncestors, Some(*id)),
        [files, id, leaf] if kind(files, "files") && get && kind(leaf, "ecosystem_pointer") => {
            (GetEcosystem, Some(*id))
        }
        [containers, _] if kind(containers, "containers") => {
            let op = match (get, post, over) {
                (true, _, _) => CheckContainerInfo,
                (_, true, b"CREATE_CHILD_CONTAINER") => CreateChildContainer,
                (_, true, b"CREATE_CHILD_FILE") => CreateChildFile,
                (_, true, b"DELETE_CONTAINER") => DeleteContainer,
                (_, true, b"RENAME_CONTAINER") => RenameContainer,
                (_, true, b"GET_SHARE_URL") => GetContainerShareUrl,
                _ => Unknown,
            };
            (op, None)
        }
        [containers, _, leaf] if kind(containers, "containers") && get && kind(leaf, "children") => {
            (EnumerateChildren, None)
        }
        [containers, _, leaf] if kind(containers, "containers") && get && kind(leaf, "ancestry") => {
            (EnumerateAncestors, None)
        }
        [containers, _, leaf] if kind(containers, "containers") && get && kind(leaf, "ecosystem_pointer") => {
            (GetEcosystem, None)
        }
        [ecosystem] if kind(ecosystem, "ecosystem") && get => (CheckEcosystem, None),
        _ => return unknown,
    };
    Classified { operation, file_id: id.filter(|_| operation != Unknown), override_invalid: false }
}

/// The container `X-WOPI-Override` values classification knows, as written in its table.
const OVERRIDES: [&[u8]; 5] =
    [b"GET_SHARE_URL", b"CREATE_CHILD_CONTAINER", b"CREATE_CHILD_FILE", b"DELETE_CONTAINER", b"RENAME_CONTAINER"];

/// A container's `X-WOPI-Override`, trimmed and compared case-insensitively, as its
/// [`OVERRIDES`] spelling; empty when absent or unknown (no known value matches then).
fn override_name(override_: Option<&[u8]>) -> &'static [u8] {
    let Some(sent) = override_.map(<[u8]>::trim_ascii) else { return b"" };
    OVERRIDES.iter().find(|known| known.eq_ignore_ascii_case(sent)).copied().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use Operation::*;

    fn op(method: &str, path: &str, over: Option<&str>) -> Operation {
        classify(method, path.as_bytes(), over.map(str::as_bytes), false).operation
    }

    #[test]
    fn every_row_of_the_table() {
        let f = "/index.php/apps/richdocuments/wopi/files/42?access_token=t";
        let c = "/wopi/files/42/contents?access_token=t";
        assert_eq!(op("GET", f, None), CheckFileInfo);
        assert_eq!(op("GET", c, None), GetFile);
        assert_eq!(op("POST", c, Some("PUT")), PutFile);
        assert_eq!(op("POST", f, Some("PUT_RELATIVE")), PutRelativeFile);
        assert_eq!(op("POST", f, Some("LOCK")), Lock);
        assert_eq!(classify("POST", f.as_bytes(), Some(b"LOCK"), true).operation, UnlockAndRelock);
        assert_eq!(op("POST", f, Some("REFRESH_LOCK")), RefreshLock);
        assert_eq!(op("POST", f, Some("UNLOCK")), Unlock);
        assert_eq!(op("POST", f, Some("GET_LOCK")), GetLock);
        assert_eq!(op("POST", f, Some("RENAME_FILE")), RenameFile);
        assert_eq!(op("POST", f, Some("DELETE")), DeleteFile);
        assert_eq!(op("POST", f, Some("PUT_USER_INFO")), PutUserInfo);
        assert_eq!(op("POST", f, Some("GET_SHARE_URL")), GetShareUrl);
        assert_eq!(op("GET", "/wopi/files/42/ancestry", None), EnumerateAncestors);
        assert_eq!(op("GET", "/wopi/containers/7/ancestry", None), EnumerateAncestors);
        assert_eq!(op("GET", "/wopi/files/42/ecosystem_pointer", None), GetEcosystem);
        assert_eq!(op("GET", "/wopi/containers/7/ecosystem_pointer", None), GetEcosystem);
        assert_eq!(op("GET", "/wopi/containers/7", None), CheckContainerInfo);
        assert_eq!(op("GET", "/wopi/containers/7/children", None), EnumerateChildren);
        assert_eq!(op("POST", "/wopi/containers/7", Some("CREATE_CHILD_CONTAINER")), CreateChildContainer);
        assert_eq!(op("POST", "/wopi/containers/7", Some("CREATE_CHILD_FILE")), CreateChildFile);
        assert_eq!(op("POST", "/wopi/containers/7", Some("DELETE_CONTAINER")), DeleteContainer);
        assert_eq!(op("POST", "/wopi/containers/7", Some("RENAME_CONTAINER")), RenameContainer);
        assert_eq!(op("POST", "/wopi/containers/7", Some("GET_SHARE_URL")), GetContainerShareUrl);
        assert_eq!(op("GET", "/wopi/ecosystem", None), CheckEcosystem);
        assert_eq!(op("GET", "/wopibootstrapper", None), Bootstrapper);
        assert_eq!(op("POST", "/wopibootstrapper", None), Bootstrapper);
    }

    #[test]
    fn odd_requests_are_unknown_and_ids_are_raw() {
        assert_eq!(op("POST", "/wopi/files/42", Some("EXPLODE")), OtherOverride);
        assert_eq!(op("DELETE", "/wopi/files/42", None), Unknown);
        assert_eq!(op("GET", "/status", None), Unknown);
        assert_eq!(op("GET", "/wopi/files", None), Unknown);
        let c = classify("GET", b"/wopi/files/a%2Fb/contents?x=1", None, false);
        assert_eq!((c.operation, c.file_id), (GetFile, Some(&b"a%2Fb"[..])));
        assert_eq!(classify("POST", b"/wopi/files/9", Some(b"nope"), false).file_id, None);
        // Encoded keywords still classify (deny rules hold), without a file id.
        assert_eq!(classify("POST", b"/%77opi/files/9", Some(b"DELETE"), false).operation, DeleteFile);
        assert_eq!(classify("POST", b"/x/../WOPI/files/9", Some(b"DELETE"), false).operation, DeleteFile);
    }

    #[test]
    fn the_last_wopi_segment_counts_and_overrides_are_trimmed() {
        assert_eq!(op("GET", "/wopi/x/wopi/files/42", None), CheckFileInfo);
        assert_eq!(classify("GET", b"/wopi/files/1/wopi/files/2", None, false).file_id, Some(&b"2"[..]));
        assert_eq!(op("GET", "/wopi/files/42/contents/more", None), Unknown, "four segments after wopi");
        assert_eq!(op("GET", "/wopi/files/42/contents/more/wopi/files/7", None), CheckFileInfo);
        assert_eq!(op("GET", "/wopi", None), Unknown);
        assert_eq!(op("GET", "/a/wopibootstrapper/wopi/files/1", None), Bootstrapper);
        assert_eq!(op("POST", "/wopi/files/42", Some("LOCKS")), OtherOverride);
        assert_eq!(op("POST", "/wopi/containers/7", Some("Delete_Container")), DeleteContainer);
        assert_eq!(op("POST", "/wopi/containers/7", Some("DELETE")), Unknown, "a file override on a container");
    }

    #[test]
    fn every_write_to_contents_is_putfile() {
        let c = "/wopi/files/42/contents?access_token=t";
        // richdocuments routes POST …/contents to putFile without reading the override.
        assert_eq!(op("POST", c, None), PutFile);
        assert_eq!(op("POST", c, Some("LOCK")), PutFile);
        assert_eq!(op("POST", c, Some("")), PutFile);
        assert_eq!(op("PUT", c, None), PutFile);
        assert_eq!(op("PATCH", c, Some("PUT")), PutFile);
        assert_eq!(op("HEAD", c, None), GetFile);
        assert_eq!(op("HEAD", "/wopi/files/42", None), CheckFileInfo);
        assert_eq!(classify("POST", c.as_bytes(), None, false).file_id, Some(&b"42"[..]));
        assert_eq!(op("POST", "/x/../wopi/files/42/contents", None), PutFile);
    }

    #[test]
    fn a_file_post_reads_the_override_exactly_as_the_host_does() {
        let invalid = |over: Option<&str>| {
            let c = classify("POST", b"/wopi/files/42?access_token=t", over.map(str::as_bytes), false);
            (c.override_invalid, c.operation, c.file_id)
        };
        // Nextcloud runs PutRelativeFile for anything it does not know exactly: refused.
        for over in [None, Some(""), Some("lock"), Some("Lock"), Some("PUT"), Some("LO CK"), Some("LOCK\t"), Some("_X")]
        {
            assert_eq!(invalid(over), (true, Unknown, None), "{over:?}");
        }
        for container in ["CREATE_CHILD_FILE", "DELETE_CONTAINER", "RENAME_CONTAINER", "CREATE_CHILD_CONTAINER"] {
            assert!(invalid(Some(container)).0, "{container}");
        }
        assert!(invalid(Some(&"A".repeat(65))).0, "longer than a name");
        // Canonical and known: classified as before, never invalid.
        for (over, want) in
            [("LOCK", Lock), ("UNLOCK", Unlock), ("PUT_RELATIVE", PutRelativeFile), ("RENAME_FILE", RenameFile)]
        {
            assert_eq!(invalid(Some(over)), (false, want, Some(&b"42"[..])), "{over}");
        }
        // Canonical and unknown: its own operation (OtherOverride until the configuration names it).
        assert_eq!(invalid(Some("COBALT_X9")), (false, OtherOverride, Some(&b"42"[..])));
        let named = Operation::from_config_name("COBALT_X9").unwrap();
        assert_eq!(named.name(), "COBALT_X9");
        assert_eq!(invalid(Some("COBALT_X9")).1, named);
        assert_eq!(Operation::from_config_name("PUT"), Some(PutFile), "PUT stays PutFile's alias");
        // Encoded paths are read the same way.
        assert!(classify("POST", b"/%77opi/files/9", Some(b"lock"), false).override_invalid);
        // Other endpoints are as before.
        assert!(!classify("POST", b"/wopi/files/9/contents", None, false).override_invalid);
        assert!(!classify("POST", b"/wopi/containers/9", None, false).override_invalid);
        assert!(!classify("GET", b"/wopi/files/9", None, false).override_invalid);
    }

    #[test]
    fn config_names_and_override_aliases() {
        assert_eq!(Operation::from_config_name("DeleteFile"), Some(DeleteFile));
        assert_eq!(Operation::from_config_name("DELETE"), Some(DeleteFile));
        assert_eq!(Operation::from_config_name("rename_file"), Some(RenameFile));
        assert_eq!(Operation::from_config_name("putfile"), Some(PutFile));
        assert_eq!(Operation::from_config_name("Explode"), None);
        for op in Operation::ALL {
            assert_eq!(Operation::from_config_name(op.name()), Some(*op));
        }
    }
}
