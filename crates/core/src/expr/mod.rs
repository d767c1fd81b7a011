//! SQL expressions over events, compiled once to typed closures.
//!
//! The contract:
//!
//! - [`Expr::compile`] parses one SQL expression (sqlparser's generic dialect) and checks it
//!   against a [`Scope`]: every field, function, operator and type is resolved here, so a
//!   mistake is an [`ExprError`] pointing at its line and column, never a runtime surprise.
//! - An expression reads a [`Row`]: the event's `id`, `stream`, `ts` (epoch milliseconds),
//!   `key`, `payload.<path>` (also `payload['odd name']`) and `<lookup>.<path>` for each
//!   lookup the scope declares. A missing field, a lookup that matched no row, and a JSON
//!   object or array all read as `NULL`.
//! - Semantics are SQL's (as in PostgreSQL and Flink SQL): `NULL` propagates through
//!   operators, `AND`/`OR`/`NOT` are three-valued, integer arithmetic is checked (overflow
//!   and division by zero give `NULL`), and a number mixed with a double gives a double.
//!   Payload and lookup fields are JSON, so dynamically typed: a runtime type mismatch gives
//!   `NULL`, whereas one the compiler can see (`'a' + 1`) is an error.
//! - Evaluation never fails and, except for operators that build a new string (`||`,
//!   `lower`, `upper`, a cast to text, a string constant returned by `CASE` or `COALESCE`),
//!   never allocates: values borrow from the event, and subexpressions that read no field
//!   are folded to constants at compile time.
//! - Aggregate functions (`count`, `sum`, ...) are not expressions; the pipeline plan handles
//!   them and this module rejects them.

mod compile;
mod like;
mod ops;

use std::convert::Infallible;
use std::fmt;
use std::ops::ControlFlow;
use std::sync::Arc;

use sqlparser::ast::{Value as SqlValue, ValueWithSpan, VisitMut, VisitorMut};
use sqlparser::dialect::GenericDialect;
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::{Location, Token, TokenWithSpan, Tokenizer};

use std::borrow::Cow;

use crate::record::Projection;
use crate::value::{ColumnType, Value};
use crate::{Event, StreamName, Timestamp};

/// The most tokens an expression's text may have. Deeply nested syntax trees are dropped
/// recursively (by sqlparser), so the length of the text is bounded to bound their depth.
pub const MAX_TOKENS: usize = 8192;

/// What an expression reads: one event, and the enrichment rows looked up for it.
#[derive(Debug, Clone, Copy)]
pub struct Row<'a> {
    /// The event.
    pub event: EventRef<'a>,
    /// One entry per lookup declared in the Scope, in order: the matched reference row, or None.
    pub lookups: &'a [Option<&'a serde_json::Map<String, serde_json::Value>>],
}

impl<'a> Row<'a> {
    /// The row of a whole event.
    #[must_use]
    pub fn new(
        event: &'a Event,
        lookups: &'a [Option<&'a serde_json::Map<String, serde_json::Value>>],
    ) -> Self {
        Self {
            event: event.into(),
            lookups,
        }
    }
}

/// The event an expression reads: a whole [`Event`], or what a pipeline decoded of a
/// record ([`crate::record::decode_view`]), borrowed either way.
#[derive(Debug, Clone, Copy)]
pub struct EventRef<'a> {
    /// `id`.
    pub id: &'a str,
    /// `stream`.
    pub stream: &'a StreamName,
    /// `ts`.
    pub ts: Timestamp,
    /// `key`.
    pub key: Option<&'a str>,
    /// `payload`.
    pub payload: PayloadRef<'a>,
}

impl<'a> From<&'a Event> for EventRef<'a> {
    fn from(event: &'a Event) -> Self {
        Self {
            id: event.id.as_str(),
            stream: &event.stream,
            ts: event.ts,
            key: event.key.as_deref(),
            payload: PayloadRef::Json(&event.payload),
        }
    }
}

/// The payload an expression reads.
#[derive(Debug, Clone, Copy)]
pub enum PayloadRef<'a> {
    /// The whole payload.
    Json(&'a serde_json::Map<String, serde_json::Value>),
    /// The values of the projected fields only, one per path of `projection`. A path
    /// outside the projection reads as `NULL`.
    Projected {
        /// The paths.
        projection: &'a Projection,
        /// Their values, in the projection's order.
        slots: &'a [Value<'a>],
    },
}

impl<'a> PayloadRef<'a> {
    /// The value at `path` (field names from the payload down), `NULL` when missing or not
    /// a scalar.
    #[must_use]
    pub fn get<S: AsRef<str>>(&self, path: &[S]) -> Value<'a> {
        match *self {
            Self::Json(map) => descend(map, path),
            Self::Projected { projection, slots } => {
                match projection.slot_of(path).and_then(|i| slots.get(i)) {
                    Some(Value::Str(s)) => Value::Str(Cow::Borrowed(s.as_ref())),
                    Some(value) => value.clone(),
                    None => Value::Null,
                }
            }
        }
    }
}

impl PayloadRef<'_> {
    /// The payload as a JSON object: the whole one, or one holding only the projected
    /// fields that have a value (nested as in the event), which reads the same for every
    /// projected path.
    #[must_use]
    pub fn to_json_map(&self) -> serde_json::Map<String, serde_json::Value> {
        let (projection, slots) = match *self {
            Self::Json(map) => return map.clone(),
            Self::Projected { projection, slots } => (projection, slots),
        };
        let mut map = serde_json::Map::new();
        for (path, value) in projection.paths().iter().zip(slots) {
            let json = match value {
                Value::Null => continue,
                Value::Bool(b) => serde_json::Value::Bool(*b),
                Value::Int(i) => serde_json::Value::from(*i),
                Value::Float(f) => serde_json::Value::from(*f),
                Value::Str(s) => serde_json::Value::String(s.to_string()),
            };
            insert_at(&mut map, path, json);
        }
        map
    }
}

/// Sets `path` in `map` to `value`, making the objects on the way. A field with a value
/// has no projected field below it with one, so the way holds objects only.
fn insert_at(
    map: &mut serde_json::Map<String, serde_json::Value>,
    path: &[String],
    value: serde_json::Value,
) {
    match path {
        [] => {}
        [last] => {
            map.insert(last.clone(), value);
        }
        [first, rest @ ..] => {
            let inner = map
                .entry(first.clone())
                .or_insert_with(|| serde_json::Value::Object(serde_json::Map::new()));
            if let serde_json::Value::Object(inner) = inner {
                insert_at(inner, rest, value);
            }
        }
    }
}

/// The scalar at `path` in `object`: `NULL` when missing, or an object or array.
pub(crate) fn descend<'a, S: AsRef<str>>(
    object: &'a serde_json::Map<String, serde_json::Value>,
    path: &[S],
) -> Value<'a> {
    let Some((first, rest)) = path.split_first() else {
        return Value::Null;
    };
    let Some(mut value) = object.get(first.as_ref()) else {
        return Value::Null;
    };
    for name in rest {
        match value.as_object().and_then(|o| o.get(name.as_ref())) {
            Some(inner) => value = inner,
            None => return Value::Null,
        }
    }
    Value::from_json(value)
}

/// The names an expression may use besides the event's own fields.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    /// The lookups (enrichment tables) in the order of [`Row::lookups`]: `<name>.<field>`
    /// reads the matched row's field. The event's own fields (`id`, `stream`, `ts`, `key`,
    /// `payload`) take precedence over a lookup of the same name.
    pub lookups: Vec<String>,
}

/// The compiled evaluator of an expression.
type EvalFn = Arc<dyn for<'a> Fn(&Row<'a>) -> Value<'a> + Send + Sync>;

/// A compiled expression: cheap to clone and to share between threads.
#[derive(Clone)]
pub struct Expr {
    eval: EvalFn,
    ty: Option<ColumnType>,
    canonical: String,
    column_name: Option<String>,
    is_event_key: bool,
    payload_paths: Arc<[Box<[String]>]>,
    reads_lookups: bool,
}

impl Expr {
    /// Parses `text` (one SQL expression) and compiles it.
    ///
    /// # Errors
    /// When the text is not one SQL expression, or names an unknown field or function, or
    /// has a type error; the error points at the offending position.
    pub fn compile(text: &str, scope: &Scope) -> Result<Expr, ExprError> {
        let mut ast = parse_tokens(text, tokenize(text)?)?;
        let mut expr = Self::compile_ast(&ast, text, scope)?;
        expr.canonical = canonical_text(&mut ast);
        Ok(expr)
    }

    /// Compiles an already parsed expression; `source` is the text it was parsed from (for
    /// error positions).
    ///
    /// The positions in errors come from the syntax tree's spans, which are relative to
    /// `source`; where the tree has none, the error points at the start of `source`.
    ///
    /// # Errors
    /// As [`Expr::compile`], except for syntax errors.
    pub fn from_ast(
        ast: &sqlparser::ast::Expr,
        source: &str,
        scope: &Scope,
    ) -> Result<Expr, ExprError> {
        let mut expr = Self::compile_ast(ast, source, scope)?;
        // A derived `Clone` recurses once per level of the tree, with large frames in debug
        // builds: a chain of a few hundred operators (the compiler allows 256 levels) would
        // overflow a 2 MiB thread stack, so the copy gets a stack of its own.
        let mut printable = stacker::grow(CLONE_STACK, || ast.clone());
        expr.canonical = canonical_text(&mut printable);
        Ok(expr)
    }

    /// [`Expr::from_ast`] without its canonical text (left empty).
    fn compile_ast(
        ast: &sqlparser::ast::Expr,
        source: &str,
        scope: &Scope,
    ) -> Result<Expr, ExprError> {
        let mut compiler = compile::Compiler::new(scope);
        let node = compiler.compile(ast, start_of_text(source))?;
        let (column_name, is_event_key) = match node.field {
            Some(field) => (Some(field.name), matches!(field.read, compile::Reader::Key)),
            None => (None, false),
        };
        Ok(Expr {
            eval: node.eval,
            ty: node.ty.column_type(),
            canonical: String::new(),
            column_name,
            is_event_key,
            payload_paths: compiler.paths.into(),
            reads_lookups: compiler.reads_lookups,
        })
    }

    /// Whether it reads a lookup's field: if not, it can be evaluated before the lookups.
    #[must_use]
    pub fn reads_lookups(&self) -> bool {
        self.reads_lookups
    }

    /// The payload fields it reads, each a path of field names (`payload.a.b` is
    /// `["a", "b"]`): what a [`Projection`] must keep for it.
    #[must_use]
    pub fn payload_paths(&self) -> &[Box<[String]>] {
        &self.payload_paths
    }

    /// Evaluates the expression on a row. Never fails: what SQL leaves undefined at runtime
    /// (a type mismatch in a JSON field, an overflow) is `NULL`.
    #[must_use]
    pub fn eval<'a>(&self, row: &Row<'a>) -> Value<'a> {
        (self.eval)(row)
    }

    /// Evaluates as a filter: true only for Value::Bool(true) (NULL and false drop the event).
    #[must_use]
    pub fn matches(&self, row: &Row<'_>) -> bool {
        matches!((self.eval)(row), Value::Bool(true))
    }

    /// The static type when known (a cast, a literal, arithmetic, comparison → Bool,
    /// lower/upper → Text); None for a raw payload field (JSON: any type).
    #[must_use]
    pub fn ty(&self) -> Option<ColumnType> {
        self.ty
    }

    /// A canonical text of the expression (sqlparser's Display of the AST), for fingerprints.
    #[must_use]
    pub fn canonical(&self) -> &str {
        &self.canonical
    }

    /// A column name derived from it: the last segment of a field access
    /// (`payload.a.country` → "country", `key` → "key"), None otherwise.
    #[must_use]
    pub fn column_name(&self) -> Option<String> {
        self.column_name.clone()
    }

    /// Whether the expression is exactly the event's `key` field.
    #[must_use]
    pub fn is_event_key(&self) -> bool {
        self.is_event_key
    }
}

impl fmt::Debug for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Expr")
            .field("canonical", &self.canonical)
            .field("ty", &self.ty)
            .finish_non_exhaustive()
    }
}

/// An error pointing at a position in the text. Always the author's mistake: the expression
/// must be fixed, and retrying cannot help.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message} (at line {line}, column {column})")]
pub struct ExprError {
    /// What is wrong.
    pub message: String,
    /// The line it is on, from 1.
    pub line: u64,
    /// The column it is at, from 1 (in characters).
    pub column: u64,
}

impl ExprError {
    /// An error at `at`.
    pub(crate) fn at(at: Location, message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            line: at.line,
            column: at.column,
        }
    }
}

/// Parses one SQL expression (GenericDialect), with positioned errors.
///
/// # Errors
/// When `text` is not exactly one expression, or has more than [`MAX_TOKENS`] tokens.
pub fn parse(text: &str) -> Result<sqlparser::ast::Expr, ExprError> {
    parse_tokens(text, tokenize(text)?)
}

/// The tokens of `text`, with their positions; at most [`MAX_TOKENS`] besides white space.
fn tokenize(text: &str) -> Result<Vec<TokenWithSpan>, ExprError> {
    let dialect = GenericDialect {};
    let tokens = Tokenizer::new(&dialect, text)
        .tokenize_with_location()
        .map_err(|e| ExprError::at(e.location, format!("syntax error: {}", e.message)))?;
    let too_many = tokens
        .iter()
        .filter(|t| !matches!(t.token, Token::Whitespace(_)))
        .nth(MAX_TOKENS);
    if let Some(token) = too_many {
        return Err(ExprError::at(
            token.span.start,
            format!("expression is too long (at most {MAX_TOKENS} tokens)"),
        ));
    }
    Ok(tokens)
}

/// Parses `tokens` (of `text`) as exactly one expression.
fn parse_tokens(text: &str, tokens: Vec<TokenWithSpan>) -> Result<sqlparser::ast::Expr, ExprError> {
    let dialect = GenericDialect {};
    let mut parser = Parser::new(&dialect).with_tokens_with_locations(tokens);
    let expr = parser.parse_expr().map_err(|e| {
        let fallback = known_or(parser.peek_token().span.start, end_of_text(text));
        syntax_error(&e, fallback)
    })?;
    let next = parser.peek_token();
    if next.token != Token::EOF {
        return Err(ExprError::at(
            known_or(next.span.start, end_of_text(text)),
            format!(
                "syntax error: unexpected `{}` after the expression",
                next.token
            ),
        ));
    }
    Ok(expr)
}

/// The stack on which [`Expr::from_ast`] copies a syntax tree (allocated lazily).
const CLONE_STACK: usize = 64 << 20;

/// The canonical text of `ast`: sqlparser's `Display` of it, every string literal first
/// made a plain single-quoted string that prints as the literal reading back as the same
/// text.
///
/// Every quoting (`N'…'`, `E'…'`, `U&'…'`, `R'…'`, triple quotes, `$$…$$`) means the same
/// string to an expression, and the tokenizer has already decoded it; printed in its own
/// quoting it may not read back (a raw string is printed as it is, without doubling its
/// quotes: `R'a''b'` is read as `a'b` and would print as `R'a'b'`, which does not read
/// back). sqlparser prints a quote in a plain string doubled, except one that follows a
/// backslash or another quote, which it takes for already escaped (it cannot tell whether
/// the tokenizer unescaped the string): the string `a''` would print as `'a'''`, which
/// reads back as `a'`, and `a\'` as `'a\''`, which does not read back at all (a backslash
/// escapes nothing in this dialect). With every quote doubled beforehand, each one prints
/// doubled, which is how this dialect escapes it.
fn canonical_text(ast: &mut sqlparser::ast::Expr) -> String {
    struct PlainStrings;
    impl VisitorMut for PlainStrings {
        type Break = Infallible;
        fn pre_visit_value(&mut self, value: &mut ValueWithSpan) -> ControlFlow<Infallible> {
            if let Some(text) = compile::string_literal(&value.value) {
                value.value = SqlValue::SingleQuotedString(text.replace('\'', "''"));
            }
            ControlFlow::Continue(())
        }
    }
    let ControlFlow::Continue(()) = ast.visit(&mut PlainStrings);
    ast.to_string()
}

/// A parser error as an [`ExprError`]: sqlparser appends the position to its message
/// (" at Line: 1, Column: 5"), which becomes the error's position; `fallback` otherwise.
pub(crate) fn syntax_error(error: &ParserError, fallback: Location) -> ExprError {
    let message = match error {
        ParserError::TokenizerError(m) | ParserError::ParserError(m) => m.as_str(),
        ParserError::RecursionLimitExceeded => {
            return ExprError::at(fallback, "expression is nested too deeply");
        }
    };
    let positioned = message.rsplit_once(" at Line: ").and_then(|(text, at)| {
        let (line, column) = at.split_once(", Column: ")?;
        Some((
            text,
            Location::new(line.parse().ok()?, column.parse().ok()?),
        ))
    });
    match positioned {
        Some((text, at)) => ExprError::at(at, format!("syntax error: {text}")),
        None => ExprError::at(fallback, format!("syntax error: {message}")),
    }
}

/// `at`, unless it is the empty location sqlparser gives tokens it made up (such as the end
/// of input): then `fallback`.
fn known_or(at: Location, fallback: Location) -> Location {
    if at.line == 0 { fallback } else { at }
}

/// The position of the first character of `text` that is not white space (1:1 when none).
fn start_of_text(text: &str) -> Location {
    let mut at = Location::new(1, 1);
    for c in text.chars() {
        if !c.is_whitespace() {
            break;
        }
        advance(&mut at, c);
    }
    at
}

/// The position just after the last character of `text`.
fn end_of_text(text: &str) -> Location {
    let mut at = Location::new(1, 1);
    for c in text.chars() {
        advance(&mut at, c);
    }
    at
}

/// Moves `at` past `c`.
fn advance(at: &mut Location, c: char) {
    if c == '\n' {
        at.line += 1;
        at.column = 1;
    } else {
        at.column += 1;
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use serde_json::json;

    use super::*;
    use crate::{EventId, StreamName, Timestamp};

    fn event(payload: serde_json::Value) -> Event {
        let serde_json::Value::Object(payload) = payload else {
            panic!("payload must be an object");
        };
        Event {
            id: EventId::new("e1").unwrap(),
            stream: StreamName::new("orders").unwrap(),
            ts: Timestamp::from_millis(1_700_000_000_000),
            key: Some("k1".into()),
            payload,
        }
    }

    fn scope() -> Scope {
        Scope {
            lookups: vec!["geo".into(), "tier".into()],
        }
    }

    fn sample() -> Event {
        event(json!({
            "status": "paid",
            "amount": 12.5,
            "qty": 3,
            "big": i64::MAX,
            "zero": 0,
            "name": "Ada",
            "flag": true,
            "off": false,
            "nothing": null,
            "a": {"b": {"c": "deep"}, "list": [1, 2]},
            "odd name": "odd",
            "num_text": "42",
        }))
    }

    /// Strings holding quotes in a row or after a backslash: the canonical text reads back
    /// as the same string (sqlparser's printer alone would print `'a'''` for `a''`, which
    /// reads back as `a'`, and `'a\''` for `a\'`, which does not read back), and two
    /// different strings never share a canonical text.
    #[test]
    fn canonical_text_keeps_quotes_and_backslashes() {
        let mut seen = std::collections::HashMap::new();
        for (text, value) in [
            (r"'N&'''''''''''''", r"N&''''''"),
            (r"'a'''", r"a'"),
            (r"'a'''''", r"a''"),
            (r"'a\'''", r"a\'"),
            (r"'a\'''''", r"a\''"),
            (r"'\\'", r"\\"),
            (r"'it''s'", r"it's"),
            (r"''''", r"'"),
            // Other quotings mean the same string and print as a plain one (a raw string
            // printed raw read back as another string).
            (r"R'R''.''''''~''''.'", r"R'.'''~''."),
            (r"R'a\'", r"a\"),
            (r"N'it''s'", r"it's"),
            (r"$$a''b$$", r"a''b"),
        ] {
            let expr = Expr::compile(text, &scope()).unwrap();
            let again = Expr::compile(expr.canonical(), &scope()).unwrap();
            assert_eq!(again.canonical(), expr.canonical(), "{text}");
            assert_eq!(eval(text), Value::Str(Cow::Borrowed(value)), "{text}");
            assert_eq!(eval(expr.canonical()), eval(text), "{text}");
            if let Some((other, other_value)) =
                seen.insert(expr.canonical().to_owned(), (text, value))
            {
                assert_eq!(
                    value,
                    other_value,
                    "{text} and {other} share {}",
                    expr.canonical()
                );
            }
        }
        // Quoted names too.
        let expr = Expr::compile(r#"payload."a""b" = 'x'"#, &scope()).unwrap();
        let again = Expr::compile(expr.canonical(), &scope()).unwrap();
        assert_eq!(again.canonical(), expr.canonical());
    }

    /// Evaluates `text` on [`sample`], with a `geo` row and no `tier` row.
    fn eval(text: &str) -> Value<'static> {
        let geo = json!({"country": "FR", "info": {"eu": true}});
        let geo = geo.as_object().unwrap();
        let lookups = [Some(geo), None];
        let event = sample();
        let expr = Expr::compile(text, &scope()).unwrap_or_else(|e| panic!("{text}: {e}"));
        let row = Row::new(&event, &lookups);
        let value = expr.eval(&row).into_owned();
        // The same on the pipelines' read path: the event decoded from its log record,
        // keeping only the fields the expression reads.
        let bytes = event.to_json_bytes();
        let projection = Projection::new(expr.payload_paths().iter().map(|p| &**p));
        let mut slots = Vec::new();
        let view = crate::record::decode_view(&event.stream, &bytes, &projection, &mut slots)
            .expect("decoded on the fast path");
        let projected = Row {
            event: EventRef {
                id: &view.id,
                stream: &event.stream,
                ts: view.ts,
                key: view.key.as_deref(),
                payload: PayloadRef::Projected {
                    projection: &projection,
                    slots: &slots,
                },
            },
            lookups: &lookups,
        };
        assert_eq!(
            expr.eval(&projected),
            value,
            "{text} on a projected payload"
        );
        value
    }

    fn err(text: &str) -> ExprError {
        match Expr::compile(text, &scope()) {
            Ok(expr) => panic!("{text} compiled: {expr:?}"),
            Err(e) => e,
        }
    }

    fn check(cases: &[(&str, Value<'static>)]) {
        for (text, want) in cases {
            assert_eq!(&eval(text), want, "{text}");
        }
    }

    fn s(text: &str) -> Value<'static> {
        Value::Str(Cow::Owned(text.to_owned()))
    }

    const NULL: Value<'static> = Value::Null;
    const T: Value<'static> = Value::Bool(true);
    const F: Value<'static> = Value::Bool(false);

    #[test]
    fn a_projected_payload_rebuilt_reads_the_same() {
        let event = event(json!({"a": {"b": 1, "c": "x"}, "s": 2.5, "o": {"p": [1]}, "z": 0}));
        let paths: Vec<Vec<String>> = [&["a", "b"][..], &["a"], &["s"], &["o", "p"], &["m"]]
            .iter()
            .map(|p| p.iter().map(|s| (*s).to_owned()).collect())
            .collect();
        let projection = Projection::new(paths.iter().map(Vec::as_slice));
        let bytes = event.to_json_bytes();
        let mut slots = Vec::new();
        crate::record::decode_view(&event.stream, &bytes, &projection, &mut slots).unwrap();
        let payload = PayloadRef::Projected {
            projection: &projection,
            slots: &slots,
        };
        let rebuilt = payload.to_json_map();
        assert_eq!(
            rebuilt,
            *json!({"a": {"b": 1}, "s": 2.5}).as_object().unwrap()
        );
        for path in &paths {
            assert_eq!(
                descend(&rebuilt, path),
                descend(&event.payload, path),
                "{path:?}"
            );
            assert_eq!(payload.get(path), descend(&event.payload, path), "{path:?}");
        }
    }

    #[test]
    fn fields_read_the_event() {
        check(&[
            ("id", s("e1")),
            ("stream", s("orders")),
            ("ts", Value::Int(1_700_000_000_000)),
            ("key", s("k1")),
            ("KEY", s("k1")),
            ("payload.status", s("paid")),
            ("payload.amount", Value::Float(12.5)),
            ("payload.qty", Value::Int(3)),
            ("payload.flag", T),
            ("payload.a.b.c", s("deep")),
            ("payload['odd name']", s("odd")),
            ("payload.a['b'].c", s("deep")),
            ("payload.\"odd name\"", s("odd")),
            // Missing fields, JSON null, objects and arrays read as NULL.
            ("payload.missing", NULL),
            ("payload.a.missing.deeper", NULL),
            ("payload.status.deeper", NULL),
            ("payload.nothing", NULL),
            ("payload.a", NULL),
            ("payload.a.list", NULL),
            // Payload names are case-sensitive.
            ("payload.Status", NULL),
        ]);
        let mut keyless = sample();
        keyless.key = None;
        let expr = Expr::compile("key", &Scope::default()).unwrap();
        let row = Row::new(&keyless, &[]);
        assert_eq!(expr.eval(&row), NULL);
    }

    #[test]
    fn lookups_read_their_row_or_null() {
        check(&[
            ("geo.country", s("FR")),
            ("geo.info.eu", T),
            ("geo.missing", NULL),
            ("tier.level", NULL),
            ("geo.country = 'FR' AND tier.level IS NULL", T),
        ]);
        // A row with fewer lookups than the scope declares reads NULL too.
        let expr = Expr::compile("tier.level", &scope()).unwrap();
        let event = sample();
        let row = Row::new(&event, &[]);
        assert_eq!(expr.eval(&row), NULL);
    }

    #[test]
    fn literals() {
        check(&[
            ("1", Value::Int(1)),
            ("-1", Value::Int(-1)),
            ("1.5", Value::Float(1.5)),
            ("1.0", Value::Float(1.0)),
            ("1e3", Value::Float(1000.0)),
            ("'it''s'", s("it's")),
            ("TRUE", T),
            ("false", F),
            ("NULL", NULL),
        ]);
    }

    #[test]
    fn arithmetic() {
        check(&[
            ("1 + 2 * 3", Value::Int(7)),
            ("(1 + 2) * 3", Value::Int(9)),
            ("payload.qty - 5", Value::Int(-2)),
            ("payload.qty * payload.amount", Value::Float(37.5)),
            ("payload.qty / 2", Value::Int(1)),
            ("payload.qty / 2.0", Value::Float(1.5)),
            ("payload.qty % 2", Value::Int(1)),
            ("payload.qty / payload.zero", NULL),
            ("payload.qty % payload.zero", NULL),
            ("payload.amount / payload.zero", NULL),
            ("payload.big + 1", NULL),
            ("payload.big * 2", NULL),
            ("-payload.qty", Value::Int(-3)),
            ("-payload.amount", Value::Float(-12.5)),
            ("+payload.qty", Value::Int(3)),
            ("payload.qty + NULL", NULL),
            ("payload.missing + 1", NULL),
            ("-payload.missing", NULL),
            // JSON fields are dynamically typed: a mismatch at runtime is NULL.
            ("payload.status + 1", NULL),
            ("payload.flag * 2", NULL),
            ("-payload.status", NULL),
            ("payload.status || '!'", s("paid!")),
            ("payload.status || payload.qty", s("paid3")),
            ("payload.status || NULL", NULL),
            ("payload.missing || 'x'", NULL),
            ("'a' || 1.5 || TRUE", s("a1.5true")),
        ]);
    }

    #[test]
    fn comparisons() {
        check(&[
            ("payload.qty = 3", T),
            ("payload.qty = 3.0", T),
            ("payload.qty <> 3", F),
            ("payload.qty != 4", T),
            ("payload.qty < 4", T),
            ("payload.qty <= 3", T),
            ("payload.qty > 3", F),
            ("payload.qty >= 3.5", F),
            ("payload.status = 'paid'", T),
            ("payload.status < 'pay'", T),
            ("payload.flag = TRUE", T),
            ("payload.qty = NULL", NULL),
            ("payload.missing = 1", NULL),
            ("payload.missing <> 1", NULL),
            ("NULL = NULL", NULL),
            // Values that do not compare at runtime give NULL.
            ("payload.status = 3", NULL),
            ("payload.status = payload.qty", NULL),
            ("ts > 0", T),
            ("key = 'k1'", T),
        ]);
    }

    #[test]
    fn logic_is_three_valued() {
        // t, f and n are a true, a false and a NULL the compiler cannot fold.
        let (t, f, n) = ("payload.flag", "payload.off", "payload.nothing");
        let and = [
            (t, t, T),
            (t, f, F),
            (t, n, NULL),
            (f, t, F),
            (f, f, F),
            (f, n, F),
            (n, t, NULL),
            (n, f, F),
            (n, n, NULL),
        ];
        for (a, b, want) in and {
            assert_eq!(eval(&format!("{a} AND {b}")), want, "{a} AND {b}");
            // A NOT of the OR of the NOTs is the AND (De Morgan holds in SQL's logic).
            assert_eq!(eval(&format!("NOT (NOT {a} OR NOT {b})")), want);
        }
        check(&[
            ("NOT payload.flag", F),
            ("NOT payload.nothing", NULL),
            ("NOT payload.status", NULL),
            ("payload.status AND TRUE", NULL),
            ("payload.flag AND TRUE", T),
            ("payload.nothing OR FALSE", NULL),
            ("payload.nothing OR TRUE", T),
            ("payload.off AND NULL", F),
            ("payload.flag AND NULL", NULL),
            ("payload.flag AND payload.flag AND payload.off", F),
            ("payload.off OR payload.off OR payload.flag", T),
            ("payload.off OR payload.nothing OR payload.off", NULL),
            ("payload.flag AND payload.nothing AND payload.flag", NULL),
            (
                "(payload.qty = 3 AND payload.status = 'paid') OR payload.off",
                T,
            ),
        ]);
    }

    #[test]
    fn in_and_between() {
        check(&[
            ("payload.qty IN (1, 2, 3)", T),
            ("payload.qty IN (1, 2)", F),
            ("payload.qty NOT IN (1, 2)", T),
            ("payload.qty NOT IN (1, 3)", F),
            ("payload.qty IN (1, NULL)", NULL),
            ("payload.qty IN (3, NULL)", T),
            ("payload.qty NOT IN (1, NULL)", NULL),
            ("payload.missing IN (1, 2)", NULL),
            ("payload.qty IN (payload.zero, payload.qty)", T),
            ("payload.qty IN (3.0)", T),
            (
                "payload.status IN ('a', 'b', 'c', 'd', 'e', 'f', 'g', 'paid')",
                T,
            ),
            (
                "payload.status IN ('a', 'b', 'c', 'd', 'e', 'f', 'g', 'h')",
                F,
            ),
            (
                "payload.status NOT IN ('a', 'b', 'c', 'd', 'e', 'f', 'g', 'h')",
                T,
            ),
            (
                "payload.missing IN ('a', 'b', 'c', 'd', 'e', 'f', 'g', 'h')",
                NULL,
            ),
            (
                "payload.qty IN ('a', 'b', 'c', 'd', 'e', 'f', 'g', 'h')",
                NULL,
            ),
            ("payload.qty BETWEEN 1 AND 3", T),
            ("payload.qty BETWEEN 3.5 AND 4", F),
            ("payload.qty NOT BETWEEN 4 AND 5", T),
            ("payload.qty BETWEEN NULL AND 5", NULL),
            ("payload.qty BETWEEN NULL AND 2", F),
            ("payload.qty NOT BETWEEN NULL AND 2", T),
            ("payload.missing BETWEEN 1 AND 2", NULL),
            ("payload.status BETWEEN 'a' AND 'q'", T),
        ]);
    }

    #[test]
    fn like_and_ilike() {
        check(&[
            ("payload.status LIKE 'pa%'", T),
            ("payload.status LIKE '%id'", T),
            ("payload.status LIKE '%ai%'", T),
            ("payload.status LIKE 'p__d'", T),
            ("payload.status LIKE 'P%'", F),
            ("payload.status NOT LIKE 'P%'", T),
            ("payload.status ILIKE 'P%'", T),
            ("payload.status NOT ILIKE 'P%'", F),
            ("payload.status LIKE 'paid'", T),
            ("payload.status LIKE 'pai'", F),
            ("payload.missing LIKE '%'", NULL),
            ("payload.qty LIKE '%'", NULL),
            ("payload.status LIKE NULL", NULL),
            ("payload.status LIKE payload.status", T),
            ("payload.status LIKE payload.name", F),
            ("'50%' LIKE '50\\%'", T),
            ("'500' LIKE '50\\%'", F),
            ("'50%' LIKE '50!%' ESCAPE '!'", T),
            ("'a\\b' LIKE 'a\\b' ESCAPE ''", T),
        ]);
    }

    #[test]
    fn null_and_truth_tests() {
        check(&[
            ("payload.missing IS NULL", T),
            ("payload.nothing IS NULL", T),
            ("payload.a IS NULL", T),
            ("payload.qty IS NULL", F),
            ("payload.qty IS NOT NULL", T),
            ("payload.flag IS TRUE", T),
            ("payload.nothing IS TRUE", F),
            ("payload.nothing IS NOT TRUE", T),
            ("payload.off IS FALSE", T),
            ("payload.off IS NOT FALSE", F),
            ("payload.nothing IS UNKNOWN", T),
            ("payload.qty IS DISTINCT FROM 3", F),
            ("payload.qty IS DISTINCT FROM NULL", T),
            ("payload.missing IS DISTINCT FROM NULL", F),
            ("payload.missing IS NOT DISTINCT FROM NULL", T),
        ]);
    }

    #[test]
    fn case_and_coalesce() {
        check(&[
            (
                "CASE WHEN payload.qty > 5 THEN 'big' WHEN payload.qty > 1 THEN 'mid' ELSE 'small' END",
                s("mid"),
            ),
            ("CASE WHEN payload.qty > 5 THEN 'big' END", NULL),
            ("CASE WHEN payload.nothing THEN 1 ELSE 2 END", Value::Int(2)),
            (
                "CASE payload.status WHEN 'new' THEN 1 WHEN 'paid' THEN 2 END",
                Value::Int(2),
            ),
            (
                "CASE payload.missing WHEN NULL THEN 1 ELSE 0 END",
                Value::Int(0),
            ),
            // Integers and doubles mix into doubles.
            (
                "CASE WHEN payload.flag THEN 1 ELSE 2.5 END",
                Value::Float(1.0),
            ),
            (
                "CASE WHEN payload.flag THEN payload.status ELSE 'x' END",
                s("paid"),
            ),
            (
                "COALESCE(payload.missing, payload.nothing, payload.qty, 7)",
                Value::Int(3),
            ),
            ("COALESCE(payload.missing, 7)", Value::Int(7)),
            ("COALESCE(payload.missing, NULL)", NULL),
            (
                "COALESCE(payload.missing, 1.5, payload.qty)",
                Value::Float(1.5),
            ),
            ("coalesce(payload.qty)", Value::Int(3)),
            ("COALESCE(NULL, 'x')", s("x")),
        ]);
    }

    #[test]
    fn casts_and_functions() {
        check(&[
            ("CAST(payload.num_text AS BIGINT)", Value::Int(42)),
            ("payload.num_text::int + 1", Value::Int(43)),
            ("CAST(payload.status AS INTEGER)", NULL),
            ("CAST(payload.num_text AS DOUBLE)", Value::Float(42.0)),
            ("CAST(payload.qty AS DOUBLE PRECISION)", Value::Float(3.0)),
            ("CAST(payload.qty AS REAL)", Value::Float(3.0)),
            ("CAST(payload.qty AS FLOAT)", Value::Float(3.0)),
            ("CAST(payload.qty AS DECIMAL(10, 2))", Value::Float(3.0)),
            ("CAST(payload.qty AS NUMERIC)", Value::Float(3.0)),
            ("CAST(payload.amount AS BIGINT)", Value::Int(12)),
            ("CAST(payload.qty AS VARCHAR)", s("3")),
            ("CAST(payload.qty AS TEXT) || 'x'", s("3x")),
            ("CAST(payload.amount AS STRING)", s("12.5")),
            ("CAST('true' AS BOOLEAN)", T),
            ("CAST(payload.qty AS BOOLEAN)", T),
            ("TRY_CAST(payload.status AS BIGINT)", NULL),
            ("CAST(payload.missing AS BIGINT)", NULL),
            ("lower(payload.name)", s("ada")),
            ("UPPER(payload.name)", s("ADA")),
            ("lower(payload.missing)", NULL),
            ("lower(payload.qty)", NULL),
            ("length(payload.name)", Value::Int(3)),
            ("abs(-payload.qty)", Value::Int(3)),
            ("abs(payload.amount - 20)", Value::Float(7.5)),
        ]);
    }

    #[test]
    fn constants_fold_with_sql_semantics() {
        check(&[
            ("1 / 0", NULL),
            ("9223372036854775807 + 1", NULL),
            ("TRUE OR payload.status", T),
            ("FALSE AND payload.flag", F),
            ("NULL AND payload.flag", NULL),
            ("NULL AND FALSE", F),
            ("lower('ABC') = 'abc'", T),
            ("'x' IN ('x', NULL)", T),
        ]);
    }

    #[test]
    fn static_types() {
        let ty = |text: &str| Expr::compile(text, &scope()).unwrap().ty();
        assert_eq!(ty("payload.x"), None);
        assert_eq!(ty("geo.country"), None);
        assert_eq!(ty("ts"), Some(ColumnType::Int));
        assert_eq!(ty("key"), Some(ColumnType::Text));
        assert_eq!(ty("1"), Some(ColumnType::Int));
        assert_eq!(ty("1.5"), Some(ColumnType::Float));
        assert_eq!(ty("'a'"), Some(ColumnType::Text));
        assert_eq!(ty("NULL"), None);
        assert_eq!(ty("CAST(payload.x AS BIGINT)"), Some(ColumnType::Int));
        assert_eq!(ty("payload.x::double"), Some(ColumnType::Float));
        assert_eq!(ty("payload.x + 1"), None);
        assert_eq!(ty("payload.x + 1.5"), Some(ColumnType::Float));
        assert_eq!(ty("ts + 1"), Some(ColumnType::Int));
        assert_eq!(ty("payload.x = 1"), Some(ColumnType::Bool));
        assert_eq!(ty("payload.x IS NULL"), Some(ColumnType::Bool));
        assert_eq!(ty("lower(payload.x)"), Some(ColumnType::Text));
        assert_eq!(ty("payload.x || 'a'"), Some(ColumnType::Text));
        assert_eq!(ty("length(payload.x)"), Some(ColumnType::Int));
        assert_eq!(
            ty("CASE WHEN payload.x THEN 1 ELSE 2.5 END"),
            Some(ColumnType::Float)
        );
        assert_eq!(ty("CASE WHEN payload.x THEN payload.y ELSE 2 END"), None);
        assert_eq!(ty("COALESCE(payload.x::bigint, 0)"), Some(ColumnType::Int));
    }

    #[test]
    fn names_and_canonical_text() {
        let expr = |text: &str| Expr::compile(text, &scope()).unwrap();
        assert_eq!(
            expr("payload.a.country").column_name().as_deref(),
            Some("country")
        );
        assert_eq!(
            expr("payload['odd name']").column_name().as_deref(),
            Some("odd name")
        );
        assert_eq!(
            expr("geo.country").column_name().as_deref(),
            Some("country")
        );
        assert_eq!(expr("key").column_name().as_deref(), Some("key"));
        assert_eq!(expr("(ts)").column_name().as_deref(), Some("ts"));
        assert_eq!(expr("lower(key)").column_name(), None);
        assert_eq!(expr("CAST(key AS TEXT)").column_name(), None);
        assert!(expr("key").is_event_key());
        assert!(expr("KEY").is_event_key());
        assert!(!expr("payload.key").is_event_key());
        assert!(!expr("lower(key)").is_event_key());
        assert_eq!(
            expr("payload.a   =  1 and  key IN ('x')").canonical(),
            "payload.a = 1 AND key IN ('x')"
        );
        let text = format!("{:?}", expr("key"));
        assert!(text.contains("key"), "{text}");
    }

    #[test]
    fn unknown_fields_are_positioned_errors() {
        assert_eq!(
            err("payload.x = 1 AND foo = 2"),
            ExprError {
                message:
                    "unknown field `foo` (fields are id, stream, ts, key, payload.*, geo.*, tier.*)"
                        .into(),
                line: 1,
                column: 19,
            }
        );
        let e = Expr::compile("foo.bar", &Scope::default()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown field `foo` (fields are id, stream, ts, key, payload.*) (at line 1, column 1)"
        );
        let e = err("payload.x = 1\n  AND  nope IS NULL");
        assert_eq!((e.line, e.column), (2, 8));
        let e = err("ts.x");
        assert_eq!((e.message.as_str(), e.column), ("`ts` has no fields", 4));
        assert!(err("payload").message.contains("name one of its fields"));
        assert!(err("geo").message.contains("`geo` is a lookup"));
        assert!(
            err("payload.items[0]")
                .message
                .contains("unsupported field access")
        );
    }

    #[test]
    fn functions_are_checked() {
        assert_eq!(
            err("1 + foo(payload.x)"),
            ExprError {
                message: "unknown function `foo`".into(),
                line: 1,
                column: 5
            }
        );
        assert_eq!(
            err("payload.x > 1 OR sum(payload.x) > 10"),
            ExprError {
                message: "aggregate function `sum` is not allowed here".into(),
                line: 1,
                column: 18
            }
        );
        for aggregate in [
            "count(*)",
            "COUNT(payload.x)",
            "min(ts)",
            "max(ts)",
            "avg(ts)",
        ] {
            assert!(
                err(aggregate).message.starts_with("aggregate function"),
                "{aggregate}"
            );
        }
        assert!(
            err("count_distinct(key)")
                .message
                .contains("`count_distinct`")
        );
        assert!(err("quantile(ts, 0.5)").message.contains("`quantile`"));
        assert_eq!(
            err("lower(key, 2)").message,
            "`lower` takes 1 argument, got 2"
        );
        assert_eq!(
            err("coalesce()").message,
            "`coalesce` takes at least 1 argument, got none"
        );
        assert!(
            err("lower(key) OVER ()")
                .message
                .contains("unsupported syntax")
        );
        assert!(
            err("CAST(key AS DATE)")
                .message
                .starts_with("unsupported type `DATE`")
        );
    }

    #[test]
    fn type_errors_are_positioned() {
        let cases = [
            ("'a' + 1", "type error: `+` needs a number, got TEXT", 1),
            (
                "payload.x * 'b'",
                "type error: `*` needs a number, got TEXT",
                13,
            ),
            ("NOT 5", "type error: NOT needs a boolean, got BIGINT", 5),
            ("lower(3)", "type error: lower() needs text, got BIGINT", 7),
            (
                "payload.x LIKE 5",
                "type error: LIKE needs text, got BIGINT",
                16,
            ),
            (
                "ts ILIKE 'a'",
                "type error: ILIKE needs text, got BIGINT",
                1,
            ),
            ("key = 1", "type error: cannot compare TEXT with BIGINT", 1),
            (
                "ts IN (1, 'a')",
                "type error: cannot compare BIGINT with TEXT",
                11,
            ),
            (
                "payload.x AND 1",
                "type error: AND needs a boolean, got BIGINT",
                15,
            ),
            ("-key", "type error: unary `-` needs a number, got TEXT", 2),
            ("abs('x')", "type error: abs() needs a number, got TEXT", 5),
            (
                "CASE WHEN payload.x THEN 1 ELSE 'a' END",
                "type error: CASE mixes BIGINT and TEXT",
                33,
            ),
            (
                "CASE WHEN 1 THEN 1 END",
                "type error: WHEN needs a boolean, got BIGINT",
                11,
            ),
            (
                "COALESCE(key, 1)",
                "type error: COALESCE mixes TEXT and BIGINT",
                15,
            ),
            (
                "CAST(TRUE AS DOUBLE)",
                "type error: cannot cast BOOLEAN to DOUBLE",
                6,
            ),
            (
                "payload.x IS TRUE OR ts IS FALSE",
                "type error: IS FALSE needs a boolean, got BIGINT",
                22,
            ),
        ];
        for (text, message, column) in cases {
            let e = err(text);
            assert_eq!(
                (e.message.as_str(), e.line, e.column),
                (message, 1, column),
                "{text}"
            );
        }
    }

    #[test]
    fn syntax_errors_are_positioned() {
        let cases = [
            ("payload.x = = 1", 1, 13),
            ("payload.x +", 1, 12),
            ("", 1, 1),
            ("'open", 1, 1),
            ("(payload.x", 1, 11),
            ("payload.x = 1 payload.y", 1, 15),
            ("payload.x = 1;", 1, 14),
            ("payload.x =\n  = 1", 2, 3),
        ];
        for (text, line, column) in cases {
            let e = err(text);
            assert!(e.message.starts_with("syntax error: "), "{text}: {e}");
            assert_eq!((e.line, e.column), (line, column), "{text}: {e}");
        }
        assert_eq!(
            err("a = 1 b").message,
            "syntax error: unexpected `b` after the expression"
        );
        assert!(parse("payload.x = 1").is_ok());
    }

    #[test]
    fn unsupported_syntax_is_an_error() {
        for text in [
            "ts IN (SELECT 1)",
            "EXISTS (SELECT 1)",
            "payload.x SIMILAR TO 'a'",
            "payload.x <=> 1",
            "payload.x & 1",
            "?",
        ] {
            let e = err(text);
            assert!(e.message.starts_with("unsupported"), "{text}: {e}");
        }
    }

    #[test]
    fn nesting_and_length_are_bounded() {
        let deep = |n: usize| format!("{}payload.x{}", "abs(".repeat(n), ")".repeat(n));
        // The parser's own limit stops deeply nested calls; long chains reach ours.
        let chain = |n: usize| format!("payload.x{}", " + 1".repeat(n));
        assert!(Expr::compile(&deep(20), &scope()).is_ok());
        assert!(err(&deep(200)).message.contains("nested too deeply"));
        assert!(Expr::compile(&chain(250), &scope()).is_ok());
        let parsed = parse_tokens(&chain(250), tokenize(&chain(250)).unwrap()).unwrap();
        assert!(Expr::from_ast(&parsed, &chain(250), &scope()).is_ok());
        assert!(err(&chain(300)).message.contains("nested too deeply"));
        let e = err(&"payload.x = 1 OR ".repeat(MAX_TOKENS / 4 + 1));
        assert!(e.message.contains("too long"), "{e}");
        // Long AND/OR chains are flattened, so they nest by one level only.
        let ors = vec!["payload.qty = 1"; 1000].join(" OR ") + " OR payload.qty = 3";
        assert_eq!(eval(&ors), T);
    }

    #[test]
    fn filters_match_only_true() {
        let expr = Expr::compile("payload.qty > 1", &scope()).unwrap();
        let event = sample();
        let row = Row::new(&event, &[]);
        assert!(expr.matches(&row));
        for text in ["payload.qty > 5", "payload.missing > 1", "payload.status"] {
            assert!(
                !Expr::compile(text, &scope()).unwrap().matches(&row),
                "{text}"
            );
        }
    }

    #[test]
    fn filters_evaluate_borrowing_from_the_event() {
        let event = event(json!({"status": "paid", "amount": 12.5}));
        let row = Row::new(&event, &[]);
        let scope = Scope::default();
        let filter =
            Expr::compile("payload.status = 'paid' AND payload.amount > 0", &scope).unwrap();
        assert_eq!(filter.eval(&row), Value::Bool(true));
        // What it reads is borrowed from the event, not copied.
        for field in ["payload.status", "key", "id", "stream"] {
            let value = Expr::compile(field, &scope).unwrap().eval(&row);
            assert!(
                matches!(value, Value::Str(Cow::Borrowed(_))),
                "{field}: {value:?}"
            );
        }
        let cast = Expr::compile("CAST(payload.status AS TEXT)", &scope).unwrap();
        assert!(matches!(cast.eval(&row), Value::Str(Cow::Borrowed("paid"))));
    }

    #[test]
    fn expressions_are_shareable() {
        fn assert_shareable<T: Send + Sync + Clone + fmt::Debug + 'static>() {}
        assert_shareable::<Expr>();
    }
}
