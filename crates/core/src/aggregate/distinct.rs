//! `count_distinct`: a HyperLogLog of precision 12, exact up to 64 distinct values.
//!
//! # Values and hashes
//! Each non-`NULL` value is reduced to canonical bytes, a type byte then a payload: numbers
//! (`0x01`) as an `i64` when integral and in range, so `Int(1)` and `Float(1.0)` are one
//! value, else (`0x02`) as the double's bits (every NaN as one NaN); booleans (`0x03`) as
//! one byte; strings (`0x04`) as UTF-8. So `Int(1)` and `Str("1")` are distinct.
//!
//! The hash is [`stable_hash64`] of those bytes, passed through MurmurHash3's 64-bit
//! finalizer. `stable_hash64` is FNV-1a, which never changes between builds, but a
//! multiplicative hash carries input bits only upwards, so its low bits depend on few input
//! bits and short inputs differ mostly in a few bits; the finalizer is a bijection with full
//! avalanche, so every output bit depends on every input bit while collisions stay exactly
//! those of FNV-1a (about n²/2^65). Stored states hold hashes: the hash is part of format
//! version 1 and pinned by a test.
//!
//! # Estimate and error
//! Up to [`EXACT_LIMIT`] distinct hashes are kept as a sorted set, and the count is exact
//! (but for 64-bit hash collisions). Past that the 4096 registers of a HyperLogLog take
//! over: the top 12 bits of a hash pick a register, which keeps the largest rank (1 + the
//! leading zeros of the other 52 bits, at most 53). Its standard error is
//! `1.04/√4096 ≈ 1.6%`: 99.7% of estimates fall within 3 standard errors (~5%) of the true
//! count, which the tests check up to 100k distinct values.
//!
//! The estimate is Ertl's improved estimator ("New cardinality estimation algorithms for
//! HyperLogLog sketches", 2017, as Redis uses since 5.0), computed from the histogram of the
//! registers, rather than the original `α·m²/Σ2^-M[j]` with linear counting below `2.5·m`:
//! measured over 300 runs each, the original is biased by +1.6% to +1.8% between 10 000 and
//! 11 000 distinct values, where it switches from linear counting, with a root mean square
//! error of 2.9% there; the improved one's bias stays under 0.2% from 100 distinct values
//! up, its root mean square error between 1.1% and 1.7% from 65 to 100 000, and 5 of 4 800
//! estimates fell beyond 3 standard errors. Both agree where linear counting applies and
//! above `5·m`. With 64-bit hashes no large-range correction is needed.
//! Measured the same way, `stable_hash64` alone (without the finalizer) gave root mean square
//! errors of 3% to 12%; with it, the errors equal those of a random hash.
//!
//! # State
//! After the header: the precision (`12`) and a mode byte, then
//! - mode `0`, exact: a varint `k ≤ 64` and `k` hashes as 8 bytes each, strictly increasing;
//! - mode `1`, sparse registers: a varint `k`, then `k` pairs of a varint gap and a byte
//!   rank (1..=53) for the non-zero registers in increasing order, the first gap being the
//!   register's index and each further one the distance (≥ 1) from the previous register;
//! - mode `2`, dense registers: 3072 bytes, the 4096 ranks packed 6 bits each,
//!   least-significant bits first (register `j` at bits `6j..6j+6`).
//!
//! The encoder writes mode 1 when it is shorter than mode 2; the decoder accepts either.

use std::any::Any;

use super::codec::{self, Reader, Tag};
use super::{Accumulator, AggregateError, AggregateFunction, mismatch};
use crate::partition::stable_hash64;
use crate::value::{ColumnType, Value};

/// Bits of a hash that pick a register.
const PRECISION: u8 = 12;
/// Number of registers.
const REGISTERS: usize = 1 << PRECISION;
/// The largest rank a register holds: 1 + all the bits below the index being zero.
const MAX_RANK: u8 = 64 - PRECISION + 1;
/// Distinct hashes kept exactly before switching to registers.
pub(super) const EXACT_LIMIT: usize = 64;
/// Bytes of the dense encoding of the registers (6 bits each).
const DENSE_BYTES: usize = REGISTERS * 6 / 8;
/// The standard error of the estimate past [`EXACT_LIMIT`], `1.04/√m`.
pub(super) const STANDARD_ERROR: f64 = 0.01625;

/// Encoding modes.
const MODE_EXACT: u8 = 0;
const MODE_SPARSE: u8 = 1;
const MODE_DENSE: u8 = 2;

/// Type bytes of the canonical value bytes.
const TYPE_INT: u8 = 0x01;
const TYPE_FLOAT: u8 = 0x02;
const TYPE_BOOL: u8 = 0x03;
const TYPE_STR: u8 = 0x04;

/// `count_distinct`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct CountDistinct;

impl AggregateFunction for CountDistinct {
    fn signature(&self) -> String {
        "count_distinct".to_owned()
    }

    fn create(&self) -> Box<dyn Accumulator> {
        Box::new(DistinctAccumulator {
            sketch: Sketch::Exact(Vec::new()),
        })
    }

    fn decode(&self, bytes: &[u8]) -> Result<Box<dyn Accumulator>, AggregateError> {
        let signature = self.signature();
        let mut reader = Reader::open(bytes, &signature, Tag::CountDistinct)?;
        let precision = reader.u8()?;
        if precision != PRECISION {
            return Err(reader.corrupt(format!(
                "the state has precision {precision}, expected {PRECISION}"
            )));
        }
        let sketch = match reader.u8()? {
            MODE_EXACT => decode_exact(&mut reader)?,
            MODE_SPARSE => decode_sparse(&mut reader)?,
            MODE_DENSE => decode_dense(&mut reader)?,
            mode => return Err(reader.corrupt(format!("unknown mode {mode}"))),
        };
        reader.finish()?;
        Ok(Box::new(DistinctAccumulator { sketch }))
    }

    fn result_type(&self) -> ColumnType {
        ColumnType::Int
    }

    fn relative_error(&self) -> Option<f64> {
        Some(STANDARD_ERROR)
    }
}

fn decode_exact(reader: &mut Reader<'_>) -> Result<Sketch, AggregateError> {
    let count = reader.varint()?;
    if count > EXACT_LIMIT as u128 {
        return Err(reader.corrupt(format!(
            "{count} exact hashes, more than the {EXACT_LIMIT} kept"
        )));
    }
    let mut hashes: Vec<u64> = Vec::with_capacity(EXACT_LIMIT);
    for _ in 0..count {
        let hash = reader.u64()?;
        if hashes.last().is_some_and(|&last| last >= hash) {
            return Err(reader.corrupt("the exact hashes are not strictly increasing"));
        }
        hashes.push(hash);
    }
    Ok(Sketch::Exact(hashes))
}

fn decode_sparse(reader: &mut Reader<'_>) -> Result<Sketch, AggregateError> {
    let count = reader.varint()?;
    if count > REGISTERS as u128 {
        return Err(reader.corrupt(format!(
            "{count} sparse registers, more than the {REGISTERS} there are"
        )));
    }
    let mut registers = Box::new([0u8; REGISTERS]);
    let mut previous: Option<u128> = None;
    for _ in 0..count {
        let gap = reader.varint()?;
        let index = match previous {
            None => gap,
            Some(_) if gap == 0 => {
                return Err(reader.corrupt("the sparse registers are not strictly increasing"));
            }
            Some(previous) => previous.saturating_add(gap),
        };
        let slot = usize::try_from(index)
            .ok()
            .and_then(|index| registers.get_mut(index))
            .ok_or_else(|| reader.corrupt(format!("register {index} is out of range")))?;
        let rank = reader.u8()?;
        if rank == 0 || rank > MAX_RANK {
            return Err(reader.corrupt(format!("a sparse register holds rank {rank}")));
        }
        *slot = rank;
        previous = Some(index);
    }
    Ok(Sketch::Registers(registers))
}

fn decode_dense(reader: &mut Reader<'_>) -> Result<Sketch, AggregateError> {
    let packed = reader.bytes(DENSE_BYTES)?;
    let mut registers = Box::new([0u8; REGISTERS]);
    for (four, three) in registers.chunks_exact_mut(4).zip(packed.chunks_exact(3)) {
        let (b0, b1, b2) = (three[0], three[1], three[2]);
        four[0] = b0 & 0x3f;
        four[1] = (b0 >> 6) | ((b1 & 0x0f) << 2);
        four[2] = (b1 >> 4) | ((b2 & 0x03) << 4);
        four[3] = b2 >> 2;
    }
    if let Some(rank) = registers.iter().find(|&&rank| rank > MAX_RANK) {
        return Err(reader.corrupt(format!("a dense register holds rank {rank}")));
    }
    Ok(Sketch::Registers(registers))
}

/// The hash of a non-`NULL` value (`None` for `NULL`), as the module docs define it.
pub(super) fn hash_value(value: &Value<'_>) -> Option<u64> {
    let hash = |type_byte: u8, payload: &[u8]| fmix64(stable_hash64(&[&[type_byte], payload]));
    Some(match value {
        Value::Null => return None,
        Value::Bool(b) => hash(TYPE_BOOL, &[u8::from(*b)]),
        Value::Int(i) => hash(TYPE_INT, &i.to_le_bytes()),
        Value::Float(f) => {
            // Integral doubles in [-2^63, 2^63) convert to i64 exactly.
            const TWO_63: f64 = 9_223_372_036_854_775_808.0;
            if f.fract() == 0.0 && (-TWO_63..TWO_63).contains(f) {
                #[allow(clippy::cast_possible_truncation)]
                let int = *f as i64;
                hash(TYPE_INT, &int.to_le_bytes())
            } else {
                let bits = if f.is_nan() { f64::NAN } else { *f }.to_bits();
                hash(TYPE_FLOAT, &bits.to_le_bytes())
            }
        }
        Value::Str(s) => hash(TYPE_STR, s.as_bytes()),
    })
}

/// MurmurHash3's 64-bit finalizer: a bijection in which every output bit depends on every
/// input bit.
fn fmix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    h
}

/// What a `count_distinct` accumulator holds.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Sketch {
    /// The distinct hashes so far, sorted, at most [`EXACT_LIMIT`].
    Exact(Vec<u64>),
    /// HyperLogLog registers: the largest rank seen for each index.
    Registers(Box<[u8; REGISTERS]>),
}

/// Raises `hash`'s register to its rank.
fn observe(registers: &mut [u8; REGISTERS], hash: u64) {
    // The top PRECISION bits, so the index is below REGISTERS.
    #[allow(clippy::cast_possible_truncation)]
    let index = (hash >> (64 - PRECISION)) as usize;
    let rest = hash << PRECISION;
    // At most 64 - PRECISION + 1 = MAX_RANK, so the cast cannot truncate.
    #[allow(clippy::cast_possible_truncation)]
    let rank = (rest.leading_zeros() + 1).min(u32::from(MAX_RANK)) as u8;
    if let Some(register) = registers.get_mut(index) {
        *register = (*register).max(rank);
    }
}

/// The registers that `hashes` set.
fn densify(hashes: &[u64]) -> Box<[u8; REGISTERS]> {
    let mut registers = Box::new([0u8; REGISTERS]);
    for &hash in hashes {
        observe(&mut registers, hash);
    }
    registers
}

/// Ertl's improved estimate of the number of distinct hashes that set `registers`.
#[allow(clippy::cast_precision_loss)]
fn estimate(registers: &[u8; REGISTERS]) -> f64 {
    let m = REGISTERS as f64;
    let mut histogram = [0u32; MAX_RANK as usize + 1];
    for &rank in registers {
        if let Some(count) = histogram.get_mut(usize::from(rank)) {
            *count += 1;
        }
    }
    let count = |rank: u8| f64::from(histogram.get(usize::from(rank)).copied().unwrap_or(0));
    let mut z = m * tau(1.0 - count(MAX_RANK) / m);
    for rank in (1..MAX_RANK).rev() {
        z = 0.5 * (z + count(rank));
    }
    z += m * sigma(count(0) / m);
    m * m / (2.0 * std::f64::consts::LN_2) / z
}

/// Ertl's σ(x) = x + Σ_{k≥1} x^(2^k)·2^(k−1), for the registers still zero.
fn sigma(mut x: f64) -> f64 {
    if x >= 1.0 {
        return f64::INFINITY;
    }
    let (mut y, mut z) = (1.0, x);
    // The terms vanish within a dozen rounds; the bound only makes termination obvious.
    for _ in 0..1_100 {
        x *= x;
        let previous = z;
        z += x * y;
        y += y;
        if z == previous {
            break;
        }
    }
    z
}

/// Ertl's τ(x) = (1 − x − Σ_{k≥1} (1 − x^(2^−k))²·2^−k) / 3, for the registers at the
/// largest rank.
fn tau(mut x: f64) -> f64 {
    if x <= 0.0 || x >= 1.0 {
        return 0.0;
    }
    let (mut y, mut z) = (1.0, 1.0 - x);
    for _ in 0..1_100 {
        x = x.sqrt();
        let previous = z;
        y *= 0.5;
        z -= (1.0 - x) * (1.0 - x) * y;
        if z == previous {
            break;
        }
    }
    z / 3.0
}

/// A running distinct count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct DistinctAccumulator {
    sketch: Sketch,
}

impl DistinctAccumulator {
    pub(super) fn signature() -> String {
        CountDistinct.signature()
    }

    fn insert(&mut self, hash: u64) {
        match &mut self.sketch {
            Sketch::Exact(hashes) => match hashes.binary_search(&hash) {
                Ok(_) => {}
                Err(at) if hashes.len() < EXACT_LIMIT => hashes.insert(at, hash),
                Err(_) => {
                    let mut registers = densify(hashes);
                    observe(&mut registers, hash);
                    self.sketch = Sketch::Registers(registers);
                }
            },
            Sketch::Registers(registers) => observe(registers, hash),
        }
    }

    fn encode_registers(registers: &[u8; REGISTERS], out: &mut Vec<u8>) {
        let mut nonzero = 0usize;
        let mut sparse_len = 0usize;
        let mut previous = 0usize;
        for (index, _) in registers.iter().enumerate().filter(|(_, rank)| **rank != 0) {
            sparse_len += codec::varint_len((index - previous) as u128) + 1;
            nonzero += 1;
            previous = index;
        }
        sparse_len += codec::varint_len(nonzero as u128);
        if sparse_len < DENSE_BYTES {
            out.push(MODE_SPARSE);
            codec::put_varint(out, nonzero as u128);
            let mut previous = 0usize;
            for (index, &rank) in registers.iter().enumerate().filter(|(_, rank)| **rank != 0) {
                codec::put_varint(out, (index - previous) as u128);
                out.push(rank);
                previous = index;
            }
        } else {
            out.push(MODE_DENSE);
            for four in registers.chunks_exact(4) {
                out.push(four[0] | (four[1] << 6));
                out.push((four[1] >> 2) | (four[2] << 4));
                out.push((four[2] >> 4) | (four[3] << 2));
            }
        }
    }
}

impl Accumulator for DistinctAccumulator {
    fn update(&mut self, value: &Value<'_>) {
        if let Some(hash) = hash_value(value) {
            self.insert(hash);
        }
    }

    fn merge(&mut self, other: &dyn Accumulator) -> Result<(), AggregateError> {
        let Some(other) = other.as_any().downcast_ref::<Self>() else {
            return Err(mismatch(Self::signature(), other));
        };
        match (&mut self.sketch, &other.sketch) {
            (_, Sketch::Exact(hashes)) => {
                for &hash in hashes {
                    self.insert(hash);
                }
            }
            (Sketch::Exact(hashes), Sketch::Registers(theirs)) => {
                let mut registers = theirs.clone();
                for &hash in hashes.iter() {
                    observe(&mut registers, hash);
                }
                self.sketch = Sketch::Registers(registers);
            }
            (Sketch::Registers(ours), Sketch::Registers(theirs)) => {
                for (ours, theirs) in ours.iter_mut().zip(theirs.iter()) {
                    *ours = (*ours).max(*theirs);
                }
            }
        }
        Ok(())
    }

    fn finish(&self) -> Value<'static> {
        let count = match &self.sketch {
            Sketch::Exact(hashes) => hashes.len() as f64,
            Sketch::Registers(registers) => estimate(registers).round(),
        };
        // The estimate is below 2^64 · ln(4096), far inside i64 once rounded.
        #[allow(clippy::cast_possible_truncation)]
        Value::Int(count as i64)
    }

    fn encode(&self, out: &mut Vec<u8>) {
        codec::put_header(out, Tag::CountDistinct);
        out.push(PRECISION);
        match &self.sketch {
            Sketch::Exact(hashes) => {
                out.push(MODE_EXACT);
                codec::put_varint(out, hashes.len() as u128);
                for hash in hashes {
                    out.extend_from_slice(&hash.to_le_bytes());
                }
            }
            Sketch::Registers(registers) => Self::encode_registers(registers, out),
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

    fn feed(values: impl IntoIterator<Item = i64>) -> Box<dyn Accumulator> {
        let mut acc = CountDistinct.create();
        for value in values {
            acc.update(&Value::Int(value));
        }
        acc
    }

    fn encoded(acc: &dyn Accumulator) -> Vec<u8> {
        let mut out = Vec::new();
        acc.encode(&mut out);
        out
    }

    #[allow(clippy::cast_precision_loss)]
    fn relative_error(acc: &dyn Accumulator, truth: usize) -> f64 {
        let Value::Int(estimate) = acc.finish() else {
            panic!("count_distinct finished as {:?}", acc.finish());
        };
        (estimate as f64 - truth as f64).abs() / truth as f64
    }

    /// Format stability: stored states hold these hashes.
    #[test]
    fn the_hash_is_pinned() {
        assert_eq!(hash_value(&Value::Int(1)), Some(0x2e91_4bc9_cec4_7fe3));
        assert_eq!(
            hash_value(&Value::Str("1".into())),
            Some(0xe8c2_5b6d_cae9_73b0)
        );
        assert_eq!(hash_value(&Value::Null), None);
    }

    #[test]
    fn values_are_distinct_by_type_and_numbers_by_value() {
        let same = |a: Value<'_>, b: Value<'_>| hash_value(&a) == hash_value(&b);
        assert!(same(Value::Int(1), Value::Float(1.0)));
        assert!(same(Value::Int(0), Value::Float(-0.0)));
        assert!(same(Value::Float(f64::NAN), Value::Float(-f64::NAN)));
        assert!(!same(Value::Int(1), Value::Str("1".into())));
        assert!(!same(Value::Int(1), Value::Bool(true)));
        assert!(!same(Value::Float(1.5), Value::Str("1.5".into())));
        assert!(!same(Value::Float(9.3e18), Value::Float(f64::INFINITY)));
    }

    #[test]
    fn small_counts_are_exact() {
        let mut acc = CountDistinct.create();
        for value in [
            Value::Int(1),
            Value::Float(1.0),
            Value::Str("1".into()),
            Value::Null,
            Value::Bool(false),
            Value::Int(1),
        ] {
            acc.update(&value);
        }
        assert_eq!(acc.finish(), Value::Int(3));
        assert_eq!(feed(0..64).finish(), Value::Int(64));
        assert_eq!(CountDistinct.create().finish(), Value::Int(0));
        // Past the exact set, the estimate starts out as close as linear counting makes it.
        assert!(relative_error(feed(0..65).as_ref(), 65) < 0.02);
    }

    #[test]
    fn states_round_trip_in_each_mode() {
        for n in [0, 10, 64, 65, 1_000, 100_000] {
            let acc = feed(0..n);
            let bytes = encoded(acc.as_ref());
            let mode = bytes[3];
            let expected_mode = match n {
                0..=64 => MODE_EXACT,
                65..=1_000 => MODE_SPARSE,
                _ => MODE_DENSE,
            };
            assert_eq!(mode, expected_mode, "n = {n}");
            let decoded = CountDistinct.decode(&bytes).unwrap();
            assert_eq!(decoded.finish(), acc.finish());
            assert_eq!(encoded(decoded.as_ref()), bytes);
        }
        assert_eq!(encoded(feed(0..100_000).as_ref()).len(), 4 + DENSE_BYTES);
    }

    #[test]
    fn corrupt_states_are_refused() {
        let decode = |bytes: &[u8]| CountDistinct.decode(bytes).unwrap_err();
        assert!(
            decode(&[1, 7, 14, 0, 0])
                .to_string()
                .contains("precision 14")
        );
        assert!(decode(&[1, 7, 12, 3]).to_string().contains("mode 3"));
        // Hashes out of order.
        let mut bytes = vec![1, 7, 12, 0, 2];
        bytes.extend_from_slice(&5u64.to_le_bytes());
        bytes.extend_from_slice(&5u64.to_le_bytes());
        assert!(decode(&bytes).to_string().contains("strictly increasing"));
        // A rank no 64-bit hash yields, a register past the end.
        assert!(
            decode(&[1, 7, 12, 1, 1, 0, 54])
                .to_string()
                .contains("rank 54")
        );
        assert!(
            decode(&[1, 7, 12, 1, 1, 0x80, 0x20, 1])
                .to_string()
                .contains("out of range")
        );
        let mut dense = vec![1, 7, 12, 2];
        dense.extend_from_slice(&[0xff; DENSE_BYTES]);
        assert!(decode(&dense).to_string().contains("rank 63"));
        dense.truncate(10);
        assert!(decode(&dense).to_string().contains("ends early"));
    }

    #[test]
    fn merges_equal_one_accumulator_fed_everything() {
        // Exact + exact staying exact, exact + exact densifying, and each order of
        // exact + registers and registers + registers.
        let cases = [
            (0..30, 20..60),
            (0..60, 40..100),
            (0..50, 10..5_000),
            (0..5_000, 0..50),
        ];
        for (left, right) in cases {
            let mut merged = feed(left.clone());
            merged.merge(feed(right.clone()).as_ref()).unwrap();
            let single = feed(left.chain(right));
            assert_eq!(encoded(merged.as_ref()), encoded(single.as_ref()));
        }
        let mut a = feed(0..3_000);
        a.merge(feed(1_000..9_000).as_ref()).unwrap();
        assert_eq!(encoded(a.as_ref()), encoded(feed(0..9_000).as_ref()));
    }

    #[test]
    fn a_function_of_another_kind_does_not_merge() {
        let mut acc = CountDistinct.create();
        let count = function("count", false, &[]).unwrap().create();
        assert_eq!(
            acc.merge(count.as_ref()).unwrap_err(),
            AggregateError::Mismatch {
                expected: "count_distinct".into(),
                found: "count".into()
            }
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 48,
            // A statistical bound: a fixed seed keeps the run reproducible.
            rng_seed: proptest::test_runner::RngSeed::Fixed(0x7ab1_e5ee_d000_0001),
            ..ProptestConfig::default()
        })]

        #[test]
        fn estimates_are_within_three_standard_errors(
            n in 1usize..=100_000,
            base in any::<i64>(),
        ) {
            let acc = feed((0..n as i64).map(|i| base.wrapping_add(i)));
            prop_assert!(
                relative_error(acc.as_ref(), n) <= 3.0 * STANDARD_ERROR,
                "n = {n}, estimate {:?}", acc.finish()
            );
        }

        #[test]
        fn merges_of_random_splits_equal_registers(
            values in proptest::collection::vec(0i64..5_000, 0..3_000),
            split in any::<prop::sample::Index>(),
        ) {
            let at = split.index(values.len() + 1);
            let mut merged = feed(values[..at].iter().copied());
            merged.merge(feed(values[at..].iter().copied()).as_ref()).unwrap();
            prop_assert_eq!(encoded(merged.as_ref()), encoded(feed(values).as_ref()));
        }
    }
}
