//! `count(*)` and `count(expr)`: exact counts.
//!
//! State (after the header): the count as a varint.

use std::any::Any;

use super::codec::{self, Reader, Tag};
use super::{Accumulator, AggregateError, AggregateFunction, mismatch};
use crate::value::{ColumnType, Value};

/// `count(*)` (every input) or `count(expr)` (the non-`NULL` inputs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Count {
    /// Whether it is `count(*)`.
    pub(super) star: bool,
}

impl Count {
    fn tag(self) -> Tag {
        if self.star {
            Tag::CountStar
        } else {
            Tag::Count
        }
    }
}

impl AggregateFunction for Count {
    fn signature(&self) -> String {
        signature(self.star).to_owned()
    }

    fn create(&self) -> Box<dyn Accumulator> {
        Box::new(CountAccumulator {
            star: self.star,
            count: 0,
        })
    }

    fn decode(&self, bytes: &[u8]) -> Result<Box<dyn Accumulator>, AggregateError> {
        let signature = self.signature();
        let mut reader = Reader::open(bytes, &signature, self.tag())?;
        let count = reader.varint_u64()?;
        reader.finish()?;
        Ok(Box::new(CountAccumulator {
            star: self.star,
            count,
        }))
    }

    fn result_type(&self) -> ColumnType {
        ColumnType::Int
    }

    fn relative_error(&self) -> Option<f64> {
        None
    }

    fn is_count_star(&self) -> bool {
        self.star
    }
}

fn signature(star: bool) -> &'static str {
    if star { "count(*)" } else { "count" }
}

/// A running count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct CountAccumulator {
    star: bool,
    count: u64,
}

impl CountAccumulator {
    pub(super) fn signature(&self) -> String {
        signature(self.star).to_owned()
    }
}

impl Accumulator for CountAccumulator {
    fn update(&mut self, value: &Value<'_>) {
        if self.star || !value.is_null() {
            self.count = self.count.saturating_add(1);
        }
    }

    fn merge(&mut self, other: &dyn Accumulator) -> Result<(), AggregateError> {
        match other.as_any().downcast_ref::<Self>() {
            Some(other) if other.star == self.star => {
                self.count = self.count.saturating_add(other.count);
                Ok(())
            }
            _ => Err(mismatch(self.signature(), other)),
        }
    }

    fn finish(&self) -> Value<'static> {
        // A count past i64::MAX would take centuries of input; it saturates rather than wraps.
        Value::Int(i64::try_from(self.count).unwrap_or(i64::MAX))
    }

    fn encode(&self, out: &mut Vec<u8>) {
        codec::put_header(out, Count { star: self.star }.tag());
        codec::put_varint(out, u128::from(self.count));
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::function;

    #[test]
    fn count_star_counts_nulls_and_count_does_not() {
        let star = function("count", true, &[]).unwrap();
        let count = function("count", false, &[]).unwrap();
        let (mut a, mut b) = (star.create(), count.create());
        for value in [
            Value::Null,
            Value::Int(1),
            Value::Str("x".into()),
            Value::Null,
        ] {
            a.update(&value);
            b.update(&value);
        }
        assert_eq!(a.finish(), Value::Int(4));
        assert_eq!(b.finish(), Value::Int(2));
        assert_eq!(count.create().finish(), Value::Int(0));
        assert!(star.is_count_star() && !count.is_count_star());
    }

    #[test]
    fn counts_encode_as_a_varint() {
        let star = function("count", true, &[]).unwrap();
        let mut acc = star.create();
        for _ in 0..300 {
            acc.update(&Value::Bool(true));
        }
        let mut bytes = Vec::new();
        acc.encode(&mut bytes);
        assert_eq!(bytes, [1, 1, 0xac, 0x02]);
        assert_eq!(star.decode(&bytes).unwrap().finish(), Value::Int(300));
    }

    #[test]
    fn count_star_and_count_do_not_mix() {
        let star = function("count", true, &[]).unwrap();
        let count = function("count", false, &[]).unwrap();
        let mut acc = star.create();
        let err = acc.merge(count.create().as_ref()).unwrap_err();
        assert!(matches!(err, AggregateError::Mismatch { .. }), "{err}");
        let mut bytes = Vec::new();
        count.create().encode(&mut bytes);
        assert!(matches!(
            star.decode(&bytes),
            Err(AggregateError::Corrupt { .. })
        ));
    }
}
