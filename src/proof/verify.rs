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

/// Which form of the URL the signature was made over (docs/proof.md §4: ONLYOFFICE keeps a
/// default port it was given, Collabora and .NET drop it; ONLYOFFICE signs a `'` it sends as
/// `%27`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UrlForm {
    /// `public_url` as configured.
    AsConfigured,
    /// The other form: the default port added to, or dropped from, `public_url`.
    DefaultPortToggled,
    /// `public_url` as configured, with each `%27` of the query read as `'`.
    QuoteUnescaped,
    /// The other form of `public_url`, with each `%27` of the query read as `'`.
    DefaultPortToggledQuoteUnescaped,
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
    verify_recovering(keys, request, token, window, now, scratch, &mut |key, _, signature| key.recover(signature))
}

/// The public operation [`verify_recovering`] is given: the SHA-256 digest the signature of
/// that header carries under a key, or `None`.
pub type Recover<'r> = dyn FnMut(&ProofKey, Header, &[u8]) -> Option<[u8; 32]> + 'r;

/// One accepted combination of one source: which, its key, its signature.
type Try<'k, 's> = (Combination, Option<&'k ProofKey>, Option<&'s [u8]>);

/// Which proof header a signature came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Header {
    /// `X-WOPI-Proof`.
    Proof,
    /// `X-WOPI-ProofOld`.
    ProofOld,
}

/// [`verify_parsed`] with the public operation passed in (a test counts them; the gate reuses a
/// first pass's results after a re-fetch): `recover` gives the SHA-256 digest the signature of
/// that header carries under a key, or `None`.
pub fn verify_recovering(
    keys: &KeySnapshot,
    request: &SignedRequest<'_>,
    token: &Token<'_>,
    window: &TimeWindow,
    now: SystemTime,
    scratch: &mut Vec<u8>,
    recover: &mut Recover<'_>,
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

    // One public operation per (signature, key), on first need; each candidate message then
    // costs a hash (docs/proof.md §2).
    let mut on_stack = [[Recovered::NotYet; 3]; STACK_SOURCES];
    let mut on_heap = Vec::new();
    let recovered: &mut [[Recovered; 3]] = if keys.sources.len() <= STACK_SOURCES {
        &mut on_stack[..keys.sources.len()]
    } else {
        on_heap.resize(keys.sources.len(), [Recovered::NotYet; 3]);
        &mut on_heap
    };
    let quoted = quote_unescaped(request.raw_target);
    let mut forms = [None; MAX_ATTEMPTS];
    for (slot, attempt) in forms.iter_mut().zip(attempts(request, token, quoted.as_deref())) {
        *slot = Some(attempt);
    }
    let mut digests = [None::<[u8; 32]>; MAX_ATTEMPTS];
    // Combination first, then source, then message: a genuine request signed over any form
    // costs one public operation (its X-WOPI-Proof with the current key), and of two that
    // verify the current key's own proof wins.
    for combination in 0..3 {
        for (source, slots) in keys.sources.iter().zip(recovered.iter_mut()) {
            let (combo, key, signature) =
                source_tries(&source.current, source.old.as_ref(), proof, proof_old)[combination];
            let (Some(key), Some(signature)) = (key, signature) else { continue };
            let header = if combo == Combination::ProofOldWithCurrent { Header::ProofOld } else { Header::Proof };
            for (form, digest) in forms.iter().zip(digests.iter_mut()) {
                let Some(attempt) = form else { break };
                let Some(carried) = slots[combination].get(|| recover(key, header, signature)) else { break };
                let wanted = *digest.get_or_insert_with(|| {
                    attempt.write(scratch, ticks);
                    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, scratch);
                    d.as_ref().try_into().unwrap_or([0; 32])
                });
                if same(&carried, &wanted) {
                    // `scratch` must hold the bytes that verified.
                    attempt.write(scratch, ticks);
                    let url_form = attempt.url_form;
                    return Ok(Verified { valid: ProofValid(()), combination: combo, source: source.index, url_form });
                }
            }
        }
    }
    Err(Refusal::ProofInvalid)
}

/// Messages tried at most: two URL forms × (two token forms + the `%27` form).
const MAX_ATTEMPTS: usize = 6;

/// Sources whose recovered digests are kept on the stack (more take one allocation).
const STACK_SOURCES: usize = 8;

/// One (key, signature) pair's public operation: not run yet, or its outcome.
#[derive(Debug, Clone, Copy)]
enum Recovered {
    NotYet,
    Done(Option<[u8; 32]>),
}

impl Recovered {
    fn get(&mut self, run: impl FnOnce() -> Option<[u8; 32]>) -> Option<[u8; 32]> {
        match *self {
            Recovered::Done(d) => d,
            Recovered::NotYet => {
                let d = run();
                *self = Recovered::Done(d);
                d
            }
        }
    }
}

/// The three accepted combinations of one source, in their order (docs/proof.md §2), as
/// (combination, key, signature); `None` where the key or header is absent. The old key is
/// tried only when it is not the current one; ProofOld with the old key is never accepted.
fn source_tries<'k, 's>(
    current: &'k ProofKey,
    old: Option<&'k ProofKey>,
    proof: Option<&'s [u8]>,
    proof_old: Option<&'s [u8]>,
) -> [Try<'k, 's>; 3] {
    let old = old.filter(|old| *old != current);
    [
        (Combination::ProofWithCurrent, Some(current), proof),
        (Combination::ProofOldWithCurrent, Some(current), proof_old),
        (Combination::ProofWithOld, old, proof),
    ]
}

/// Constant-time equality of two digests.
fn same(a: &[u8], b: &[u8]) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(a, b).is_ok()
}

/// The target with each `%27` of its query read as `'`, when its query holds one: ONLYOFFICE
/// signs a token's `'` raw (`encodeURIComponent` keeps it) and sends it as `%27`
/// (`URI.serialize`), so the signature covers bytes that are never sent. Every host's query
/// parser reads both as the same byte, and `encodeURIComponent` never writes `%27`.
pub fn quote_unescaped(raw_target: &[u8]) -> Option<Vec<u8>> {
    let query = raw_target.iter().position(|&b| b == b'?')?;
    if !raw_target[query..].windows(3).any(|w| w == b"%27") {
        return None;
    }
    let mut out = raw_target[..query].to_vec();
    let mut rest = &raw_target[query..];
    while let Some(at) = rest.windows(3).position(|w| w == b"%27") {
        out.extend_from_slice(&rest[..at]);
        out.push(b'\'');
        rest = &rest[at + 3..];
    }
    out.extend_from_slice(rest);
    Some(out)
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
    /// The target signed: the raw one, or [`quote_unescaped`]'s.
    pub target: &'a [u8],
}

impl Attempt<'_> {
    /// Writes the signed bytes of this attempt into `out`.
    pub fn write(&self, out: &mut Vec<u8>, ticks: i64) {
        write_signed_bytes(out, self.token, self.base_upper, self.target, ticks);
    }
}

/// Every message [`verify`] tries, in its order: `public_url` as configured, then its other
/// default-port form; within each, the decoded token, then the raw one when it differs; last,
/// when `quoted` (the target [`quote_unescaped`] made) is given, each base form with it and the
/// decoded token. `explain` lists the same attempts.
pub fn attempts<'a>(
    request: &SignedRequest<'a>,
    token: &'a Token<'a>,
    quoted: Option<&'a [u8]>,
) -> impl Iterator<Item = Attempt<'a>> + 'a {
    let raw_target = request.raw_target;
    let bases = std::iter::once((request.url_base_upper, UrlForm::AsConfigured))
        .chain(request.url_base_alt_upper.map(|alt| (alt, UrlForm::DefaultPortToggled)));
    let token_form = move |i: usize| match (token, i) {
        (Token::Present { .. }, 0) => TokenForm::Decoded,
        (Token::Present { .. }, _) => TokenForm::Raw,
        _ => TokenForm::Empty,
    };
    let plain = bases.clone().flat_map(move |(base_upper, url_form)| {
        token.candidates().enumerate().map(move |(i, candidate)| Attempt {
            url_form,
            base_upper,
            token_form: token_form(i),
            token: candidate,
            target: raw_target,
        })
    });
    let quoted = quoted.into_iter().flat_map(move |target| {
        bases.clone().map(move |(base_upper, url_form)| Attempt {
            url_form: match url_form {
                UrlForm::AsConfigured => UrlForm::QuoteUnescaped,
                _ => UrlForm::DefaultPortToggledQuoteUnescaped,
            },
            base_upper,
            token_form: token_form(0),
            token: token.candidates().next().unwrap_or_default(),
            target,
        })
    });
    plain.chain(quoted)
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
