//! Which WOPI operation a request is (docs/operations.md): method + path after the `/wopi` segment +
//! `X-WOPI-Override` (+ `X-WOPI-OldLock` for UnlockAndRelock).
//!
//! Where hosts route on the path alone, so does this: Nextcloud's richdocuments sends every
//! `POST …/files/{id}/contents` to its PutFile handler without reading `X-WOPI-Override`, so any
//! write to `…/contents` is PutFile, and HEAD is routed as GET. Only `…/files/{id}` and
//! `…/containers/{id}` POSTs are told apart by the override, as hosts dispatch them.

use std::fmt;

macro_rules! operations {
    ($($variant:ident),* $(,)?) => {
        /// A WOPI operation.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Operation {
            $(
                #[doc = stringify!($variant)]
                $variant,
            )*
        }

        impl Operation {
            /// Every operation, in table order.
            pub const ALL: &'static [Operation] = &[$(Operation::$variant),*];

            /// Microsoft's name, used in logs and configuration.
            pub fn name(self) -> &'static str {
                match self { $(Operation::$variant => stringify!($variant)),* }
            }
        }
    };
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
    Unknown,
);

impl Operation {
    /// From its name, or from the `X-WOPI-Override` value of a file operation
    /// (`DELETE`, `RENAME_FILE`, `PUT_RELATIVE`, ...), case-insensitively.
    pub fn from_config_name(text: &str) -> Option<Operation> {
        if let Some(op) = Operation::ALL.iter().find(|op| op.name().eq_ignore_ascii_case(text)) {
            return Some(*op);
        }
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
}

/// Classifies a request. `override_` is `X-WOPI-Override`; `old_lock` whether `X-WOPI-OldLock`
/// is present. A path that only classifies once normalised (percent-encoded, dot segments) gets
/// that operation but no file id, so deny rules cannot be dodged by encoding.
pub fn classify<'a>(method: &str, raw_target: &'a [u8], override_: Option<&[u8]>, old_lock: bool) -> Classified<'a> {
    let raw = classify_path(method, raw_target, override_, old_lock);
    if raw.operation != Operation::Unknown {
        return raw;
    }
    let path = raw_target.split(|&b| b == b'?').next().unwrap_or_default();
    let normalised = crate::paths::normalise(path);
    Classified { operation: classify_path(method, normalised.as_bytes(), override_, old_lock).operation, file_id: None }
}

fn classify_path<'a>(method: &str, raw_target: &'a [u8], override_: Option<&[u8]>, old_lock: bool) -> Classified<'a> {
    let path = &raw_target[..raw_target.iter().position(|&b| b == b'?' || b == b'#').unwrap_or(raw_target.len())];
    let unknown = Classified { operation: Operation::Unknown, file_id: None };
    // The segments after the last `wopi` one (at most 3 matter; more match nothing), on the stack.
    let mut after: [&[u8]; 3] = [&[]; 3];
    let mut after_wopi: Option<usize> = None;
    for segment in path.split(|&b| b == b'/').filter(|s| !s.is_empty()) {
        if segment.eq_ignore_ascii_case(b"wopibootstrapper") {
            return Classified { operation: Operation::Bootstrapper, file_id: None };
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
            let op = match (get, post, over) {
                (true, _, _) => CheckFileInfo,
                (_, true, b"PUT_RELATIVE") => PutRelativeFile,
                (_, true, b"LOCK") if old_lock => UnlockAndRelock,
                (_, true, b"LOCK") => Lock,
                (_, true, b"REFRESH_LOCK") => RefreshLock,
                (_, true, b"UNLOCK") => Unlock,
                (_, true, b"GET_LOCK") => GetLock,
                (_, true, b"RENAME_FILE") => RenameFile,
                (_, true, b"DELETE") => DeleteFile,
                (_, true, b"PUT_USER_INFO") => PutUserInfo,
                (_, true, b"GET_SHARE_URL") => GetShareUrl,
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
    Classified { operation, file_id: id.filter(|_| operation != Unknown) }
}

/// The `X-WOPI-Override` values classification knows, as written in its table.
const OVERRIDES: [&[u8]; 13] = [
    b"PUT_RELATIVE",
    b"LOCK",
    b"REFRESH_LOCK",
    b"UNLOCK",
    b"GET_LOCK",
    b"RENAME_FILE",
    b"DELETE",
    b"PUT_USER_INFO",
    b"GET_SHARE_URL",
    b"CREATE_CHILD_CONTAINER",
    b"CREATE_CHILD_FILE",
    b"DELETE_CONTAINER",
    b"RENAME_CONTAINER",
];

/// `X-WOPI-Override`, trimmed and compared case-insensitively, as its [`OVERRIDES`] spelling;
/// empty when absent or unknown (no known value matches then).
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
        assert_eq!(op("POST", f, Some("put_user_info")), PutUserInfo);
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
        assert_eq!(op("POST", "/wopi/files/42", None), Unknown);
        assert_eq!(op("POST", "/wopi/files/42", Some("EXPLODE")), Unknown);
        assert_eq!(op("DELETE", "/wopi/files/42", None), Unknown);
        assert_eq!(op("GET", "/status", None), Unknown);
        assert_eq!(op("GET", "/wopi/files", None), Unknown);
        let c = classify("GET", b"/wopi/files/a%2Fb/contents?x=1", None, false);
        assert_eq!((c.operation, c.file_id), (GetFile, Some(&b"a%2Fb"[..])));
        assert_eq!(classify("POST", b"/wopi/files/9", Some(b"NOPE"), false).file_id, None);
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
        assert_eq!(op("POST", "/wopi/files/42", Some("  refresh_lock\t")), RefreshLock);
        assert_eq!(op("POST", "/wopi/files/42", Some("LOCKS")), Unknown);
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
