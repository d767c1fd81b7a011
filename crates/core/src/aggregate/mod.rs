//! Aggregates: accumulators with a mergeable, storable partial state.
//!
//! An [`AggregateFunction`] (Flink's `AggregateFunction`, DataFusion's `AggregateUDF`) makes
//! [`Accumulator`]s, one per window and key. An accumulator takes values one at a time
//! ([`Accumulator::update`]), absorbs another accumulator of the same function
//! ([`Accumulator::merge`], for session merges and rollups), yields its result
//! ([`Accumulator::finish`]) and writes its partial state as bytes
//! ([`Accumulator::encode`]), which the function reads back ([`AggregateFunction::decode`])
//! after a restart, or in another process, machine or build.
//!
//! # Contract
//! - Merging is exact: merging the accumulators of any split of the inputs leaves the same
//!   state as feeding all inputs to one, so encodings are equal too. The one exception is
//!   the float part of `sum` and `avg`, since float addition is not associative.
//! - `NULL` inputs are ignored by every aggregate but `count(*)`. An empty accumulator
//!   finishes as `0` for the counts and as `NULL` for the others.
//! - Updates allocate nothing, but for sketches growing: the exact set of `count_distinct`
//!   (up to 64 hashes), its registers (once), and the bins of `quantile` (amortized).
//! - Nothing here panics, whatever the input or the bytes decoded.
//!
//! # The functions ([`FUNCTIONS`])
//! | call | result | what it is |
//! |---|---|---|
//! | `count(*)` | `Int` | every input |
//! | `count(expr)` | `Int` | the non-`NULL` inputs |
//! | `sum(expr)` | `Float` | numbers only; exact for integers (an `i128` sum) |
//! | `min(expr)`, `max(expr)` | `Float` | numbers only |
//! | `avg(expr)` | `Float` | `sum / count` of the numbers |
//! | `count_distinct(expr)` | `Int` | exact up to 64 values, then a HyperLogLog with a standard error of 1.6% ([`AggregateFunction::relative_error`]); 99.7% of estimates are within 5% |
//! | `quantile(expr, q)` | `Float` | a DDSketch: within 1% of the value of rank `ceil(q·n)` ([`nearest_rank`]), a bound that always holds |
//!
//! Strings and booleans are not numbers: the numeric aggregates ignore them as they do
//! `NULL`. Details and each function's state are documented in its module.
//!
//! # Partial states
//! A state is a byte string, the same on every platform: [`FORMAT_VERSION`] (`1`), the
//! function's tag (`1` `count(*)`, `2` `count`, `3` `sum`, `4` `min`, `5` `max`, `6`
//! `avg`, `7` `count_distinct`, `8` `quantile`), then the function's own fields: integers
//! little-endian or as LEB128 varints, signed ones zigzag-mapped first, doubles as their
//! 8 IEEE 754 bytes. Decoding refuses another version, another function's tag, another
//! parameter (`quantile`'s `q`, the sketches' precision), a short or over-long state and
//! any field out of its range, with [`AggregateError::Corrupt`].

mod codec;
mod count;
mod distinct;
mod extremum;
mod quantile;
mod sum;

use std::any::Any;
use std::fmt::Debug;
use std::sync::Arc;

pub use codec::FORMAT_VERSION;
pub use quantile::nearest_rank;

use crate::ports::ErrorDomain;
use crate::value::{ColumnType, Value};

/// One running aggregate of one window and key.
pub trait Accumulator: Debug + Send + Sync {
    /// Adds one input value (for `count(*)`, the caller passes `Value::Bool(true)`). `NULL`
    /// inputs are ignored by every aggregate but `count(*)`.
    fn update(&mut self, value: &Value<'_>);

    /// Merges another accumulator of the same function into this one (session merges,
    /// rollups).
    ///
    /// # Errors
    /// [`AggregateError::Mismatch`] when `other` is of another function (or of `quantile`
    /// with another `q`); `self` is then unchanged.
    fn merge(&mut self, other: &dyn Accumulator) -> Result<(), AggregateError>;

    /// The current result (`NULL` for sum, min, max, avg and quantile of no values; `0` for
    /// the counts).
    fn finish(&self) -> Value<'static>;

    /// Appends the partial state's bytes: a versioned, documented, platform-independent
    /// little-endian encoding (see the module docs), which the function's
    /// [`AggregateFunction::decode`] reads back.
    fn encode(&self, out: &mut Vec<u8>);

    /// The accumulator as [`Any`], for [`Accumulator::merge`] to downcast the other.
    fn as_any(&self) -> &dyn Any;
}

/// An aggregate function: makes accumulators and reads their partial states back.
pub trait AggregateFunction: Debug + Send + Sync {
    /// The canonical call, without the argument, e.g. `"count(*)"`, `"sum"`,
    /// `"quantile(0.95)"` (for fingerprints).
    fn signature(&self) -> String;

    /// A new, empty accumulator.
    fn create(&self) -> Box<dyn Accumulator>;

    /// An accumulator holding the partial state `bytes`, as [`Accumulator::encode`] wrote it.
    ///
    /// # Errors
    /// [`AggregateError::Corrupt`] when `bytes` are not a version-1 state of this very
    /// function (and parameter), or are short, long or out of range anywhere.
    fn decode(&self, bytes: &[u8]) -> Result<Box<dyn Accumulator>, AggregateError>;

    /// The type of [`Accumulator::finish`]'s non-`NULL` results.
    fn result_type(&self) -> ColumnType;

    /// The stated relative error of an approximate aggregate (`None` when exact): the
    /// standard error of `count_distinct` (0.01625), the bound of `quantile` (0.01).
    fn relative_error(&self) -> Option<f64>;

    /// Whether it takes no argument (`count(*)`).
    fn is_count_star(&self) -> bool {
        false
    }
}

/// The names [`function`] knows.
pub const FUNCTIONS: &[&str] = &[
    "count",
    "sum",
    "min",
    "max",
    "avg",
    "count_distinct",
    "quantile",
];

/// The function called `name` (any case) with literal `params` (`quantile`'s `q`), for an
/// argument, or for `*` when `star` (only `count(*)`).
///
/// # Errors
/// [`AggregateError::UnknownFunction`] for a name not in [`FUNCTIONS`];
/// [`AggregateError::BadParameter`] for `*` given to another function than `count`, for
/// parameters given to a function that takes none, and for a `q` that is missing, not a
/// number or not in `0..=1`.
pub fn function(
    name: &str,
    star: bool,
    params: &[Value<'_>],
) -> Result<Arc<dyn AggregateFunction>, AggregateError> {
    let lower = name.to_ascii_lowercase();
    let canonical = FUNCTIONS
        .iter()
        .copied()
        .find(|known| *known == lower)
        .ok_or_else(|| AggregateError::UnknownFunction(name.to_owned()))?;
    if star && canonical != "count" {
        return Err(bad_parameter(
            canonical,
            format!("{canonical}(*) is not an aggregate: only count takes *"),
        ));
    }
    if canonical == "quantile" {
        return Ok(Arc::new(quantile::Quantile {
            q: quantile_q(params)?,
        }));
    }
    if !params.is_empty() {
        return Err(bad_parameter(
            canonical,
            format!(
                "{canonical} takes one argument and no parameter, but was given {} more",
                params.len()
            ),
        ));
    }
    Ok(match canonical {
        "count" => Arc::new(count::Count { star }),
        "sum" => Arc::new(sum::Sum { avg: false }),
        "avg" => Arc::new(sum::Sum { avg: true }),
        "min" => Arc::new(extremum::Extremum { max: false }),
        "max" => Arc::new(extremum::Extremum { max: true }),
        _ => Arc::new(distinct::CountDistinct),
    })
}

/// `quantile`'s `q`, checked.
fn quantile_q(params: &[Value<'_>]) -> Result<f64, AggregateError> {
    let q = match params {
        [q] => q,
        [] => {
            return Err(bad_parameter(
                "quantile",
                "quantile needs its q, as in quantile(latency_ms, 0.95)".to_owned(),
            ));
        }
        _ => {
            return Err(bad_parameter(
                "quantile",
                format!(
                    "quantile takes one parameter, q, but was given {}",
                    params.len()
                ),
            ));
        }
    };
    let shown = match q {
        Value::Null => "NULL".to_owned(),
        Value::Str(s) => format!("'{s}'"),
        other => other.to_string(),
    };
    match q.as_f64() {
        // `+ 0.0` makes -0.0 into 0.0, so both have one signature.
        Some(q) if (0.0..=1.0).contains(&q) => Ok(q + 0.0),
        Some(_) => Err(bad_parameter(
            "quantile",
            format!("quantile's q must be between 0 and 1, not {shown}"),
        )),
        None => Err(bad_parameter(
            "quantile",
            format!("quantile's q must be a number between 0 and 1, not {shown}"),
        )),
    }
}

fn bad_parameter(function: &str, message: String) -> AggregateError {
    AggregateError::BadParameter {
        function: function.to_owned(),
        message,
    }
}

/// The [`AggregateError::Mismatch`] of merging `found` into an accumulator of `expected`.
fn mismatch(expected: String, found: &dyn Accumulator) -> AggregateError {
    AggregateError::Mismatch {
        expected,
        found: describe(found),
    }
}

/// The signature of the function of `acc`, when it is one of this module's.
fn describe(acc: &dyn Accumulator) -> String {
    let any = acc.as_any();
    if let Some(acc) = any.downcast_ref::<count::CountAccumulator>() {
        acc.signature()
    } else if let Some(acc) = any.downcast_ref::<sum::SumAccumulator>() {
        acc.signature()
    } else if let Some(acc) = any.downcast_ref::<extremum::ExtremumAccumulator>() {
        acc.signature()
    } else if any.is::<distinct::DistinctAccumulator>() {
        distinct::DistinctAccumulator::signature()
    } else if let Some(acc) = any.downcast_ref::<quantile::QuantileAccumulator>() {
        acc.signature()
    } else {
        "an aggregate defined elsewhere".to_owned()
    }
}

/// Why an aggregate cannot be made, read or merged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AggregateError {
    /// No aggregate has this name (the user's).
    #[error(
        "unknown aggregate function {0:?}; the aggregates are count, sum, min, max, avg, count_distinct and quantile"
    )]
    UnknownFunction(String),
    /// The call's `*` or literal parameters do not fit the function (the user's).
    #[error("{message}")]
    BadParameter {
        /// The function, in lower case.
        function: String,
        /// What is wrong, naming the function, for a person to read.
        message: String,
    },
    /// Stored bytes are not a partial state of this function: another format version,
    /// another function or parameter, truncated, too long or out of range (ours: stored
    /// state was damaged or written for another plan).
    #[error("the stored partial state of {function} cannot be read: {message}")]
    Corrupt {
        /// The signature of the function decoding.
        function: String,
        /// What is wrong.
        message: String,
    },
    /// An accumulator was merged with one of another function (ours: a bug in the caller).
    #[error("cannot merge a partial state of {found} into one of {expected}")]
    Mismatch {
        /// The signature of the accumulator merged into.
        expected: String,
        /// The signature of the one merged.
        found: String,
    },
}

impl AggregateError {
    /// Whose fault the error is.
    #[must_use]
    pub fn domain(&self) -> ErrorDomain {
        match self {
            Self::UnknownFunction(_) | Self::BadParameter { .. } => ErrorDomain::User,
            Self::Corrupt { .. } | Self::Mismatch { .. } => ErrorDomain::Internal,
        }
    }

    /// Whether the same call may succeed if retried: never, the inputs are all in hand.
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        false
    }
}

/// Feeds `values` to a fresh accumulator of function `name` (no parameters) and finishes it.
#[cfg(test)]
pub(crate) fn run(name: &str, values: &[Value<'_>]) -> Value<'static> {
    #[allow(clippy::unwrap_used)]
    let mut acc = function(name, false, &[]).unwrap().create();
    for value in values {
        acc.update(value);
    }
    acc.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// One of each function, with its tag.
    fn all() -> Vec<(Arc<dyn AggregateFunction>, u8)> {
        let f =
            |name: &str, star: bool, params: &[Value<'_>]| function(name, star, params).unwrap();
        vec![
            (f("count", true, &[]), 1),
            (f("count", false, &[]), 2),
            (f("sum", false, &[]), 3),
            (f("min", false, &[]), 4),
            (f("max", false, &[]), 5),
            (f("avg", false, &[]), 6),
            (f("count_distinct", false, &[]), 7),
            (f("quantile", false, &[Value::Float(0.9)]), 8),
        ]
    }

    fn encoded(acc: &dyn Accumulator) -> Vec<u8> {
        let mut out = Vec::new();
        acc.encode(&mut out);
        out
    }

    /// Integers, NULLs, strings and booleans: inputs every exactness claim covers.
    fn input(i: i64) -> Value<'static> {
        match i % 11 {
            0 => Value::Null,
            1 => Value::Str(format!("s{}", i % 7).into()),
            2 => Value::Bool(i % 2 == 0),
            _ => Value::Int((i * 7_919) % 2_003 - 1_000),
        }
    }

    fn feed(
        function: &dyn AggregateFunction,
        inputs: impl IntoIterator<Item = i64>,
    ) -> Box<dyn Accumulator> {
        let mut acc = function.create();
        for i in inputs {
            acc.update(&input(i));
        }
        acc
    }

    #[test]
    fn functions_are_found_by_name_with_their_signatures_and_types() {
        let expected = [
            ("count(*)", ColumnType::Int, None),
            ("count", ColumnType::Int, None),
            ("sum", ColumnType::Float, None),
            ("min", ColumnType::Float, None),
            ("max", ColumnType::Float, None),
            ("avg", ColumnType::Float, None),
            ("count_distinct", ColumnType::Int, Some(0.01625)),
            ("quantile(0.9)", ColumnType::Float, Some(0.01)),
        ];
        for ((function, _), (signature, result_type, error)) in all().iter().zip(expected) {
            assert_eq!(function.signature(), signature);
            assert_eq!(function.result_type(), result_type, "{signature}");
            assert_eq!(function.relative_error(), error, "{signature}");
            assert_eq!(function.is_count_star(), signature == "count(*)");
        }
        assert_eq!(function("SUM", false, &[]).unwrap().signature(), "sum");
        let q = |value: Value<'_>| function("quantile", false, &[value]).unwrap().signature();
        assert_eq!(q(Value::Int(1)), "quantile(1)");
        assert_eq!(q(Value::Float(-0.0)), "quantile(0)");
        assert_eq!(q(Value::Float(0.95)), "quantile(0.95)");
        assert_eq!(FUNCTIONS.len(), 7);
    }

    #[test]
    fn bad_calls_are_the_users_errors() {
        let message = |name: &str, star: bool, params: &[Value<'_>]| {
            let err = function(name, star, params).unwrap_err();
            assert_eq!(err.domain(), ErrorDomain::User);
            assert!(!err.is_retryable());
            err.to_string()
        };
        assert!(message("median", false, &[]).starts_with("unknown aggregate function \"median\""));
        assert_eq!(
            message("quantile", false, &[Value::Float(1.5)]),
            "quantile's q must be between 0 and 1, not 1.5"
        );
        assert_eq!(
            message("quantile", false, &[Value::Str("p95".into())]),
            "quantile's q must be a number between 0 and 1, not 'p95'"
        );
        assert!(message("quantile", false, &[Value::Float(f64::NAN)]).contains("not NaN"));
        assert!(message("quantile", false, &[]).contains("needs its q"));
        assert!(message("quantile", false, &[Value::Int(0), Value::Int(1)]).contains("given 2"));
        assert!(message("sum", true, &[]).contains("only count takes *"));
        assert!(message("count", true, &[Value::Int(1)]).contains("no parameter"));
        assert_eq!(
            function("min", false, &[Value::Int(1)]).unwrap_err(),
            AggregateError::BadParameter {
                function: "min".into(),
                message: "min takes one argument and no parameter, but was given 1 more".into()
            }
        );
    }

    #[test]
    fn empty_accumulators_finish_as_zero_or_null() {
        for (function, tag) in all() {
            let expected = if matches!(tag, 1 | 2 | 7) {
                Value::Int(0)
            } else {
                Value::Null
            };
            assert_eq!(
                function.create().finish(),
                expected,
                "{}",
                function.signature()
            );
        }
    }

    #[test]
    fn states_round_trip_and_name_their_function() {
        for (function, tag) in all() {
            for n in [0, 1, 50, 2_000] {
                let acc = feed(function.as_ref(), 0..n);
                let bytes = encoded(acc.as_ref());
                assert_eq!(&bytes[..2], &[FORMAT_VERSION, tag]);
                let decoded = function.decode(&bytes).unwrap();
                assert_eq!(encoded(decoded.as_ref()), bytes, "{}", function.signature());
                assert_eq!(decoded.finish(), acc.finish(), "{}", function.signature());
            }
        }
    }

    #[test]
    fn merges_equal_one_accumulator_fed_everything() {
        for (function, _) in all() {
            for (split, n) in [(0, 0), (0, 30), (30, 30), (17, 40), (900, 2_000)] {
                let mut merged = feed(function.as_ref(), 0..split);
                merged
                    .merge(feed(function.as_ref(), split..n).as_ref())
                    .unwrap();
                let single = feed(function.as_ref(), 0..n);
                assert_eq!(
                    encoded(merged.as_ref()),
                    encoded(single.as_ref()),
                    "{}",
                    function.signature()
                );
                assert_eq!(merged.finish(), single.finish());
            }
        }
    }

    #[test]
    fn functions_neither_merge_nor_decode_each_others_states() {
        let functions = all();
        for (ours, _) in &functions {
            for (theirs, _) in &functions {
                if ours.signature() == theirs.signature() {
                    continue;
                }
                let mut acc = feed(ours.as_ref(), 0..10);
                let before = encoded(acc.as_ref());
                let err = acc
                    .merge(feed(theirs.as_ref(), 0..10).as_ref())
                    .unwrap_err();
                assert_eq!(
                    err,
                    AggregateError::Mismatch {
                        expected: ours.signature(),
                        found: theirs.signature()
                    }
                );
                assert_eq!(err.domain(), ErrorDomain::Internal);
                assert_eq!(encoded(acc.as_ref()), before);
                let err = ours
                    .decode(&encoded(feed(theirs.as_ref(), 0..10).as_ref()))
                    .unwrap_err();
                assert!(matches!(err, AggregateError::Corrupt { .. }), "{err}");
            }
        }
    }

    #[test]
    fn another_version_is_refused() {
        for (function, _) in all() {
            let mut bytes = encoded(function.create().as_ref());
            bytes[0] = 2;
            let err = function.decode(&bytes).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!(
                    "the stored partial state of {} cannot be read: the state has format version 2; this build reads version 1",
                    function.signature()
                )
            );
        }
    }

    proptest! {
        #[test]
        fn decoding_any_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            for (function, tag) in all() {
                let _ = function.decode(&bytes);
                let mut headed = vec![FORMAT_VERSION, tag];
                headed.extend_from_slice(&bytes);
                if let Ok(acc) = function.decode(&headed) {
                    // Whatever decodes, finishes, merges and re-encodes.
                    let _ = acc.finish();
                    let mut twice = function.decode(&headed).unwrap();
                    twice.merge(acc.as_ref()).unwrap();
                    let _ = twice.finish();
                    let _ = encoded(twice.as_ref());
                }
            }
        }

        #[test]
        fn decoding_damaged_states_never_panics(
            n in 0i64..3_000,
            damage in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
            cut in any::<prop::sample::Index>(),
        ) {
            for (function, _) in all() {
                let mut bytes = encoded(feed(function.as_ref(), 0..n).as_ref());
                for (at, byte) in &damage {
                    let at = at.index(bytes.len());
                    bytes[at] = *byte;
                }
                if let Ok(acc) = function.decode(&bytes) {
                    let _ = acc.finish();
                }
                let _ = function.decode(&bytes[..cut.index(bytes.len() + 1)]);
            }
        }
    }
}
