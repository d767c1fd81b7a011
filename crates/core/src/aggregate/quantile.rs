//! `quantile(expr, q)`: a DDSketch with 1% relative accuracy.
//!
//! # Guarantee
//! Of `n` numeric inputs, `quantile(q)` answers for the value of rank
//! `k = ceil(q·n)` (1-based, at least 1; see [`nearest_rank`]) in ascending order: `q = 0`
//! is the minimum, `q = 1` the maximum, `q = 0.5` of 4 values the 2nd. The answer `v`
//! is within 1% of that value `x`: `|v − x| ≤ 0.01·|x|`, for positive, negative and zero
//! inputs alike (a zero is answered exactly, as are the minimum and the maximum). This is
//! a bound, not a probability, and it holds after any sequence of updates and merges,
//! provided each sign's magnitudes span at most a factor of about `γ^2047 ≈ 6·10^17` (see
//! below); past that, only the quantiles among the smallest magnitudes lose it.
//!
//! # How
//! With `γ = (1 + α)/(1 − α)` and `α = 0.01`, a positive `x` falls in bin
//! `i = ceil(log_γ x)`, whose values `(γ^(i−1), γ^i]` are all within `α` of the bin's
//! representative `2γ^i/(γ + 1)`. Negative inputs count in bins of their magnitude, zeros in
//! a count of their own. Each sign keeps at most [`MAX_BINS`] contiguous bins; past that,
//! the bins of the smallest magnitudes fold into the lowest kept one (Datadog's "collapsing
//! lowest" store), so memory stays under 2 × 16 KiB whatever the input. The bin of every
//! input is then `max(i, top − 2047)`, a function of the inputs alone: merging gives the
//! very bins that feeding one sketch all the inputs gives. The exact minimum and maximum
//! are kept too, and answers are clamped to them. NaN, infinities, strings and booleans are
//! ignored, like `NULL`. (A value within rounding of a bin boundary may land in either bin
//! depending on the platform's `ln`; both keep the bound.)
//!
//! # Why not `sketches-ddsketch`
//! That crate persists a sketch only through a serde derive of its private fields, whose
//! layout is its own to change between releases, and treats values below `1e-9` as zero.
//! Partial states live in the analytics store for as long as windows are kept, so they need
//! an encoding this crate documents, versions and checks; the sketch itself is a few dozen
//! lines.
//!
//! # State
//! After the header: `q` and `α` as 8 bytes each (a state of another `q` or `α` is refused),
//! the zero count as a varint, the negative bins, the positive bins, and, when any input was
//! counted, the minimum and the maximum as 8 bytes each. Bins are a varint `n ≤ 2048`
//! and, when `n > 0`, the lowest bin's index as a signed varint and the `n` counts as
//! varints, the first and last non-zero.

use std::any::Any;

use super::codec::{self, Reader, Tag};
use super::{Accumulator, AggregateError, AggregateFunction, mismatch};
use crate::value::{ColumnType, Value};

/// The relative accuracy `α`.
pub(super) const ALPHA: f64 = 0.01;
/// The most bins kept for each sign.
pub(super) const MAX_BINS: usize = 2048;
/// Bin indices are within ±`INDEX_LIMIT`: finite doubles map to about -37 220..=35 490.
const INDEX_LIMIT: i32 = 40_000;

/// `ln γ`.
fn ln_gamma() -> f64 {
    ((1.0 + ALPHA) / (1.0 - ALPHA)).ln()
}

/// The value all of bin `index` is within `α` of, `2γ^i/(γ + 1)`.
fn representative(index: i32) -> f64 {
    let gamma = (1.0 + ALPHA) / (1.0 - ALPHA);
    (f64::from(index) * ln_gamma()).exp() * (2.0 / (1.0 + gamma))
}

/// The rank, 1-based, whose value `quantile(q)` of `n > 0` values answers for:
/// `ceil(q·n)` clamped to `1..=n`, where a product within `1e-9` of an integer counts as
/// that integer (so that `0.07·100` is 7, although the double nearest 0.07 exceeds it).
#[must_use]
#[allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)]
pub fn nearest_rank(q: f64, n: u64) -> u64 {
    let product = q * n as f64;
    let nearest = product.round();
    let rank = if (product - nearest).abs() <= 1e-9 * nearest.max(1.0) {
        nearest
    } else {
        product.ceil()
    };
    (rank as u64).clamp(1, n.max(1))
}

/// `quantile(q)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Quantile {
    /// The quantile, in `0..=1`, never `-0.0`.
    pub(super) q: f64,
}

impl Quantile {
    fn signature_of(q: f64) -> String {
        format!("quantile({q})")
    }
}

impl AggregateFunction for Quantile {
    fn signature(&self) -> String {
        Self::signature_of(self.q)
    }

    fn create(&self) -> Box<dyn Accumulator> {
        Box::new(QuantileAccumulator::new(self.q))
    }

    fn decode(&self, bytes: &[u8]) -> Result<Box<dyn Accumulator>, AggregateError> {
        let signature = self.signature();
        let mut reader = Reader::open(bytes, &signature, Tag::Quantile)?;
        let q = reader.f64()?;
        if q.to_bits() != self.q.to_bits() {
            return Err(reader.corrupt(format!("the state is of {}", Self::signature_of(q))));
        }
        let alpha = reader.f64()?;
        if alpha.to_bits() != ALPHA.to_bits() {
            return Err(reader.corrupt(format!(
                "the state has relative accuracy {alpha}, expected {ALPHA}"
            )));
        }
        let mut acc = QuantileAccumulator::new(self.q);
        acc.zeros = reader.varint_u64()?;
        acc.negative = Bins::decode(&mut reader)?;
        acc.positive = Bins::decode(&mut reader)?;
        let count = acc
            .negative
            .total()
            .and_then(|negative| negative.checked_add(acc.positive.total()?))
            .and_then(|nonzero| nonzero.checked_add(acc.zeros))
            .ok_or_else(|| reader.corrupt("the counts overflow 64 bits"))?;
        if count > 0 {
            acc.min = reader.f64()?;
            acc.max = reader.f64()?;
            let (has_negative, has_positive) = (!acc.negative.is_empty(), !acc.positive.is_empty());
            let consistent = acc.min.is_finite()
                && acc.max.is_finite()
                && acc.min <= acc.max
                && (acc.min < 0.0) == has_negative
                && (acc.max > 0.0) == has_positive
                && (acc.zeros == 0 || (acc.min <= 0.0 && acc.max >= 0.0));
            if !consistent {
                return Err(reader.corrupt(format!(
                    "the minimum {} and maximum {} do not fit the bins",
                    acc.min, acc.max
                )));
            }
        }
        reader.finish()?;
        Ok(Box::new(acc))
    }

    fn result_type(&self) -> ColumnType {
        ColumnType::Float
    }

    fn relative_error(&self) -> Option<f64> {
        Some(ALPHA)
    }
}

/// Contiguous bins of one sign: `counts[k]` counts bin `offset + k`. Either empty, or its
/// first and last counts are non-zero, so equal inputs give equal bins.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Bins {
    offset: i32,
    counts: Vec<u64>,
}

impl Bins {
    fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    /// The highest bin's index (the offset when empty). Bins stay within ±`INDEX_LIMIT`
    /// and number at most `MAX_BINS`, so the arithmetic cannot overflow.
    #[allow(clippy::cast_possible_truncation, clippy::cast_possible_wrap)]
    fn high(&self) -> i32 {
        self.offset + self.counts.len().saturating_sub(1) as i32
    }

    /// The total count, `None` on overflow (only in a decoded state).
    fn total(&self) -> Option<u64> {
        self.counts
            .iter()
            .try_fold(0u64, |sum, &c| sum.checked_add(c))
    }

    /// Adds `count > 0` to bin `index`, folding bins more than `MAX_BINS - 1` below the
    /// highest into the lowest one kept.
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_possible_wrap,
        clippy::cast_sign_loss
    )]
    fn add(&mut self, index: i32, count: u64) {
        if self.counts.is_empty() {
            self.offset = index;
            self.counts.push(count);
            return;
        }
        let high = self.high();
        if index > high {
            self.counts
                .resize(self.counts.len() + (index - high) as usize, 0);
            if self.counts.len() > MAX_BINS {
                let excess = self.counts.len() - MAX_BINS;
                let folded = self.counts[..=excess]
                    .iter()
                    .fold(0u64, |sum, &c| sum.saturating_add(c));
                self.counts.drain(..excess);
                self.counts[0] = folded;
                self.offset += excess as i32;
            }
        }
        let index = index.max(self.high() - (MAX_BINS as i32 - 1));
        if index < self.offset {
            let below = (self.offset - index) as usize;
            self.counts.splice(0..0, std::iter::repeat_n(0, below));
            self.offset = index;
        }
        if let Some(slot) = self.counts.get_mut((index - self.offset) as usize) {
            *slot = slot.saturating_add(count);
        }
    }

    /// The non-empty bins, `(index, count)`, lowest first.
    #[allow(clippy::cast_possible_truncation, clippy::cast_possible_wrap)]
    fn iter(&self) -> impl DoubleEndedIterator<Item = (i32, u64)> + '_ {
        self.counts
            .iter()
            .enumerate()
            .filter(|(_, count)| **count > 0)
            .map(|(k, &count)| (self.offset + k as i32, count))
    }

    fn encode(&self, out: &mut Vec<u8>) {
        codec::put_varint(out, self.counts.len() as u128);
        if !self.counts.is_empty() {
            codec::put_signed_varint(out, i128::from(self.offset));
            for &count in &self.counts {
                codec::put_varint(out, u128::from(count));
            }
        }
    }

    fn decode(reader: &mut Reader<'_>) -> Result<Self, AggregateError> {
        let n = reader.varint()?;
        if n == 0 {
            return Ok(Self::default());
        }
        if n > MAX_BINS as u128 {
            return Err(reader.corrupt(format!("{n} bins, more than the {MAX_BINS} kept")));
        }
        let offset = reader.signed_varint()?;
        let high = offset.saturating_add(n as i128 - 1);
        let offset = match i32::try_from(offset) {
            Ok(offset) if -INDEX_LIMIT <= offset && high <= i128::from(INDEX_LIMIT) => offset,
            _ => {
                return Err(
                    reader.corrupt(format!("bins {offset}..={high} are beyond any double's"))
                );
            }
        };
        let mut counts = Vec::with_capacity(MAX_BINS.min(n as usize));
        for _ in 0..n {
            counts.push(reader.varint_u64()?);
        }
        if counts.first() == Some(&0) || counts.last() == Some(&0) {
            return Err(reader.corrupt("the bins start or end with an empty one"));
        }
        Ok(Self { offset, counts })
    }
}

/// A running DDSketch.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct QuantileAccumulator {
    q: f64,
    /// `1 / ln γ`.
    inverse_ln_gamma: f64,
    /// Bins of the magnitudes of negative inputs.
    negative: Bins,
    zeros: u64,
    positive: Bins,
    /// The least input, `+∞` before any.
    min: f64,
    /// The greatest input, `−∞` before any.
    max: f64,
}

impl QuantileAccumulator {
    fn new(q: f64) -> Self {
        Self {
            q,
            inverse_ln_gamma: 1.0 / ln_gamma(),
            negative: Bins::default(),
            zeros: 0,
            positive: Bins::default(),
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
        }
    }

    pub(super) fn signature(&self) -> String {
        Quantile::signature_of(self.q)
    }

    /// The bin of a finite `magnitude > 0`.
    #[allow(clippy::cast_possible_truncation)]
    fn index(&self, magnitude: f64) -> i32 {
        (magnitude.ln() * self.inverse_ln_gamma).ceil() as i32
    }

    fn count(&self) -> u64 {
        let total = |bins: &Bins| bins.total().unwrap_or(u64::MAX);
        total(&self.negative)
            .saturating_add(total(&self.positive))
            .saturating_add(self.zeros)
    }

    /// The answer for rank `rank` in `1..=n`, before clamping.
    fn value_at(&self, rank: u64) -> f64 {
        let mut seen = 0u64;
        for (index, count) in self.negative.iter().rev() {
            seen = seen.saturating_add(count);
            if seen >= rank {
                return -representative(index);
            }
        }
        seen = seen.saturating_add(self.zeros);
        if seen >= rank {
            return 0.0;
        }
        for (index, count) in self.positive.iter() {
            seen = seen.saturating_add(count);
            if seen >= rank {
                return representative(index);
            }
        }
        self.max
    }
}

impl Accumulator for QuantileAccumulator {
    fn update(&mut self, value: &Value<'_>) {
        let Some(x) = value.as_f64().filter(|x| x.is_finite()) else {
            return;
        };
        // -0.0 counts as 0.0, so the minimum does not depend on the order of zeros.
        let x = x + 0.0;
        if x > 0.0 {
            self.positive.add(self.index(x), 1);
        } else if x < 0.0 {
            self.negative.add(self.index(-x), 1);
        } else {
            self.zeros = self.zeros.saturating_add(1);
        }
        self.min = self.min.min(x);
        self.max = self.max.max(x);
    }

    fn merge(&mut self, other: &dyn Accumulator) -> Result<(), AggregateError> {
        let other = match other.as_any().downcast_ref::<Self>() {
            Some(other) if other.q.to_bits() == self.q.to_bits() => other,
            _ => return Err(mismatch(self.signature(), other)),
        };
        // Highest first, so bins fold at most once.
        for (index, count) in other.negative.iter().rev() {
            self.negative.add(index, count);
        }
        for (index, count) in other.positive.iter().rev() {
            self.positive.add(index, count);
        }
        self.zeros = self.zeros.saturating_add(other.zeros);
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        Ok(())
    }

    fn finish(&self) -> Value<'static> {
        let n = self.count();
        if n == 0 {
            return Value::Null;
        }
        let rank = nearest_rank(self.q, n);
        let value = if rank == 1 {
            self.min
        } else if rank == n {
            self.max
        } else {
            // Not `clamp`, which panics on a NaN bound.
            self.value_at(rank).max(self.min).min(self.max)
        };
        Value::Float(value)
    }

    fn encode(&self, out: &mut Vec<u8>) {
        codec::put_header(out, Tag::Quantile);
        codec::put_f64(out, self.q);
        codec::put_f64(out, ALPHA);
        codec::put_varint(out, u128::from(self.zeros));
        self.negative.encode(out);
        self.positive.encode(out);
        if self.count() > 0 {
            codec::put_f64(out, self.min);
            codec::put_f64(out, self.max);
        }
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::function;
    use proptest::prelude::*;

    fn quantile(q: f64) -> std::sync::Arc<dyn AggregateFunction> {
        function("quantile", false, &[Value::Float(q)]).unwrap()
    }

    fn feed(q: f64, values: &[f64]) -> Box<dyn Accumulator> {
        let mut acc = quantile(q).create();
        for &value in values {
            acc.update(&Value::Float(value));
        }
        acc
    }

    fn encoded(acc: &dyn Accumulator) -> Vec<u8> {
        let mut out = Vec::new();
        acc.encode(&mut out);
        out
    }

    fn answer(acc: &dyn Accumulator) -> f64 {
        match acc.finish() {
            Value::Float(value) => value,
            other => panic!("quantile finished as {other:?}"),
        }
    }

    /// The nearest-rank reference: the exact value of rank `nearest_rank(q, n)`.
    fn reference(q: f64, values: &[f64]) -> f64 {
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        let rank = nearest_rank(q, sorted.len() as u64);
        sorted[usize::try_from(rank).unwrap() - 1]
    }

    /// Within α, allowing for the rounding of `ln` and `exp` at a bin's edge.
    fn within_alpha(estimate: f64, truth: f64) -> bool {
        (estimate - truth).abs() <= ALPHA * truth.abs() * (1.0 + 1e-9)
    }

    #[test]
    fn ranks_are_nearest_ranks_of_decimal_quantiles() {
        assert_eq!(nearest_rank(0.07, 100), 7);
        assert_eq!(nearest_rank(0.95, 100), 95);
        assert_eq!(nearest_rank(0.951, 100), 96);
        assert_eq!(nearest_rank(0.5, 4), 2);
        assert_eq!(nearest_rank(0.5, 3), 2);
        assert_eq!(nearest_rank(0.0, 10), 1);
        assert_eq!(nearest_rank(1.0, 10), 10);
        assert_eq!(nearest_rank(0.3, 1), 1);
    }

    #[test]
    fn quantiles_of_small_inputs() {
        let values = [3.0, -2.0, 0.0, 10.0, 7.5];
        assert_eq!(answer(feed(0.0, &values).as_ref()), -2.0);
        assert_eq!(answer(feed(1.0, &values).as_ref()), 10.0);
        for q in [0.2, 0.4, 0.5, 0.6, 0.8] {
            let (estimate, truth) = (answer(feed(q, &values).as_ref()), reference(q, &values));
            assert!(
                within_alpha(estimate, truth),
                "q {q}: {estimate} vs {truth}"
            );
        }
        assert_eq!(answer(feed(0.4, &values).as_ref()), 0.0);
        assert_eq!(feed(0.5, &[]).finish(), Value::Null);
        let mut acc = quantile(0.5).create();
        acc.update(&Value::Str("1".into()));
        acc.update(&Value::Float(f64::INFINITY));
        acc.update(&Value::Null);
        assert_eq!(acc.finish(), Value::Null);
        acc.update(&Value::Int(4));
        assert_eq!(acc.finish(), Value::Float(4.0));
    }

    #[test]
    fn states_encode_and_round_trip() {
        let acc = feed(0.5, &[1.0, 1.0, -1.0, 0.0]);
        let bytes = encoded(acc.as_ref());
        let mut expected = vec![1, 8];
        expected.extend_from_slice(&0.5f64.to_bits().to_le_bytes());
        expected.extend_from_slice(&ALPHA.to_bits().to_le_bytes());
        // One zero; the bins of 1.0 (index 0): one negative, two positive.
        expected.extend_from_slice(&[1, 1, 0, 1, 1, 0, 2]);
        expected.extend_from_slice(&(-1.0f64).to_bits().to_le_bytes());
        expected.extend_from_slice(&1.0f64.to_bits().to_le_bytes());
        assert_eq!(bytes, expected);
        let decoded = quantile(0.5).decode(&bytes).unwrap();
        assert_eq!(encoded(decoded.as_ref()), bytes);
        assert_eq!(decoded.finish(), acc.finish());

        let empty = encoded(quantile(0.5).create().as_ref());
        assert_eq!(empty.len(), 2 + 16 + 3);
        assert_eq!(quantile(0.5).decode(&empty).unwrap().finish(), Value::Null);
    }

    #[test]
    fn corrupt_states_are_refused() {
        let bytes = encoded(feed(0.5, &[1.0, 2.0, -3.0]).as_ref());
        let err = quantile(0.9).decode(&bytes).unwrap_err();
        assert!(err.to_string().contains("quantile(0.5)"), "{err}");
        for len in 0..bytes.len() {
            assert!(quantile(0.5).decode(&bytes[..len]).is_err(), "{len}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(quantile(0.5).decode(&longer).is_err());
        // A minimum above the maximum.
        let mut swapped = bytes[..bytes.len() - 16].to_vec();
        swapped.extend_from_slice(&2.0f64.to_bits().to_le_bytes());
        swapped.extend_from_slice(&(-3.0f64).to_bits().to_le_bytes());
        assert!(quantile(0.5).decode(&swapped).is_err());
    }

    #[test]
    fn wide_inputs_collapse_the_smallest_magnitudes() {
        let mut values: Vec<f64> = (0..4_000).map(|i| 1.03f64.powi(i) * 1e-20).collect();
        values.extend((0..4_000).map(|i| -(1.03f64.powi(i) * 1e-20)));
        let acc = feed(0.99, &values);
        let state = acc.as_any().downcast_ref::<QuantileAccumulator>().unwrap();
        assert_eq!(state.positive.counts.len(), MAX_BINS);
        assert_eq!(state.negative.counts.len(), MAX_BINS);
        assert_eq!(state.count(), 8_000);
        // The top quantiles lie above the folded bins and keep the bound.
        for q in [0.01, 0.1, 0.9, 0.99] {
            let acc = feed(q, &values);
            assert!(
                within_alpha(answer(acc.as_ref()), reference(q, &values)),
                "q {q}"
            );
        }
        // Extremes of the double range stay finite and within bounds.
        let extremes = [f64::MAX, f64::MIN_POSITIVE, 5e-324, -f64::MAX, 1.0];
        for q in [0.0, 0.25, 0.5, 0.75, 1.0] {
            let estimate = answer(feed(q, &extremes).as_ref());
            assert!(estimate.is_finite(), "q {q}: {estimate}");
        }
    }

    #[test]
    fn merges_equal_one_accumulator_fed_everything() {
        let values: Vec<f64> = (1..3_000)
            .map(|i| f64::from(i % 97 - 40) * 1.7f64.powi(i % 13))
            .collect();
        let (left, right) = values.split_at(1_234);
        let mut merged = feed(0.9, left);
        merged.merge(feed(0.9, right).as_ref()).unwrap();
        assert_eq!(
            encoded(merged.as_ref()),
            encoded(feed(0.9, &values).as_ref())
        );
        let err = merged.merge(feed(0.5, right).as_ref()).unwrap_err();
        assert_eq!(
            err,
            AggregateError::Mismatch {
                expected: "quantile(0.9)".into(),
                found: "quantile(0.5)".into()
            }
        );
    }

    /// Log-uniform magnitudes over 17 decades (within the range the bins keep), either sign,
    /// some zeros and integers.
    fn values() -> impl Strategy<Value = Vec<f64>> {
        let value = prop_oneof![
            8 => (-8.0f64..9.0, any::<bool>())
                .prop_map(|(exponent, negative)| {
                    let magnitude = 10f64.powf(exponent);
                    if negative { -magnitude } else { magnitude }
                }),
            1 => Just(0.0),
            1 => (-1_000i32..1_000).prop_map(f64::from),
        ];
        proptest::collection::vec(value, 1..2_000)
    }

    proptest! {
        #[test]
        fn quantiles_are_within_alpha_of_the_nearest_rank_value(
            values in values(),
            q in prop_oneof![0.0f64..=1.0, Just(0.5), Just(0.99)],
        ) {
            let estimate = answer(feed(q, &values).as_ref());
            let truth = reference(q, &values);
            prop_assert!(within_alpha(estimate, truth), "{} vs {}", estimate, truth);
        }

        #[test]
        fn merges_of_random_splits_equal_bins(
            values in values(),
            split in any::<prop::sample::Index>(),
        ) {
            let at = split.index(values.len() + 1);
            let mut merged = feed(0.5, &values[..at]);
            merged.merge(feed(0.5, &values[at..]).as_ref()).unwrap();
            prop_assert_eq!(encoded(merged.as_ref()), encoded(feed(0.5, &values).as_ref()));
        }
    }
}
