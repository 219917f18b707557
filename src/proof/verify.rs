//! The accept rule of docs/proof.md §2, pure: the time is a parameter and nothing here does I/O.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use std::time::SystemTime;

use super::signed::{write_signed_bytes, Token};
use super::timestamp::{parse_ticks, TimeWindow};
use crate::keys::{KeySnapshot, ProofKey, Unproved, MAX_SIGNATURE_LEN};
use crate::refusal::Refusal;

/// Proof that a request verified. Only this module can make one, and forwarding requires one
/// (or an explicit exemption), so no code path can forward a protected request unchecked.
#[derive(Debug)]
pub struct ProofValid(());

/// Which of the three accepted combinations verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Combination {
    /// `X-WOPI-Proof` with the current key.
    ProofWithCurrent,
    /// `X-WOPI-ProofOld` with the current key: the client rotated, our discovery is stale.
    ProofOldWithCurrent,
    /// `X-WOPI-Proof` with the old key: we refreshed, the client has not rotated yet.
    ProofWithOld,
}

impl Combination {
    /// Short label for logs.
    pub fn label(self) -> &'static str {
        match self {
            Combination::ProofWithCurrent => "proof+current",
            Combination::ProofOldWithCurrent => "proofold+current",
            Combination::ProofWithOld => "proof+old",
        }
    }

    /// True unless the current key verified the current proof: discovery may be worth re-reading.
    pub fn suggests_rotation(self) -> bool {
        self != Combination::ProofWithCurrent
    }
}

/// Which form of the public base URL the signature was made over (docs/proof.md §4: ONLYOFFICE keeps
/// a default port it was given, Collabora and .NET drop it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UrlForm {
    /// `public_url` as configured.
    AsConfigured,
    /// The other form: the default port added to, or dropped from, `public_url`.
    DefaultPortToggled,
}

/// A verified request.
#[derive(Debug)]
pub struct Verified {
    /// The marker forwarding requires.
    pub valid: ProofValid,
    /// The combination that verified.
    pub combination: Combination,
    /// Index of the discovery source whose key verified.
    pub source: usize,
    /// The form of the base URL that verified.
    pub url_form: UrlForm,
}

/// The proof headers of a request, raw. `None` when absent.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProofHeaders<'a> {
    /// `X-WOPI-Proof`.
    pub proof: Option<&'a [u8]>,
    /// `X-WOPI-ProofOld`.
    pub proof_old: Option<&'a [u8]>,
    /// `X-WOPI-TimeStamp`.
    pub timestamp: Option<&'a [u8]>,
}

impl ProofHeaders<'_> {
    /// True when the request carries none of the three headers.
    pub fn all_absent(&self) -> bool {
        self.proof.is_none() && self.proof_old.is_none() && self.timestamp.is_none()
    }
}

/// What is checked: the URL as the client called it, split into the configured public base
/// (already uppercased) and the raw request target.
#[derive(Debug, Clone, Copy)]
pub struct SignedRequest<'a> {
    /// `public_url` as configured, uppercased: tried first.
    pub url_base_upper: &'a [u8],
    /// The same with its default port toggled (`:443` / `:80` added or dropped), uppercased:
    /// tried only when the configured form verifies with no key. `None`: no such form.
    pub url_base_alt_upper: Option<&'a [u8]>,
    /// The request target exactly as received.
    pub raw_target: &'a [u8],
    /// The proof headers.
    pub headers: ProofHeaders<'a>,
}

/// Checks a request against every source's keys. `scratch` is reused for the signed bytes.
pub fn verify(
    keys: &KeySnapshot,
    request: &SignedRequest<'_>,
    window: &TimeWindow,
    now: SystemTime,
    scratch: &mut Vec<u8>,
) -> Result<Verified, Refusal> {
    verify_parsed(keys, request, &Token::from_target(request.raw_target), window, now, scratch)
}

/// [`verify`] with the request's `access_token` already read from `request.raw_target` (the
/// proxy parses each query once, [`super::Query`]).
pub fn verify_parsed(
    keys: &KeySnapshot,
    request: &SignedRequest<'_>,
    token: &Token<'_>,
    window: &TimeWindow,
    now: SystemTime,
    scratch: &mut Vec<u8>,
) -> Result<Verified, Refusal> {
    let headers = &request.headers;
    if headers.all_absent() {
        return Err(Refusal::ProofMissing);
    }
    if keys.is_empty() {
        return Err(Refusal::NoKeys);
    }
    let ticks = headers.timestamp.and_then(parse_ticks).ok_or(Refusal::TimestampMalformed)?;
    window.check(ticks, now)?;
    if *token == Token::Ambiguous {
        return Err(Refusal::TokenAmbiguous);
    }

    let mut proof_buf = [0u8; MAX_SIGNATURE_LEN + 3];
    let mut old_buf = [0u8; MAX_SIGNATURE_LEN + 3];
    let proof = headers.proof.and_then(|h| decode(h, &mut proof_buf));
    let proof_old = headers.proof_old.and_then(|h| decode(h, &mut old_buf));
    // Current Collabora sends ProofOld == Proof: the second combination would repeat the first.
    let proof_old = proof_old.filter(|old| Some(*old) != proof);

    for attempt in attempts(request, token) {
        attempt.write(scratch, request.raw_target, ticks);
        for source in &keys.sources {
            if let Some(combination) = try_source(&source.current, source.old.as_ref(), scratch, proof, proof_old) {
                let url_form = attempt.url_form;
                return Ok(Verified { valid: ProofValid(()), combination, source: source.index, url_form });
            }
        }
    }
    Err(Refusal::ProofInvalid)
}

/// Which form of the access token a message signs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenForm {
    /// Percent-decoded (Collabora, ONLYOFFICE), or the only form when decoding changes nothing.
    Decoded,
    /// As on the wire (Microsoft's vectors), when it differs from the decoded form.
    Raw,
    /// No token: the empty token is signed.
    Empty,
}

/// One message the verifier checks the signatures over: a base URL form and a token form.
#[derive(Debug, Clone, Copy)]
pub struct Attempt<'a> {
    /// Which form of `public_url`.
    pub url_form: UrlForm,
    /// That form, uppercased.
    pub base_upper: &'a [u8],
    /// Which form of the token.
    pub token_form: TokenForm,
    /// The token bytes signed.
    pub token: &'a [u8],
}

impl Attempt<'_> {
    /// Writes the signed bytes of this attempt into `out`.
    pub fn write(&self, out: &mut Vec<u8>, raw_target: &[u8], ticks: i64) {
        write_signed_bytes(out, self.token, self.base_upper, raw_target, ticks);
    }
}

/// Every message [`verify`] tries, in its order: `public_url` as configured, then its other
/// default-port form; within each, the decoded token, then the raw one when it differs.
/// `explain` lists the same attempts.
pub fn attempts<'a>(request: &SignedRequest<'a>, token: &'a Token<'a>) -> impl Iterator<Item = Attempt<'a>> + 'a {
    let bases = std::iter::once((request.url_base_upper, UrlForm::AsConfigured))
        .chain(request.url_base_alt_upper.map(|alt| (alt, UrlForm::DefaultPortToggled)));
    bases.flat_map(move |(base_upper, url_form)| {
        token.candidates().enumerate().map(move |(i, candidate)| Attempt {
            url_form,
            base_upper,
            token_form: match (token, i) {
                (Token::Present { .. }, 0) => TokenForm::Decoded,
                (Token::Present { .. }, _) => TokenForm::Raw,
                _ => TokenForm::Empty,
            },
            token: candidate,
        })
    })
}

fn try_source(
    current: &ProofKey,
    old: Option<&ProofKey>,
    message: &[u8],
    proof: Option<&[u8]>,
    proof_old: Option<&[u8]>,
) -> Option<Combination> {
    if proof.is_some_and(|sig| current.verifies(message, sig)) {
        return Some(Combination::ProofWithCurrent);
    }
    if proof_old.is_some_and(|sig| current.verifies(message, sig)) {
        return Some(Combination::ProofOldWithCurrent);
    }
    let old = old.filter(|old| *old != current)?;
    if proof.is_some_and(|sig| old.verifies(message, sig)) {
        return Some(Combination::ProofWithOld);
    }
    // ProofOld verifying only with the old key is NOT genuine (docs/proof.md §2).
    None
}

/// Standard base64 into a stack buffer; anything undecodable is simply "no signature".
/// `keys.trust = "rotation"`: the held key a verified request proves, if any. A request whose
/// `X-WOPI-ProofOld` verified with a trusted key of discovery URL `source` (the combination
/// `proofold+current`) proves the held key of that same URL its `X-WOPI-Proof` verifies with,
/// over `message`, the signed bytes that verified. The caller must still check that the bytes
/// were never seen (a copied genuine `X-WOPI-Proof` is no evidence).
pub fn rotation_evidence<'k>(
    keys: &'k KeySnapshot,
    verified: &Verified,
    message: &[u8],
    proof_header: Option<&[u8]>,
) -> Option<&'k Unproved> {
    if verified.combination != Combination::ProofOldWithCurrent || keys.unproved.is_empty() {
        return None;
    }
    let mut buf = [0u8; MAX_SIGNATURE_LEN + 3];
    let proof = proof_header.and_then(|h| decode(h, &mut buf))?;
    keys.unproved.iter().filter(|u| u.index == verified.source).find(|u| u.key.verifies(message, proof))
}

fn decode<'b>(header: &[u8], out: &'b mut [u8]) -> Option<&'b [u8]> {
    let trimmed = header.trim_ascii();
    if trimmed.is_empty() || trimmed.len() > MAX_SIGNATURE_LEN.div_ceil(3) * 4 {
        return None;
    }
    let len = STANDARD.decode_slice(trimmed, out).ok()?;
    Some(&out[..len])
}
