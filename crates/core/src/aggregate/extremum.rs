//! `min` and `max` over numbers, as doubles.
//!
//! `Int` inputs are compared as doubles (beyond 2^53 they round, as the `Float` result would
//! anyway); NaN, strings and booleans are ignored, like `NULL`. Doubles are ordered by IEEE
//! 754 total order, so `-0.0 < 0.0` and the result does not depend on the order of inputs.
//!
//! State (after the header): `0` when empty, else `1` and the extremum as 8 bytes.

use std::any::Any;
use std::cmp::Ordering;

use super::codec::{self, Reader, Tag};
use super::{Accumulator, AggregateError, AggregateFunction, mismatch};
use crate::value::{ColumnType, Value};

/// `min` or `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Extremum {
    /// Whether it is `max`.
    pub(super) max: bool,
}

impl Extremum {
    fn tag(self) -> Tag {
        if self.max { Tag::Max } else { Tag::Min }
    }

    fn name(self) -> &'static str {
        if self.max { "max" } else { "min" }
    }

    /// The ordering `candidate` must have against the current extremum to replace it.
    fn better(self) -> Ordering {
        if self.max {
            Ordering::Greater
        } else {
            Ordering::Less
        }
    }
}

impl AggregateFunction for Extremum {
    fn signature(&self) -> String {
        self.name().to_owned()
    }

    fn create(&self) -> Box<dyn Accumulator> {
        Box::new(ExtremumAccumulator {
            function: *self,
            value: None,
        })
    }

    fn decode(&self, bytes: &[u8]) -> Result<Box<dyn Accumulator>, AggregateError> {
        let signature = self.signature();
        let mut reader = Reader::open(bytes, &signature, self.tag())?;
        let value = match reader.u8()? {
            0 => None,
            1 => {
                let value = reader.f64()?;
                if value.is_nan() {
                    return Err(reader.corrupt("the extremum is NaN"));
                }
                Some(value)
            }
            flag => return Err(reader.corrupt(format!("unknown presence flag {flag}"))),
        };
        reader.finish()?;
        Ok(Box::new(ExtremumAccumulator {
            function: *self,
            value,
        }))
    }

    fn result_type(&self) -> ColumnType {
        ColumnType::Float
    }

    fn relative_error(&self) -> Option<f64> {
        None
    }
}

/// The least or greatest number so far.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct ExtremumAccumulator {
    function: Extremum,
    value: Option<f64>,
}

impl ExtremumAccumulator {
    pub(super) fn signature(&self) -> String {
        self.function.signature()
    }

    fn offer(&mut self, candidate: f64) {
        if candidate.is_nan() {
            return;
        }
        match self.value {
            Some(current) if candidate.total_cmp(&current) != self.function.better() => {}
            _ => self.value = Some(candidate),
        }
    }
}

impl Accumulator for ExtremumAccumulator {
    fn update(&mut self, value: &Value<'_>) {
        if let Some(number) = value.as_f64() {
            self.offer(number);
        }
    }

    fn merge(&mut self, other: &dyn Accumulator) -> Result<(), AggregateError> {
        match other.as_any().downcast_ref::<Self>() {
            Some(other) if other.function == self.function => {
                if let Some(value) = other.value {
                    self.offer(value);
                }
                Ok(())
            }
            _ => Err(mismatch(self.signature(), other)),
        }
    }

    fn finish(&self) -> Value<'static> {
        self.value.map_or(Value::Null, Value::Float)
    }

    fn encode(&self, out: &mut Vec<u8>) {
        codec::put_header(out, self.function.tag());
        match self.value {
            None => out.push(0),
            Some(value) => {
                out.push(1);
                codec::put_f64(out, value);
            }
        }
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
    fn extrema_take_numbers_only() {
        let values = [
            Value::Int(3),
            Value::Str("9".into()),
            Value::Float(-1.5),
            Value::Null,
            Value::Float(f64::NAN),
            Value::Int(7),
        ];
        assert_eq!(run("min", &values), Value::Float(-1.5));
        assert_eq!(run("max", &values), Value::Float(7.0));
        assert_eq!(run("max", &[Value::Bool(true)]), Value::Null);
        let zeros = [Value::Float(0.0), Value::Float(-0.0)];
        let min = run("min", &zeros);
        assert!(matches!(min, Value::Float(z) if z.is_sign_negative()));
    }

    #[test]
    fn extrema_encode_a_presence_flag_and_the_value() {
        let max = function("max", false, &[]).unwrap();
        let mut bytes = Vec::new();
        max.create().encode(&mut bytes);
        assert_eq!(bytes, [1, 5, 0]);
        let mut acc = max.create();
        acc.update(&Value::Int(2));
        bytes.clear();
        acc.encode(&mut bytes);
        let mut expected = vec![1, 5, 1];
        expected.extend_from_slice(&2.0f64.to_bits().to_le_bytes());
        assert_eq!(bytes, expected);
        assert_eq!(max.decode(&bytes).unwrap().finish(), Value::Float(2.0));
        assert!(max.decode(&[1, 5, 2]).is_err());
        let mut nan = vec![1, 5, 1];
        nan.extend_from_slice(&f64::NAN.to_bits().to_le_bytes());
        assert!(max.decode(&nan).is_err());
    }
}
