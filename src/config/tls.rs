//! TLS settings: the listener's certificate (`[tls]`) and how wopi-guard checks the servers it
//! calls (`[upstream_tls]` for the WOPI host, `[discovery]` for the office servers).

use std::path::{Path, PathBuf};

use crate::trust::{read_ca_file, ClientTls};

use super::error::{err, ConfigError};
use super::raw::RawTls;

/// Validates one client TLS block. `key` is the table (`upstream_tls`, `discovery`); `https_used`
/// says whether any URL it applies to is https (settings for plain http are refused).
pub(super) fn client_tls(
    errors: &mut Vec<ConfigError>,
    key: &str,
    ca_file: Option<String>,
    insecure: Option<bool>,
    https_used: Option<bool>,
) -> Option<ClientTls> {
    let before = errors.len();
    let insecure_skip_verify = insecure.unwrap_or(false);
    let ca_file = ca_file.filter(|f| !f.is_empty()).map(PathBuf::from);
    if let Some(path) = &ca_file {
        if let Err(e) = read_ca_file(path) {
            errors.push(err(&format!("{key}.ca_file"), format!("{e}; give a PEM file of CA certificates")));
        }
        if insecure_skip_verify {
            errors.push(err(
                &format!("{key}.insecure_skip_verify"),
                "cannot be combined with ca_file; remove one (ca_file is the safe choice)".into(),
            ));
        }
    }
    if https_used == Some(false) && (ca_file.is_some() || insecure_skip_verify) {
        let which = if ca_file.is_some() { "ca_file" } else { "insecure_skip_verify" };
        errors.push(err(
            &format!("{key}.{which}"),
            "applies only to https:// URLs and none is https; remove it or use https".into(),
        ));
    }
    (errors.len() == before).then_some(ClientTls { ca_file, insecure_skip_verify })
}

/// The listener's `[tls]`: `Some(None)` for plain TCP, `Some(Some((cert, key)))` for TLS.
#[allow(clippy::option_option)]
pub(super) fn listener_tls(errors: &mut Vec<ConfigError>, raw: Option<&RawTls>) -> Option<Option<(PathBuf, PathBuf)>> {
    match raw.map(|t| (t.cert_file.as_deref(), t.key_file.as_deref())) {
        None => Some(None),
        Some((Some(cert), Some(key))) => {
            let mut ok = true;
            for (k, file) in [("tls.cert_file", cert), ("tls.key_file", key)] {
                if !Path::new(file).is_file() {
                    errors.push(err(k, format!("{file} is not a readable file; give the PEM file's path")));
                    ok = false;
                }
            }
            ok.then(|| Some((PathBuf::from(cert), PathBuf::from(key))))
        }
        Some(_) => {
            errors.push(err("tls", "set both cert_file and key_file, or remove [tls]".into()));
            None
        }
    }
}
