//! Any UTF-8 text, as a pipeline expression: compiling it gives an expression or a
//! positioned error, never a panic; a compiled expression evaluates without panicking and
//! its canonical text compiles to the same canonical text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::json;
use tributary_core::expr::{Expr, Row, Scope};
use tributary_core::{Event, EventId, StreamName, Timestamp};

fuzz_target!(|text: &str| {
    let scope = Scope {
        lookups: vec!["geo".to_owned()],
    };
    let Ok(expr) = Expr::compile(text, &scope) else {
        return;
    };
    let (Ok(id), Ok(stream)) = (EventId::new("e1"), StreamName::new("fuzz")) else {
        return;
    };
    let payload = json!({ "a": 1, "b": "x", "c": { "d": 2.5 } });
    let event = Event {
        id,
        stream,
        ts: Timestamp::from_millis(1_764_500_000_000),
        key: Some("k".to_owned()),
        payload: payload.as_object().cloned().unwrap_or_default(),
    };
    let geo = json!({ "country": "FR" });
    let lookups = [geo.as_object()];
    let _ = expr.eval(&Row::new(&event, &lookups));
    let again = Expr::compile(expr.canonical(), &scope).map(|e| e.canonical().to_owned());
    assert_eq!(again.as_deref(), Ok(expr.canonical()), "{text:?}");
});
