//! `sum` and `avg` over numbers, with an exact integer part.
//!
//! `Int` inputs add into an `i128`, so an integer sum is exact and independent of the order
//! of updates and merges (it cannot overflow before 2^64 inputs); `Float` inputs add into
//! an `f64`. The result is `int_sum as f64 + float_sum` (divided by the count for `avg`).
//! Strings and booleans are not numbers and are ignored, like `NULL`.
//!
//! State (after the header): the count of numeric inputs as a varint, the integer sum as a
//! signed varint, the float sum as 8 bytes. An empty state has both sums zero.

use std::any::Any;

use super::codec::{self, Reader, Tag};
use super::{Accumulator, AggregateError, AggregateFunction, mismatch};
use crate::value::{ColumnType, Value};

/// `sum` or `avg`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Sum {
    /// Whether it is `avg`.
    pub(super) avg: bool,
}

impl Sum {
    fn tag(self) -> Tag {
        if self.avg { Tag::Avg } else { Tag::Sum }
    }

    fn name(self) -> &'static str {
        if self.avg { "avg" } else { "sum" }
    }
}

impl AggregateFunction for Sum {
    fn signature(&self) -> String {
        self.name().to_owned()
    }

    fn create(&self) -> Box<dyn Accumulator> {
        Box::new(SumAccumulator {
            function: *self,
            count: 0,
            int_sum: 0,
            float_sum: 0.0,
        })
    }

    fn decode(&self, bytes: &[u8]) -> Result<Box<dyn Accumulator>, AggregateError> {
        let signature = self.signature();
        let mut reader = Reader::open(bytes, &signature, self.tag())?;
        let count = reader.varint_u64()?;
        let int_sum = reader.signed_varint()?;
        let float_sum = reader.f64()?;
        if count == 0 && (int_sum != 0 || float_sum.to_bits() != 0) {
            return Err(reader.corrupt("a state of no inputs has a non-zero sum"));
        }
        reader.finish()?;
        Ok(Box::new(SumAccumulator {
            function: *self,
            count,
            int_sum,
            float_sum,
        }))
    }

    fn result_type(&self) -> ColumnType {
        ColumnType::Float
    }

    fn relative_error(&self) -> Option<f64> {
        None
    }
}

/// A running sum (and count, for `avg` and to tell an empty sum from a zero one).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct SumAccumulator {
    function: Sum,
    count: u64,
    int_sum: i128,
    float_sum: f64,
}

impl SumAccumulator {
    pub(super) fn signature(&self) -> String {
        self.function.signature()
    }
}

impl Accumulator for SumAccumulator {
    fn update(&mut self, value: &Value<'_>) {
        match value {
            Value::Int(i) => self.int_sum = self.int_sum.wrapping_add(i128::from(*i)),
            Value::Float(f) => self.float_sum += f,
            Value::Null | Value::Bool(_) | Value::Str(_) => return,
        }
        self.count = self.count.saturating_add(1);
    }

    fn merge(&mut self, other: &dyn Accumulator) -> Result<(), AggregateError> {
        match other.as_any().downcast_ref::<Self>() {
            Some(other) if other.function == self.function => {
                self.count = self.count.saturating_add(other.count);
                self.int_sum = self.int_sum.wrapping_add(other.int_sum);
                self.float_sum += other.float_sum;
                Ok(())
            }
            _ => Err(mismatch(self.signature(), other)),
        }
    }

    #[allow(clippy::cast_precision_loss)]
    fn finish(&self) -> Value<'static> {
        if self.count == 0 {
            return Value::Null;
        }
        let sum = self.int_sum as f64 + self.float_sum;
        Value::Float(if self.function.avg {
            sum / self.count as f64
        } else {
            sum
        })
    }

    fn encode(&self, out: &mut Vec<u8>) {
        codec::put_header(out, self.function.tag());
        codec::put_varint(out, u128::from(self.count));
        codec::put_signed_varint(out, self.int_sum);
        codec::put_f64(out, self.float_sum);
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::{function, run};

    #[test]
    fn sums_and_averages_take_numbers_only() {
        let values = [
            Value::Int(1),
            Value::Null,
            Value::Float(2.5),
            Value::Str("7".into()),
            Value::Bool(true),
            Value::Int(3),
        ];
        assert_eq!(run("sum", &values), Value::Float(6.5));
        assert_eq!(run("avg", &values), Value::Float(6.5 / 3.0));
        assert_eq!(run("sum", &[Value::Str("x".into())]), Value::Null);
        assert_eq!(run("avg", &[]), Value::Null);
        assert_eq!(run("sum", &[Value::Int(0)]), Value::Float(0.0));
    }

    #[test]
    fn integer_sums_are_exact_past_i64() {
        let values = [
            Value::Int(i64::MAX),
            Value::Int(i64::MAX),
            Value::Int(i64::MIN),
        ];
        #[allow(clippy::cast_precision_loss)]
        let expected = i64::MAX as f64;
        assert_eq!(run("sum", &values), Value::Float(expected));
        // 2^53 + 1 is lost by a float sum but kept by the integer one.
        let values = [Value::Int(1 << 53), Value::Int(1), Value::Int(-(1 << 53))];
        assert_eq!(run("sum", &values), Value::Float(1.0));
    }

    #[test]
    fn sums_encode_count_integer_and_float_parts() {
        let sum = function("sum", false, &[]).unwrap();
        let mut acc = sum.create();
        acc.update(&Value::Int(-2));
        acc.update(&Value::Float(0.5));
        let mut bytes = Vec::new();
        acc.encode(&mut bytes);
        let mut expected = vec![1, 3, 2, 3];
        expected.extend_from_slice(&0.5f64.to_bits().to_le_bytes());
        assert_eq!(bytes, expected);
        assert_eq!(sum.decode(&bytes).unwrap().finish(), Value::Float(-1.5));
        let avg = function("avg", false, &[]).unwrap();
        assert!(matches!(
            avg.decode(&bytes),
            Err(AggregateError::Corrupt { .. })
        ));
        let mut empty_but_summed = vec![1, 3, 0, 2];
        empty_but_summed.extend_from_slice(&[0; 8]);
        assert!(sum.decode(&empty_but_summed).is_err());
    }

    #[test]
    fn sum_and_avg_do_not_merge() {
        let mut sum = function("sum", false, &[]).unwrap().create();
        let avg = function("avg", false, &[]).unwrap().create();
        assert_eq!(
            sum.merge(avg.as_ref()).unwrap_err(),
            AggregateError::Mismatch {
                expected: "sum".into(),
                found: "avg".into()
            }
        );
    }
}
