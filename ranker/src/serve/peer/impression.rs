//! The impression id of an interleaved response and the feedback it allows.
//!
//! The id is self-contained, so any pod of the model can credit a click without
//! shared state: `i1.` then URL-safe base64 (no padding) of
//!
//! ```text
//! u8 len, stableVersion | u8 len, canaryVersion | u8 n | ceil(n/8) bytes of
//! team bits (1 = canary, document i in bit i % 8 of byte i / 8) |
//! n × 6-byte document id hashes (big-endian) | 4-byte checksum
//! ```
//!
//! The hash of an id is FNV-1a 64 of its text (a string id as is, an integer id
//! in decimal; so a click given as "7" matches the document 7), kept to 48 bits:
//! a wrong match among 100 shown documents has odds of about 1 in 3·10¹². The
//! checksum (FNV-1a of the model name and the payload, 32 bits) refuses ids that
//! were altered, truncated or issued for another model. 20 documents with the
//! contract's version strings make 209 characters.

use std::fmt::{self, Write as _};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

use super::interleave::Team;
use crate::serve::parse::DocId;

/// The only version of the format; a future one gets `i2.`.
const PREFIX: &str = "i1.";

/// Documents recorded: a click below the first 100 merged positions credits no
/// one (result pages are far shorter), and the id stays under 1 KB.
pub const MAX_DOCUMENTS: usize = 100;

const HASH_BYTES: usize = 6;
const HASH_MASK: u64 = (1 << (8 * HASH_BYTES)) - 1;
const CHECKSUM_BYTES: usize = 4;

/// A decoded impression: the version pair and the shown documents' teams.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Impression {
    /// The stable version.
    pub stable_version: String,
    /// The canary version.
    pub canary_version: String,
    /// Each shown document's 48-bit id hash and team, in merged order.
    pub shown: Vec<(u64, Team)>,
}

/// Why an impression id was refused (the 400's message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImpressionError {
    /// Not `i1.…`.
    #[error("impression {0:?} is not an impression id (expected \"i1.\" and URL-safe base64)")]
    Format(String),
    /// Valid base64 whose content does not add up.
    #[error("impression is truncated or malformed ({0})")]
    Malformed(&'static str),
    /// The checksum does not match this model.
    #[error(
        "impression was not issued for model {0:?} (or was altered): its checksum does not match"
    )]
    Foreign(String),
}

/// FNV-1a 64 over text, as a `fmt::Write` sink so integer ids hash their decimal
/// form without an allocation.
struct Fnv(u64);

impl Fnv {
    fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    fn bytes(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

impl fmt::Write for Fnv {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.bytes(s.as_bytes());
        Ok(())
    }
}

/// The hash documents are matched by (impressions, clicks and the shadow
/// comparison): FNV-1a 64 of the id's text.
pub fn id_hash(id: &DocId) -> u64 {
    match id {
        DocId::Str(s) => text_hash(s),
        _ => {
            let mut h = Fnv::new();
            // Writing into Fnv cannot fail.
            let _ = write!(h, "{id}");
            h.0
        }
    }
}

fn text_hash(text: &str) -> u64 {
    let mut h = Fnv::new();
    h.bytes(text.as_bytes());
    h.0
}

/// A document id (a string or an integer) read straight into its [`id_hash`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashedId(pub u64);

impl<'de> Deserialize<'de> for HashedId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<HashedId, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = HashedId;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a document id (a string or an integer)")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<HashedId, E> {
                Ok(HashedId(text_hash(v)))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<HashedId, E> {
                Ok(HashedId(id_hash(&DocId::UInt(v))))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<HashedId, E> {
                Ok(HashedId(id_hash(&DocId::Int(v))))
            }
        }
        d.deserialize_any(V)
    }
}

fn checksum(model: &str, payload: &[u8]) -> [u8; CHECKSUM_BYTES] {
    let mut h = Fnv::new();
    h.bytes(model.as_bytes());
    h.bytes(&[0xff]);
    h.bytes(payload);
    let [a, b, c, d, ..] = h.0.to_be_bytes();
    [a, b, c, d]
}

/// Encodes the first [`MAX_DOCUMENTS`] of `shown` (id hash, team). Versions
/// longer than 255 bytes are cut (the config refuses them before).
pub fn encode(
    model: &str,
    stable_version: &str,
    canary_version: &str,
    shown: &[(u64, Team)],
) -> String {
    let shown = &shown[..shown.len().min(MAX_DOCUMENTS)];
    let n = shown.len();
    let mut payload = Vec::with_capacity(3 + 64 + n.div_ceil(8) + HASH_BYTES * n + CHECKSUM_BYTES);
    for v in [stable_version, canary_version] {
        let v = &v.as_bytes()[..v.len().min(255)];
        payload.push(v.len() as u8);
        payload.extend_from_slice(v);
    }
    payload.push(n as u8);
    let mut bits = vec![0u8; n.div_ceil(8)];
    for (i, &(_, team)) in shown.iter().enumerate() {
        if team == Team::Canary {
            bits[i / 8] |= 1 << (i % 8);
        }
    }
    payload.extend_from_slice(&bits);
    for &(hash, _) in shown {
        payload.extend_from_slice(&(hash & HASH_MASK).to_be_bytes()[8 - HASH_BYTES..]);
    }
    let sum = checksum(model, &payload);
    payload.extend_from_slice(&sum);
    let mut out = String::with_capacity(PREFIX.len() + payload.len().div_ceil(3) * 4);
    out.push_str(PREFIX);
    URL_SAFE_NO_PAD.encode_string(&payload, &mut out);
    out
}

/// Decodes an impression id issued for `model`.
pub fn decode(model: &str, id: &str) -> Result<Impression, ImpressionError> {
    let shown_id = || ImpressionError::Format(id.chars().take(40).collect());
    let b64 = id.strip_prefix(PREFIX).ok_or_else(shown_id)?;
    let bytes = URL_SAFE_NO_PAD.decode(b64).map_err(|_| shown_id())?;
    let body_len = bytes
        .len()
        .checked_sub(CHECKSUM_BYTES)
        .ok_or(ImpressionError::Malformed("shorter than its checksum"))?;
    let (payload, sum) = bytes.split_at(body_len);
    if checksum(model, payload) != sum {
        return Err(ImpressionError::Foreign(model.to_owned()));
    }
    let mut r = Reader(payload);
    let stable_version = r.string()?;
    let canary_version = r.string()?;
    let n = usize::from(r.take(1)?[0]);
    let bits = r.take(n.div_ceil(8))?.to_vec();
    let mut shown = Vec::with_capacity(n);
    for i in 0..n {
        let mut be = [0u8; 8];
        be[8 - HASH_BYTES..].copy_from_slice(r.take(HASH_BYTES)?);
        let team = if bits[i / 8] & (1 << (i % 8)) != 0 {
            Team::Canary
        } else {
            Team::Stable
        };
        shown.push((u64::from_be_bytes(be), team));
    }
    if !r.0.is_empty() {
        return Err(ImpressionError::Malformed("bytes after the documents"));
    }
    Ok(Impression {
        stable_version,
        canary_version,
        shown,
    })
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ImpressionError> {
        if self.0.len() < n {
            return Err(ImpressionError::Malformed("ends early"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn string(&mut self) -> Result<String, ImpressionError> {
        let len = usize::from(self.take(1)?[0]);
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec())
            .map_err(|_| ImpressionError::Malformed("a version is not UTF-8"))
    }
}

/// The answer to one feedback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// Clicks on documents the canary placed.
    pub canary_clicks: usize,
    /// Clicks on documents the stable placed.
    pub stable_clicks: usize,
}

impl Outcome {
    /// `canary`, `stable` or `tie` (more clicks wins; equal or none is a tie).
    pub fn winner(&self) -> &'static str {
        match self.canary_clicks.cmp(&self.stable_clicks) {
            std::cmp::Ordering::Greater => "canary",
            std::cmp::Ordering::Less => "stable",
            std::cmp::Ordering::Equal => "tie",
        }
    }
}

/// Credits each click (a full 64-bit [`id_hash`]) to the team of the first shown
/// document with that id; a click on a document not in the impression (past
/// [`MAX_DOCUMENTS`], or never shown) credits no one. The same id clicked twice
/// counts twice, as the client reported it.
pub fn credit(impression: &Impression, clicks: &[u64]) -> Outcome {
    let mut outcome = Outcome {
        canary_clicks: 0,
        stable_clicks: 0,
    };
    for &click in clicks {
        let team = impression
            .shown
            .iter()
            .find(|(hash, _)| *hash == click & HASH_MASK)
            .map(|&(_, team)| team);
        match team {
            Some(Team::Canary) => outcome.canary_clicks += 1,
            Some(Team::Stable) => outcome.stable_clicks += 1,
            None => {}
        }
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(n: usize) -> Vec<(u64, Team)> {
        (0..n)
            .map(|i| {
                let team = if i % 3 == 0 {
                    Team::Canary
                } else {
                    Team::Stable
                };
                (id_hash(&DocId::Str(format!("doc-{i}"))), team)
            })
            .collect()
    }

    #[test]
    fn roundtrip_keeps_versions_teams_and_48_bit_hashes() {
        let s = shown(20);
        let id = encode("search-ranker", "2026-11-20.1", "2026-11-27.2", &s);
        assert!(id.starts_with("i1."));
        assert!(
            id.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)),
            "{id}"
        );
        assert!(id.len() <= 250, "{} characters", id.len());
        let back = decode("search-ranker", &id).unwrap();
        assert_eq!(back.stable_version, "2026-11-20.1");
        assert_eq!(back.canary_version, "2026-11-27.2");
        let want: Vec<(u64, Team)> = s.iter().map(|&(h, t)| (h & HASH_MASK, t)).collect();
        assert_eq!(back.shown, want);
        let empty = encode("m", "a", "b", &[]);
        assert_eq!(decode("m", &empty).unwrap().shown, vec![]);
    }

    #[test]
    fn only_the_first_100_documents_are_recorded() {
        let id = encode("m", "a", "b", &shown(250));
        assert_eq!(decode("m", &id).unwrap().shown.len(), MAX_DOCUMENTS);
    }

    #[test]
    fn garbage_and_foreign_ids_are_refused() {
        let id = encode("m", "v1", "v2", &shown(5));
        assert!(matches!(
            decode("other", &id),
            Err(ImpressionError::Foreign(_))
        ));
        for bad in ["", "i1.", "i2.AAAA", "i1.!!!!", "hello", "i1.AAAAAAAA"] {
            assert!(decode("m", bad).is_err(), "{bad}");
        }
        // One changed character or a cut end is caught.
        let mut altered = id.clone().into_bytes();
        let last = altered.len() - 3;
        altered[last] = if altered[last] == b'A' { b'B' } else { b'A' };
        assert!(decode("m", std::str::from_utf8(&altered).unwrap()).is_err());
        assert!(decode("m", &id[..id.len() - 4]).is_err());
        let e = decode("m", "nonsense").unwrap_err().to_string();
        assert!(e.contains("not an impression id"), "{e}");
    }

    #[test]
    fn a_well_formed_payload_with_a_bad_layout_is_malformed_not_a_panic() {
        // A valid checksum over a payload that claims more documents than it has.
        let mut payload = vec![1, b'a', 1, b'b', 9, 0];
        let sum = checksum("m", &payload);
        payload.extend_from_slice(&sum);
        let id = format!("i1.{}", URL_SAFE_NO_PAD.encode(&payload));
        assert!(matches!(
            decode("m", &id),
            Err(ImpressionError::Malformed(_))
        ));
    }

    #[test]
    fn clicks_credit_the_team_that_placed_the_document() {
        let docs = [
            (DocId::Str("d7".into()), Team::Canary),
            (DocId::UInt(3), Team::Stable),
            (DocId::Int(-2), Team::Stable),
        ];
        let s: Vec<(u64, Team)> = docs.iter().map(|(d, t)| (id_hash(d), *t)).collect();
        let imp = decode("m", &encode("m", "a", "b", &s)).unwrap();
        let click = |id: DocId| id_hash(&id);
        let o = credit(&imp, &[click(DocId::Str("d7".into()))]);
        assert_eq!(
            (o.canary_clicks, o.stable_clicks, o.winner()),
            (1, 0, "canary")
        );
        // "3" and 3 name the same document; an unknown id credits no one.
        let o = credit(
            &imp,
            &[
                click(DocId::Str("3".into())),
                click(DocId::Int(-2)),
                click(DocId::Str("zz".into())),
            ],
        );
        assert_eq!(
            (o.canary_clicks, o.stable_clicks, o.winner()),
            (0, 2, "stable")
        );
        assert_eq!(credit(&imp, &[]).winner(), "tie");
        let o = credit(
            &imp,
            &[click(DocId::UInt(3)), click(DocId::Str("d7".into()))],
        );
        assert_eq!(o.winner(), "tie");
    }

    #[test]
    fn integer_ids_hash_as_their_decimal_text() {
        assert_eq!(id_hash(&DocId::UInt(42)), id_hash(&DocId::Str("42".into())));
        assert_eq!(
            id_hash(&DocId::Int(-42)),
            id_hash(&DocId::Str("-42".into()))
        );
        assert_ne!(
            id_hash(&DocId::Str("a".into())),
            id_hash(&DocId::Str("b".into()))
        );
    }
}
