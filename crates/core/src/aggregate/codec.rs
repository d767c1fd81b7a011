//! The byte layer of partial states: the header, varints and a checked reader.
//!
//! Every state opens with [`FORMAT_VERSION`] and the [`Tag`] of the function that wrote it.
//! Integers are little-endian; a varint is unsigned LEB128 (7 bits a byte, low group first);
//! a signed varint is zigzag-mapped first (0, -1, 1, -2, ... as 0, 1, 2, 3, ...); a double
//! is its IEEE 754 bits as 8 little-endian bytes. Reading never panics: every shortfall,
//! overflow or leftover byte is an [`AggregateError::Corrupt`].

use super::AggregateError;

/// The version of the partial-state encoding, the first byte of every state.
pub const FORMAT_VERSION: u8 = 1;

/// The second byte of a state: which function wrote it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(super) enum Tag {
    CountStar = 1,
    Count = 2,
    Sum = 3,
    Min = 4,
    Max = 5,
    Avg = 6,
    CountDistinct = 7,
    Quantile = 8,
}

impl Tag {
    const ALL: [Self; 8] = [
        Self::CountStar,
        Self::Count,
        Self::Sum,
        Self::Min,
        Self::Max,
        Self::Avg,
        Self::CountDistinct,
        Self::Quantile,
    ];

    /// The function's name, for messages.
    fn name(self) -> &'static str {
        match self {
            Self::CountStar => "count(*)",
            Self::Count => "count",
            Self::Sum => "sum",
            Self::Min => "min",
            Self::Max => "max",
            Self::Avg => "avg",
            Self::CountDistinct => "count_distinct",
            Self::Quantile => "quantile",
        }
    }
}

/// Appends the header of a state written by `tag`'s function.
pub(super) fn put_header(out: &mut Vec<u8>, tag: Tag) {
    out.push(FORMAT_VERSION);
    out.push(tag as u8);
}

/// Appends `value` as a varint (at most 19 bytes for a `u128`, 10 for a `u64`).
pub(super) fn put_varint(out: &mut Vec<u8>, mut value: u128) {
    while value >= 0x80 {
        // The mask keeps the low 7 bits, so the cast cannot truncate.
        #[allow(clippy::cast_possible_truncation)]
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    #[allow(clippy::cast_possible_truncation)]
    out.push(value as u8);
}

/// Appends `value` as a zigzag varint.
#[allow(clippy::cast_sign_loss)]
pub(super) fn put_signed_varint(out: &mut Vec<u8>, value: i128) {
    put_varint(out, ((value << 1) ^ (value >> 127)) as u128);
}

/// Appends `value`'s IEEE 754 bits, little-endian.
pub(super) fn put_f64(out: &mut Vec<u8>, value: f64) {
    out.extend_from_slice(&value.to_bits().to_le_bytes());
}

/// The number of bytes [`put_varint`] writes for `value`.
pub(super) fn varint_len(value: u128) -> usize {
    let bits = 128 - value.leading_zeros() as usize;
    bits.div_ceil(7).max(1)
}

/// Reads one state, checking its header first; every error names the decoding function.
#[derive(Debug)]
pub(super) struct Reader<'a> {
    bytes: &'a [u8],
    function: &'a str,
}

impl<'a> Reader<'a> {
    /// A reader of `bytes` past the header, which must be version 1 written by `tag`.
    pub(super) fn open(
        bytes: &'a [u8],
        function: &'a str,
        tag: Tag,
    ) -> Result<Self, AggregateError> {
        let mut reader = Self { bytes, function };
        let version = reader.u8()?;
        if version != FORMAT_VERSION {
            return Err(reader.corrupt(format!(
                "the state has format version {version}; this build reads version {FORMAT_VERSION}"
            )));
        }
        let found = reader.u8()?;
        if found != tag as u8 {
            let found = Tag::ALL
                .iter()
                .find(|known| **known as u8 == found)
                .map_or_else(
                    || format!("an unknown aggregate (tag {found})"),
                    |known| known.name().to_owned(),
                );
            return Err(reader.corrupt(format!("the state is one of {found}")));
        }
        Ok(reader)
    }

    /// A [`AggregateError::Corrupt`] naming this reader's function.
    pub(super) fn corrupt(&self, message: impl Into<String>) -> AggregateError {
        AggregateError::Corrupt {
            function: self.function.to_owned(),
            message: message.into(),
        }
    }

    /// The next `n` bytes.
    pub(super) fn bytes(&mut self, n: usize) -> Result<&'a [u8], AggregateError> {
        if self.bytes.len() < n {
            return Err(self.corrupt(format!(
                "the state ends early: {n} more byte(s) expected, {} left",
                self.bytes.len()
            )));
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    /// The next byte.
    pub(super) fn u8(&mut self) -> Result<u8, AggregateError> {
        let [byte] = self.array::<1>()?;
        Ok(byte)
    }

    /// The next `N` bytes as an array.
    pub(super) fn array<const N: usize>(&mut self) -> Result<[u8; N], AggregateError> {
        let bytes = self.bytes(N)?;
        let mut array = [0; N];
        array.copy_from_slice(bytes);
        Ok(array)
    }

    /// The next 8 bytes as a little-endian `u64`.
    pub(super) fn u64(&mut self) -> Result<u64, AggregateError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// The next 8 bytes as a double.
    pub(super) fn f64(&mut self) -> Result<f64, AggregateError> {
        Ok(f64::from_bits(self.u64()?))
    }

    /// The next varint, refused when it does not fit 128 bits.
    pub(super) fn varint(&mut self) -> Result<u128, AggregateError> {
        let mut value: u128 = 0;
        let mut shift = 0;
        loop {
            let byte = self.u8()?;
            let group = u128::from(byte & 0x7f);
            if shift >= 128 || (shift > 0 && group >> (128 - shift) != 0) {
                return Err(self.corrupt("a varint overflows 128 bits"));
            }
            value |= group << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
            shift += 7;
        }
    }

    /// The next varint, refused when it does not fit a `u64`.
    pub(super) fn varint_u64(&mut self) -> Result<u64, AggregateError> {
        let value = self.varint()?;
        u64::try_from(value)
            .map_err(|_| self.corrupt(format!("the count {value} overflows 64 bits")))
    }

    /// The next zigzag varint.
    #[allow(clippy::cast_possible_wrap)]
    pub(super) fn signed_varint(&mut self) -> Result<i128, AggregateError> {
        let raw = self.varint()?;
        Ok((raw >> 1) as i128 ^ -((raw & 1) as i128))
    }

    /// Refuses bytes left after the state.
    pub(super) fn finish(self) -> Result<(), AggregateError> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(self.corrupt(format!(
                "{} byte(s) follow the end of the state",
                self.bytes.len()
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader(bytes: &[u8]) -> Reader<'_> {
        Reader {
            bytes,
            function: "test",
        }
    }

    #[test]
    fn varints_round_trip_at_their_edges() {
        let values = [0, 1, 127, 128, 300, u128::from(u64::MAX), u128::MAX];
        for value in values {
            let mut out = Vec::new();
            put_varint(&mut out, value);
            assert_eq!(out.len(), varint_len(value), "{value}");
            let mut r = reader(&out);
            assert_eq!(r.varint().unwrap(), value);
            r.finish().unwrap();
        }
        for value in [0, -1, 1, i128::MIN, i128::MAX, -300] {
            let mut out = Vec::new();
            put_signed_varint(&mut out, value);
            assert_eq!(reader(&out).signed_varint().unwrap(), value);
        }
        let mut out = Vec::new();
        put_signed_varint(&mut out, -2);
        assert_eq!(out, [3]);
    }

    #[test]
    fn headers_name_the_writer_when_refused() {
        let err = Reader::open(&[1, 3, 0], "count", Tag::Count).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the stored partial state of count cannot be read: the state is one of sum"
        );
        let err = Reader::open(&[1, 99], "count", Tag::Count).unwrap_err();
        assert!(err.to_string().ends_with("an unknown aggregate (tag 99)"));
        assert!(Reader::open(&[], "count", Tag::Count).is_err());
    }

    #[test]
    fn overlong_and_short_varints_are_corrupt() {
        let mut overlong = vec![0xff; 18];
        overlong.push(0x7f);
        assert!(reader(&overlong).varint().is_err());
        assert!(reader(&[0x80, 0x80]).varint().is_err());
        let mut max = Vec::new();
        put_varint(&mut max, u128::from(u64::MAX) + 1);
        assert!(reader(&max).varint_u64().is_err());
    }
}
