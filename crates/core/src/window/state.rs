//! How the window operator's state is stored.
//!
//! Three parts, all committed with the checkpoint that covers them:
//! - [`OperatorState`], small, as JSON in the checkpoint row: the format version, the
//!   fingerprint and definition of the plan that wrote it, per-partition maxima, the
//!   watermark and the counters. Written whole at each checkpoint.
//! - One keyed entry per (window, key) ([`KeyedState`]: group = window start, key = the
//!   key's text), written only when it changed: [`encode_slot`].
//! - The de-duplication hashes, as append-only chunks per event-time bucket (group = the
//!   bucket's start), little-endian `u64`s.
//!
//! A state written before keyed entries existed (format 1: no `format` field, counts per
//! key inside the JSON) is read by [`LegacyState`], for the one plan that wrote it.
//!
//! [`KeyedState`]: crate::ports::KeyedState

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::value::Value;

/// The format of [`OperatorState`] and of keyed entries this build writes.
pub const FORMAT: u32 = 2;

/// The operator's small state, stored whole in each checkpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorState {
    /// [`FORMAT`] when written by this build.
    pub format: u32,
    /// The fingerprint of the plan that wrote it.
    pub fingerprint: String,
    /// The definition of the plan that wrote it (for messages).
    pub definition: String,
    /// Largest event time seen per source partition (`"stream/partition"`).
    pub max_ts: BTreeMap<String, i64>,
    /// The pipeline's watermark, in epoch milliseconds.
    pub watermark: Option<i64>,
    /// Events dropped because every window they belong to had closed.
    pub late_events: u64,
    /// Events ignored because they were already counted.
    pub duplicates: u64,
    /// Events the filter left out.
    #[serde(default)]
    pub filtered: u64,
}

/// The state of format 1: counts per key of each open tumbling window.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct LegacyState {
    /// Largest event time seen per source partition.
    pub max_ts: BTreeMap<String, i64>,
    /// The watermark.
    pub watermark: Option<i64>,
    /// Open windows by start.
    pub open: BTreeMap<i64, LegacyWindow>,
    /// Late events so far.
    pub late_events: u64,
    /// Duplicates so far.
    pub duplicates: u64,
}

/// One open window of a [`LegacyState`].
#[derive(Debug, Clone, Default, Deserialize)]
pub struct LegacyWindow {
    /// Count per event key.
    pub counts: BTreeMap<String, u64>,
    /// De-duplication hashes, in states written before state chunks.
    #[serde(default)]
    pub seen: BTreeSet<u64>,
}

/// Why stored state cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The bytes end early or hold an impossible value.
    #[error("{0}")]
    Malformed(&'static str),
    /// A format this build does not know.
    #[error("format {0} is not known to this build")]
    Format(u8),
}

/// One (window, key)'s entry, decoded (accumulators still as partial states).
#[derive(Debug, Clone, PartialEq)]
pub struct SlotRecord {
    /// Window end (a session's end moves as it grows).
    pub end: i64,
    /// Times its row was written.
    pub revision: u64,
    /// Whether its closed row has been emitted.
    pub fired: bool,
    /// The key fields' values.
    pub keys: Vec<Value<'static>>,
    /// Each aggregate's partial state.
    pub partials: Vec<Vec<u8>>,
}

/// Encodes a slot: format byte, end, revision, fired, the keys, then the partials, each
/// length-prefixed; integers little-endian.
#[must_use]
pub fn encode_slot(
    end: i64,
    revision: u64,
    fired: bool,
    keys: &[Value<'_>],
    partials: &[Vec<u8>],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(32 + partials.iter().map(Vec::len).sum::<usize>());
    out.push(u8::try_from(FORMAT).unwrap_or(u8::MAX));
    out.extend_from_slice(&end.to_le_bytes());
    out.extend_from_slice(&revision.to_le_bytes());
    out.push(u8::from(fired));
    push_len(&mut out, keys.len());
    for key in keys {
        encode_value(key, &mut out);
    }
    push_len(&mut out, partials.len());
    for partial in partials {
        push_len(&mut out, partial.len());
        out.extend_from_slice(partial);
    }
    out
}

/// Decodes what [`encode_slot`] wrote.
///
/// # Errors
/// [`DecodeError`] for another format or damaged bytes.
pub fn decode_slot(bytes: &[u8]) -> Result<SlotRecord, DecodeError> {
    let mut input = Input(bytes);
    let format = input.byte()?;
    if u32::from(format) != FORMAT {
        return Err(DecodeError::Format(format));
    }
    let end = i64::from_le_bytes(input.array()?);
    let revision = u64::from_le_bytes(input.array()?);
    let fired = input.byte()? != 0;
    let keys = (0..input.len()?)
        .map(|_| decode_value(&mut input))
        .collect::<Result<Vec<_>, _>>()?;
    let partials = (0..input.len()?)
        .map(|_| {
            let len = input.len()?;
            input.take(len).map(<[u8]>::to_vec)
        })
        .collect::<Result<Vec<_>, _>>()?;
    if !input.0.is_empty() {
        return Err(DecodeError::Malformed("trailing bytes after a slot"));
    }
    Ok(SlotRecord {
        end,
        revision,
        fired,
        keys,
        partials,
    })
}

fn push_len(out: &mut Vec<u8>, len: usize) {
    out.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_le_bytes());
}

fn encode_value(value: &Value<'_>, out: &mut Vec<u8>) {
    match value {
        Value::Null => out.push(0),
        Value::Bool(b) => out.extend_from_slice(&[1, u8::from(*b)]),
        Value::Int(i) => {
            out.push(2);
            out.extend_from_slice(&i.to_le_bytes());
        }
        Value::Float(f) => {
            out.push(3);
            out.extend_from_slice(&f.to_le_bytes());
        }
        Value::Str(s) => {
            out.push(4);
            push_len(out, s.len());
            out.extend_from_slice(s.as_bytes());
        }
    }
}

fn decode_value(input: &mut Input<'_>) -> Result<Value<'static>, DecodeError> {
    Ok(match input.byte()? {
        0 => Value::Null,
        1 => Value::Bool(input.byte()? != 0),
        2 => Value::Int(i64::from_le_bytes(input.array()?)),
        3 => Value::Float(f64::from_le_bytes(input.array()?)),
        4 => {
            let len = input.len()?;
            let text = std::str::from_utf8(input.take(len)?)
                .map_err(|_| DecodeError::Malformed("a key string is not UTF-8"))?;
            Value::Str(text.to_owned().into())
        }
        _ => return Err(DecodeError::Malformed("unknown value tag")),
    })
}

/// The bytes left to decode.
struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.0.len() < n {
            return Err(DecodeError::Malformed("a slot ends early"));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn byte(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn len(&mut self) -> Result<usize, DecodeError> {
        usize::try_from(u32::from_le_bytes(self.array()?))
            .map_err(|_| DecodeError::Malformed("length too large"))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn slots_round_trip() {
        let keys = vec![
            Value::Str("fr".into()),
            Value::Int(-3),
            Value::Float(2.5),
            Value::Bool(true),
            Value::Null,
        ];
        let partials = vec![vec![1, 2, 3], vec![]];
        let bytes = encode_slot(-60_000, 7, true, &keys, &partials);
        assert_eq!(
            decode_slot(&bytes).unwrap(),
            SlotRecord {
                end: -60_000,
                revision: 7,
                fired: true,
                keys,
                partials
            }
        );
        let mut other = bytes.clone();
        other[0] = 9;
        assert_eq!(decode_slot(&other), Err(DecodeError::Format(9)));
    }

    proptest! {
        #[test]
        fn decoding_any_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode_slot(&bytes);
        }
    }
}
