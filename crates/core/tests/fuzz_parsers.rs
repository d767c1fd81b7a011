//! Property tests over the two parsers that read what clients send: the ingest body parser
//! ([`parse_events_within`], JSON and NDJSON) and the expression compiler ([`Expr::compile`],
//! which pipeline filters and projections go through). They stand in for `cargo fuzz`
//! targets in CI (see `crates/core/fuzz/`, which needs a nightly toolchain): arbitrary
//! bytes and structured, nearly valid inputs must never panic, and must give either a
//! result or an error value; valid generated batches parse back to the same events. The
//! stream is known by a name other than its identity (as a tenant's own stream is), and
//! generated events name it either way, or not at all.
//!
//! Bounded: a fixed number of cases per property (a few seconds in a debug build).

// Tests may unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use proptest::prelude::*;
use serde_json::{Map, Value, json};
use tributary_core::expr::{Expr, Row, Scope};
use tributary_core::parse::{
    Arrival, BodyFormat, Limits, ParseError, Target, check_event, parse_events_within,
};
use tributary_core::{Event, EventId, StreamName, Timestamp};

const CASES: u32 = 2_000;
const NOW: i64 = 1_764_500_000_000;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: CASES,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// The stream's name, as its client knows it.
fn stream() -> StreamName {
    StreamName::new("fuzz").unwrap()
}

/// The stream's identity: it differs from its name, as for a stream that a tenant other
/// than the default one created, so that both ways an event may name it are exercised.
fn identity() -> StreamName {
    StreamName::new("fuzz__0123456789ab").unwrap()
}

fn arrival() -> Arrival {
    Arrival::new(Timestamp::from_millis(NOW), Duration::from_secs(300))
}

fn limits() -> Limits {
    Limits {
        max_events: 50,
        max_reported_errors: 5,
    }
}

fn parse(body: &[u8], format: BodyFormat) -> Result<Vec<Event>, ParseError> {
    let (id, name) = (identity(), stream());
    let target = Target {
        id: &id,
        name: &name,
    };
    parse_events_within(body, format, target, arrival(), limits())
}

/// What any outcome of the parser must satisfy: accepted events are valid and bounded,
/// errors carry positions from 1 and bounded reports.
fn check_outcome(outcome: &Result<Vec<Event>, ParseError>) {
    match outcome {
        Ok(events) => {
            assert!(!events.is_empty() && events.len() <= limits().max_events);
            for event in events {
                assert_eq!(check_event(event), Ok(()), "{event:?}");
                assert_eq!(event.stream, identity());
                assert!(event.ts <= Timestamp::from_millis(NOW + 300_000));
            }
        }
        Err(
            ParseError::Malformed { line, column, .. }
            | ParseError::DuplicateKey { line, column, .. },
        ) => {
            assert!(*line >= 1 && *column >= 1, "{outcome:?}");
        }
        Err(ParseError::Invalid(invalid)) => {
            assert!(!invalid.errors.is_empty());
            assert!(invalid.errors.len() <= limits().max_reported_errors);
            assert!(invalid.error_count >= invalid.errors.len());
            assert!(invalid.invalid_events >= 1 && invalid.invalid_events <= limits().max_events);
            // The stream is named as the client knows it, never by its identity.
            let named = format!("must be absent or equal to {:?}", stream().as_str());
            for error in &invalid.errors {
                assert!(
                    error.field != "stream" || error.reason == named,
                    "{error:?}"
                );
            }
        }
        Err(ParseError::TooManyEvents { limit }) => assert_eq!(*limit, limits().max_events),
        Err(ParseError::WrongShape | ParseError::Empty) => {}
    }
}

// ---------------------------------------------------------------- generated events

/// A payload value every store keeps unchanged (see `tributary_core::payload`); floats are
/// left out, as their text form is not this test's subject.
fn payload_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        "\\PC{0,16}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            // An array does not directly hold an array.
            prop::collection::vec(inner.clone(), 0..4).prop_map(|items| {
                Value::Array(items.into_iter().filter(|v| !v.is_array()).collect())
            }),
            prop::collection::btree_map(field_name(), inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn field_name() -> impl Strategy<Value = String> {
    "[a-zA-Z_][a-zA-Z0-9_ é-]{0,10}"
}

fn payload() -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::btree_map(field_name(), payload_value(), 0..5)
        .prop_map(|m| m.into_iter().collect())
}

/// How a generated event is sent: its `ts` as RFC 3339 text (else epoch milliseconds), and
/// its `stream` member (`None`: absent).
#[derive(Debug, Clone)]
struct Sent {
    ts_as_text: bool,
    stream: Option<StreamName>,
}

/// A valid event, and how it is sent.
fn event() -> impl Strategy<Value = (Event, Sent)> {
    (
        "[a-zA-Z0-9_-]{1,36}|\\PC{1,30}",
        Timestamp::MIN_VALID.millis()..=NOW,
        prop::option::of("\\PC{0,40}"),
        payload(),
        any::<bool>(),
        prop::option::of(prop_oneof![Just(stream()), Just(identity())]),
    )
        .prop_map(|(id, ts, key, payload, ts_as_text, named)| {
            let event = Event {
                id: EventId::new(id).unwrap(),
                stream: identity(),
                ts: Timestamp::from_millis(ts),
                key,
                payload,
            };
            let sent = Sent {
                ts_as_text,
                stream: named,
            };
            (event, sent)
        })
}

fn as_input((event, sent): &(Event, Sent)) -> Value {
    let ts = if sent.ts_as_text {
        json!(event.ts.to_string())
    } else {
        json!(event.ts.millis())
    };
    let mut input = json!({ "id": event.id.as_str(), "ts": ts, "payload": event.payload });
    if let Some(key) = &event.key {
        input["key"] = json!(key);
    }
    if let Some(stream) = &sent.stream {
        input["stream"] = json!(stream);
    }
    input
}

fn json_body(events: &[(Event, Sent)], single: bool) -> Vec<u8> {
    if single && events.len() == 1 {
        serde_json::to_vec(&as_input(&events[0])).unwrap()
    } else {
        serde_json::to_vec(&events.iter().map(as_input).collect::<Vec<_>>()).unwrap()
    }
}

fn ndjson_body(events: &[(Event, Sent)]) -> Vec<u8> {
    let mut body = Vec::new();
    for e in events {
        body.extend(serde_json::to_vec(&as_input(e)).unwrap());
        body.extend(b"\n");
    }
    body
}

/// A nearly valid body: a valid one cut short, with a byte changed or inserted, with a
/// slice repeated (repeating keys or values), or with an `"id":1,` pair inserted.
fn mutate(mut body: Vec<u8>, how: u8, at: usize, byte: u8) -> Vec<u8> {
    if body.is_empty() {
        return body;
    }
    let at = at % body.len();
    match how % 5 {
        0 => body.truncate(at),
        1 => body[at] = byte,
        2 => body.insert(at, byte),
        3 => {
            let end = (at + 16).min(body.len());
            let copy = body[at..end].to_vec();
            body.splice(at..at, copy);
        }
        _ => {
            body.splice(at..at, b"\"id\":1,".iter().copied());
        }
    }
    body
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_bytes_never_panic_the_body_parser(
        body in prop::collection::vec(any::<u8>(), 0..512),
    ) {
        check_outcome(&parse(&body, BodyFormat::Json));
        check_outcome(&parse(&body, BodyFormat::Ndjson));
    }

    #[test]
    fn json_ish_text_never_panics_the_body_parser(
        body in "[\\[\\]{}\",:0-9a-z \\n\\\\.eE+-]{0,200}",
    ) {
        check_outcome(&parse(body.as_bytes(), BodyFormat::Json));
        check_outcome(&parse(body.as_bytes(), BodyFormat::Ndjson));
    }

    #[test]
    fn valid_batches_parse_to_the_same_events(
        events in prop::collection::vec(event(), 1..8),
        single in any::<bool>(),
    ) {
        let expected: Vec<Event> = events.iter().map(|(e, _)| e.clone()).collect();
        let parsed = parse(&json_body(&events, single), BodyFormat::Json).unwrap();
        prop_assert_eq!(&parsed, &expected);
        let parsed = parse(&ndjson_body(&events), BodyFormat::Ndjson).unwrap();
        prop_assert_eq!(&parsed, &expected);
    }

    #[test]
    fn nearly_valid_bodies_are_a_result_or_an_error(
        events in prop::collection::vec(event(), 1..4),
        how in any::<u8>(),
        at in any::<usize>(),
        byte in any::<u8>(),
    ) {
        let body = mutate(json_body(&events, false), how, at, byte);
        check_outcome(&parse(&body, BodyFormat::Json));
        let body = mutate(ndjson_body(&events), how, at, byte);
        check_outcome(&parse(&body, BodyFormat::Ndjson));
    }

    #[test]
    fn more_events_than_the_limit_is_too_many_events(extra in 1usize..5) {
        let n = limits().max_events + extra;
        let body = format!("[{}]", vec![r#"{"payload":{}}"#; n].join(","));
        prop_assert_eq!(
            parse(body.as_bytes(), BodyFormat::Json),
            Err(ParseError::TooManyEvents { limit: limits().max_events })
        );
    }
}

#[test]
fn deeply_nested_bodies_are_errors_not_stack_overflows() {
    for depth in [200, 10_000, 100_000] {
        let array = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        let object = format!(
            "{{\"payload\":{}0{}}}",
            "{\"a\":".repeat(depth),
            "}".repeat(depth)
        );
        for body in [array, object] {
            for format in [BodyFormat::Json, BodyFormat::Ndjson] {
                let outcome = parse(body.as_bytes(), format);
                assert!(outcome.is_err(), "depth {depth}");
                check_outcome(&outcome);
            }
        }
    }
}

// ---------------------------------------------------------------- expressions

fn field() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("id".to_owned()),
        Just("ts".to_owned()),
        Just("key".to_owned()),
        Just("stream".to_owned()),
        "payload\\.[a-z]{1,6}(\\.[a-z]{1,4})?",
        "payload\\['[a-z .]{1,6}'\\]",
        "geo\\.[a-z]{1,5}",
        "[a-z]{1,6}",
    ]
}

fn literal() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|n| format!("{n:?}")),
        "'[^']{0,8}'",
        Just("NULL".to_owned()),
        Just("TRUE".to_owned()),
        Just("FALSE".to_owned()),
        Just("9223372036854775808".to_owned()),
    ]
}

/// A random expression from a grammar close to what pipelines use, including type errors
/// and unknown names (which must be errors, not panics).
fn expression() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![field(), literal()];
    leaf.prop_recursive(5, 64, 3, |inner| {
        let op = prop::sample::select(vec![
            "+", "-", "*", "/", "%", "=", "<>", "<", "<=", ">", ">=", "AND", "OR", "||", "LIKE",
            "NOT LIKE", "ILIKE",
        ]);
        let function = prop::sample::select(vec![
            "lower", "upper", "length", "abs", "coalesce", "nullif", "count", "sum", "nope",
        ]);
        let ty = prop::sample::select(vec!["BIGINT", "DOUBLE", "TEXT", "BOOLEAN", "DATE", "X"]);
        prop_oneof![
            (inner.clone(), op, inner.clone()).prop_map(|(a, op, b)| format!("{a} {op} {b}")),
            inner.clone().prop_map(|a| format!("({a})")),
            inner.clone().prop_map(|a| format!("NOT {a}")),
            inner.clone().prop_map(|a| format!("-{a}")),
            inner.clone().prop_map(|a| format!("{a} IS NULL")),
            (inner.clone(), ty).prop_map(|(a, ty)| format!("CAST({a} AS {ty})")),
            (function, prop::collection::vec(inner.clone(), 0..3))
                .prop_map(|(f, args)| format!("{f}({})", args.join(", "))),
            (inner.clone(), prop::collection::vec(inner.clone(), 1..3))
                .prop_map(|(a, list)| format!("{a} IN ({})", list.join(", "))),
            (inner.clone(), inner.clone(), inner.clone())
                .prop_map(|(a, b, c)| format!("{a} BETWEEN {b} AND {c}")),
            (inner.clone(), inner.clone(), inner)
                .prop_map(|(a, b, c)| format!("CASE WHEN {a} THEN {b} ELSE {c} END")),
        ]
    })
}

fn scope() -> Scope {
    Scope {
        lookups: vec!["geo".to_owned()],
    }
}

fn sample_event() -> Event {
    Event {
        id: EventId::new("e1").unwrap(),
        stream: stream(),
        ts: Timestamp::from_millis(NOW),
        key: Some("k".to_owned()),
        payload: json!({ "a": 1, "b": "x", "c": { "d": 2.5 }, "odd name": [1, 2] })
            .as_object()
            .unwrap()
            .clone(),
    }
}

/// Compiling `text` gives an expression or a positioned error; an expression evaluates
/// without panicking, and its canonical text compiles to the same canonical text.
fn check_expression(text: &str) {
    match Expr::compile(text, &scope()) {
        Ok(expr) => {
            let event = sample_event();
            let geo = json!({ "country": "FR" }).as_object().unwrap().clone();
            let lookups = [Some(&geo)];
            let _ = expr.eval(&Row::new(&event, &lookups));
            let _ = expr.eval(&Row::new(&event, &[None]));
            let again = Expr::compile(expr.canonical(), &scope())
                .unwrap_or_else(|e| panic!("{text:?} → {:?}: {e}", expr.canonical()));
            assert_eq!(again.canonical(), expr.canonical(), "{text:?}");
        }
        Err(error) => {
            assert!(error.line >= 1 && error.column >= 1, "{text:?}: {error:?}");
            assert!(!error.message.is_empty());
        }
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_text_never_panics_the_expression_compiler(text in "\\PC{0,80}") {
        check_expression(&text);
    }

    #[test]
    fn sql_ish_text_never_panics_the_expression_compiler(
        text in "[a-z0-9_ .,'\"()\\[\\]+*/%<>=!|:-]{0,80}",
    ) {
        check_expression(&text);
    }

    #[test]
    fn generated_expressions_compile_or_fail_cleanly(text in expression()) {
        check_expression(&text);
    }
}

#[test]
fn deeply_nested_expressions_are_errors_not_stack_overflows() {
    for depth in [100, 1_000, 4_000] {
        for text in [
            format!("{}1{}", "(".repeat(depth), ")".repeat(depth)),
            format!("{}1", "NOT ".repeat(depth)),
            format!("{}1", "-".repeat(depth)),
            format!("{}1{}", "abs(".repeat(depth), ")".repeat(depth)),
        ] {
            check_expression(&text);
        }
    }
}

/// The generated expressions are not all errors: a good share compiles, so the properties
/// over compiled expressions (evaluation, canonical text) are exercised.
#[test]
fn a_good_share_of_generated_expressions_compiles() {
    use proptest::strategy::ValueTree as _;
    use proptest::test_runner::{RngSeed, TestRunner};
    let mut runner = TestRunner::new(ProptestConfig {
        rng_seed: RngSeed::Fixed(9),
        ..config()
    });
    let strategy = expression();
    let compiled = (0..500)
        .filter(|_| {
            let text = strategy.new_tree(&mut runner).unwrap().current();
            Expr::compile(&text, &scope()).is_ok()
        })
        .count();
    assert!(compiled >= 50, "{compiled} of 500 compiled");
}
