//! Proof verification: the signed bytes, the timestamp window and the three-combination rule.

mod signed;
mod timestamp;
mod verify;

pub use signed::{param_name_is, query_pairs, write_signed_bytes, Query, Token};
pub use timestamp::{parse_ticks, ticks_at, TimeWindow, UNIX_EPOCH_TICKS};
pub use verify::{
    attempts, quote_unescaped, rotation_evidence, verify, verify_parsed, verify_recovering, Attempt, Combination,
    Header, ProofHeaders, ProofValid, SignedRequest, TokenForm, UrlForm, Verified,
};
