//! The scan: a record read in one pass over its bytes, without serde's machinery, for the
//! records the log holds nearly always (what Tributary itself writes).
//!
//! It takes a strict subset of JSON: strings without escapes, integers of at most 18
//! digits, decimals, `true`, `false`, `null`, objects and arrays no deeper than
//! [`MAX_DEPTH`]. On anything else (an escape, a long integer, a refused event, a syntax
//! error) it answers `None`, *undecided*, and the caller runs the serde fast path
//! ([`super::decode`]), which decides: so the scan never refuses, and whatever it accepts
//! it reads exactly as that path does (a property test holds them equal).

use std::borrow::Cow;

use crate::event::{MAX_EVENT_ID_LEN, StreamName, Timestamp, check_key};
use crate::value::Value;

use super::{EventView, Node, Projection, Wrapper};

/// The deepest nesting the scan takes (serde_json's own limit is 128).
const MAX_DEPTH: usize = 64;

/// The event a record of `stream` holds, with the values of `projection`'s fields in
/// `slots` (one per path, all `NULL` on entry), and, for a record of an internal stream
/// (`wrapped`), what its payload wraps; `None` when undecided, with `slots` in any state.
pub(super) fn record<'a>(
    stream: &StreamName,
    text: &'a str,
    projection: &Projection,
    slots: &mut [Value<'a>],
    wrapped: bool,
) -> Option<(EventView<'a>, Option<Wrapper<'a>>)> {
    let mut scan = Scan { text, at: 0 };
    let mut id = None;
    let mut named = false;
    let mut ts = None;
    let mut key: Option<Option<&str>> = None;
    let mut payload = false;
    let mut wrapper = None;
    scan.members(|scan, field| {
        match field {
            "id" if id.is_none() => {
                let value = scan.string()?;
                if value.is_empty() || value.len() > MAX_EVENT_ID_LEN {
                    return None;
                }
                id = Some(value);
            }
            "stream" if !named => {
                if scan.string()? != stream.as_str() {
                    return None;
                }
                named = true;
            }
            "ts" if ts.is_none() => ts = Some(scan.timestamp()?.validated().ok()?),
            "key" if key.is_none() => {
                let value = if scan.peek()? == b'n' {
                    scan.word("null")?;
                    None
                } else {
                    let value = scan.string()?;
                    check_key(value).ok()?;
                    Some(value)
                };
                key = Some(value);
            }
            "payload" if !payload && wrapped => {
                wrapper = Some(scan.wrapper(&projection.root, slots)?);
                payload = true;
            }
            "payload" if !payload => {
                scan.object(Some(&projection.root), slots, 1)?;
                payload = true;
            }
            _ => return None,
        }
        Some(())
    })?;
    scan.end()?;
    if !(named && payload) {
        return None;
    }
    let view = EventView {
        id: Cow::Borrowed(id?),
        ts: ts?,
        key: key.flatten().map(Cow::Borrowed),
    };
    Some((view, wrapper))
}

/// A position in a record's text.
struct Scan<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Scan<'a> {
    fn bytes(&self) -> &'a [u8] {
        self.text.as_bytes()
    }

    /// The next byte that is not white space, not consumed.
    fn peek(&mut self) -> Option<u8> {
        let bytes = self.bytes();
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = bytes.get(self.at) {
            self.at += 1;
        }
        bytes.get(self.at).copied()
    }

    fn expect(&mut self, byte: u8) -> Option<()> {
        (self.peek()? == byte).then(|| self.at += 1)
    }

    /// An object: each member's name given to `member`, with the scan at its value.
    fn members(&mut self, mut member: impl FnMut(&mut Self, &'a str) -> Option<()>) -> Option<()> {
        self.expect(b'{')?;
        if self.peek()? == b'}' {
            self.at += 1;
            return Some(());
        }
        loop {
            let name = self.string()?;
            self.expect(b':')?;
            member(self, name)?;
            if !self.next_member(b'}')? {
                return Some(());
            }
        }
    }

    /// After a member or an item: whether another follows (a comma), or the container
    /// ends (`close`).
    fn next_member(&mut self, close: u8) -> Option<bool> {
        match self.peek()? {
            b',' => {
                self.at += 1;
                Some(true)
            }
            byte if byte == close => {
                self.at += 1;
                Some(false)
            }
            _ => None,
        }
    }

    /// Nothing but white space left.
    fn end(&mut self) -> Option<()> {
        self.peek().is_none().then_some(())
    }

    fn word(&mut self, word: &str) -> Option<()> {
        let end = self.at + word.len();
        (self.bytes().get(self.at..end)? == word.as_bytes()).then(|| self.at = end)
    }

    /// A string without escapes or control characters, borrowed.
    fn string(&mut self) -> Option<&'a str> {
        self.expect(b'"')?;
        let start = self.at;
        let end = start + plain_len(&self.bytes()[start..]);
        if self.bytes().get(end) != Some(&b'"') {
            return None;
        }
        self.at = end + 1;
        // Both ends are next to an ASCII quote: character boundaries.
        Some(&self.text[start..end])
    }

    /// A number, as serde_json reads it: an integer of at most 18 digits is an `Int`, a
    /// decimal or an exponent a `Float`; `None` for a longer integer and for `-0` (which
    /// serde_json reads as a float).
    fn number(&mut self) -> Option<Value<'a>> {
        self.peek()?;
        let bytes = self.bytes();
        let start = self.at;
        let negative = bytes.get(self.at) == Some(&b'-');
        if negative {
            self.at += 1;
        }
        let digits = self.at;
        match bytes.get(self.at)? {
            b'0' => {
                self.at += 1;
                if bytes.get(self.at).is_some_and(u8::is_ascii_digit) {
                    return None;
                }
            }
            b'1'..=b'9' => self.skip_digits(),
            _ => return None,
        }
        let integer = &bytes[digits..self.at];
        let mut float = false;
        if bytes.get(self.at) == Some(&b'.') {
            self.at += 1;
            self.some_digits()?;
            float = true;
        }
        if let Some(b'e' | b'E') = bytes.get(self.at) {
            self.at += 1;
            if let Some(b'+' | b'-') = bytes.get(self.at) {
                self.at += 1;
            }
            self.some_digits()?;
            float = true;
        }
        if float {
            // serde_json's own reading of the number, so both agree to the last bit; an
            // overflow is its error.
            return serde_json::from_str::<f64>(&self.text[start..self.at])
                .ok()
                .map(Value::Float);
        }
        if integer.len() > 18 || (negative && integer == b"0") {
            return None;
        }
        let magnitude = integer
            .iter()
            .fold(0_i64, |n, d| n * 10 + i64::from(d - b'0'));
        Some(Value::Int(if negative { -magnitude } else { magnitude }))
    }

    fn skip_digits(&mut self) {
        let bytes = self.bytes();
        while bytes.get(self.at).is_some_and(u8::is_ascii_digit) {
            self.at += 1;
        }
    }

    fn some_digits(&mut self) -> Option<()> {
        let start = self.at;
        self.skip_digits();
        (self.at > start).then_some(())
    }

    /// A partition number.
    fn partition(&mut self) -> Option<u32> {
        match self.number()? {
            Value::Int(n) => u32::try_from(n).ok(),
            _ => None,
        }
    }

    /// The payload of a record of an internal stream, exactly as the repartition task
    /// writes it (see [`super::WrapperSeed`]): a wrapped event's origin, own key and
    /// payload, or a progress record's origin.
    fn wrapper(&mut self, root: &Node, slots: &mut [Value<'a>]) -> Option<Wrapper<'a>> {
        let mut stream = None;
        let mut partition = None;
        let mut key = None;
        let mut payload = false;
        let mut progress = None;
        self.members(|scan, field| {
            match field {
                "stream" if stream.is_none() => stream = Some(scan.string()?),
                "partition" if partition.is_none() => partition = Some(scan.partition()?),
                "key" if key.is_none() => key = Some(scan.string()?),
                "payload" if !payload => {
                    scan.object(Some(root), slots, 1)?;
                    payload = true;
                }
                "progress_of" if progress.is_none() => progress = Some(scan.origin()?),
                _ => return None,
            }
            Some(())
        })?;
        match (stream, partition, payload, progress) {
            (Some(stream), Some(partition), true, None) => Some(Wrapper::Event {
                stream: Cow::Borrowed(stream),
                partition,
                key: key.map(Cow::Borrowed),
            }),
            (None, None, false, Some((stream, partition))) if key.is_none() => {
                Some(Wrapper::Progress {
                    stream: Cow::Borrowed(stream),
                    partition,
                })
            }
            _ => None,
        }
    }

    /// The source partition a progress record names: `{"stream": ..., "partition": ...}`.
    fn origin(&mut self) -> Option<(&'a str, u32)> {
        let mut stream = None;
        let mut partition = None;
        self.members(|scan, field| {
            match field {
                "stream" if stream.is_none() => stream = Some(scan.string()?),
                "partition" if partition.is_none() => partition = Some(scan.partition()?),
                _ => return None,
            }
            Some(())
        })?;
        Some((stream?, partition?))
    }

    /// An event time: an RFC 3339 string or epoch milliseconds.
    fn timestamp(&mut self) -> Option<Timestamp> {
        if self.peek()? == b'"' {
            return Timestamp::parse_rfc3339(self.string()?).ok();
        }
        match self.number()? {
            Value::Int(millis) => Some(Timestamp::from_millis(millis)),
            _ => None,
        }
    }

    /// An object of a payload at `depth`, its field names checked, the values of the paths
    /// below `node` kept in `slots`.
    fn object(&mut self, node: Option<&Node>, slots: &mut [Value<'a>], depth: usize) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.members(|scan, name| {
            if name.contains('.') || name.starts_with('$') {
                return None;
            }
            scan.value(node.and_then(|n| n.child(name)), slots, false, depth)
        })
    }

    /// Any value of a payload, kept in its slot when `node` is a projected path; an item
    /// of an array (`in_array`) may not be an array.
    fn value(
        &mut self,
        node: Option<&Node>,
        slots: &mut [Value<'a>],
        in_array: bool,
        depth: usize,
    ) -> Option<()> {
        // A repeated field counts with its last value only.
        if let Some(node) = node {
            node.clear_below(slots);
        }
        let value = match self.peek()? {
            b'"' => Value::Str(Cow::Borrowed(self.string()?)),
            b'{' => {
                self.object(node, slots, depth + 1)?;
                Value::Null
            }
            b'[' if !in_array && depth < MAX_DEPTH => {
                self.at += 1;
                if self.peek()? == b']' {
                    self.at += 1;
                } else {
                    loop {
                        self.value(None, slots, true, depth + 1)?;
                        if !self.next_member(b']')? {
                            break;
                        }
                    }
                }
                Value::Null
            }
            b't' => self.word("true").map(|()| Value::Bool(true))?,
            b'f' => self.word("false").map(|()| Value::Bool(false))?,
            b'n' => self.word("null").map(|()| Value::Null)?,
            b'-' | b'0'..=b'9' => self.number()?,
            _ => return None,
        };
        if let Some(slot) = node.and_then(|n| n.slot) {
            slots[slot] = value;
        }
        Some(())
    }
}

/// How many bytes of `bytes` come before the first quote, backslash or control character:
/// eight at a time.
fn plain_len(bytes: &[u8]) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let mut chunks = bytes.chunks_exact(8);
    let mut len = 0;
    for chunk in chunks.by_ref() {
        let mut word = [0; 8];
        word.copy_from_slice(chunk);
        let word = u64::from_le_bytes(word);
        let quote = word ^ (ONES * u64::from(b'"'));
        let backslash = word ^ (ONES * u64::from(b'\\'));
        // The lowest byte flagged in each term is exact (a zero byte, a byte below 0x20);
        // bytes above it may be flagged wrongly, which the lowest set bit ignores.
        let found = (quote.wrapping_sub(ONES) & !quote)
            | (backslash.wrapping_sub(ONES) & !backslash)
            | (word.wrapping_sub(ONES * 0x20) & !word);
        let found = found & HIGHS;
        if found != 0 {
            return len + (found.trailing_zeros() / 8) as usize;
        }
        len += 8;
    }
    len + chunks
        .remainder()
        .iter()
        .position(|&b| matches!(b, b'"' | b'\\' | 0..=0x1f))
        .unwrap_or(chunks.remainder().len())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::plain_len;

    proptest! {
        #[test]
        fn plain_len_finds_the_first_special_byte(bytes in prop::collection::vec(
            prop_oneof![4 => any::<u8>(), 1 => Just(b'"'), 1 => Just(b'\\'), 1 => 0_u8..0x20],
            0..40,
        )) {
            let expected = bytes
                .iter()
                .position(|&b| matches!(b, b'"' | b'\\' | 0..=0x1f))
                .unwrap_or(bytes.len());
            prop_assert_eq!(plain_len(&bytes), expected);
        }
    }
}
