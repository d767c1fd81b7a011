//! From a pipeline as its author declares it to a checked [`PipelineSpec`].
//!
//! A pipeline is declared field by field (the TOML form, a [`Definition`]) or as one SQL
//! statement, whose parts [`parse_sql`] returns as the same texts the TOML form holds. Both
//! then go through [`plan`], which checks the definition and compiles its filter, keys and
//! aggregate calls, so a TOML pipeline and the SQL statement saying the same thing have one
//! plan and one fingerprint.
//!
//! Either form may declare lookups ([`LookupDefinition`]): reference tables whose fields
//! the filter, keys and aggregates read as `<lookup>.<field>` ([`crate::lookup`]).
//!
//! Every mistake is the author's to fix, and a [`PlanError`] names the field it is in and,
//! when it is inside an expression or the statement, its line and column. The texts
//! [`parse_sql`] returns are the statement's own, placed (after white space) at their line
//! and column in it, so that the errors [`plan`] finds in them point into the statement.
//!
//! The SQL is one query of this form (sqlparser's generic dialect):
//!
//! ```sql
//! SELECT <key> [AS column], <aggregate call> AS column, [window_start, window_end] ...
//! FROM <stream>
//! [WHERE <condition>]
//! GROUP BY [<key>, ...] tumble(ts, <size>) | hop(ts, <slide>, <size>) | session(ts, <gap>)
//! ```
//!
//! Sizes are intervals: `INTERVAL '5' MINUTE` (`MILLISECOND`, `SECOND`, `MINUTE`, `HOUR`,
//! `DAY`) or `INTERVAL '5 minutes'` (also `'90 seconds'`, `'1 hour 30 minutes'`). `hop`
//! takes the slide, then the size, as Flink's `HOP` does.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use sqlparser::ast::{
    DuplicateTreatment, Expr as SqlExpr, Function, FunctionArg, FunctionArgExpr, FunctionArguments,
    Ident, ObjectNamePart, Spanned, UnaryOperator, Value as SqlValue,
};
use sqlparser::dialect::GenericDialect;
use sqlparser::keywords::Keyword;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Location, Token, TokenWithSpan, Tokenizer};

use crate::aggregate::{self, FUNCTIONS};
use crate::event::StreamName;
use crate::expr::{self, Expr, ExprError, Scope};
use crate::lookup::{self, FileFormat, LookupSource, LookupSpec, is_identifier};
use crate::pipeline::{AggregateSpec, KeySpec, PipelineSpec, WindowSpec, millis};
use crate::ports::ErrorDomain;
use crate::results::RESERVED_COLUMNS;
use crate::value::{ColumnType, Value};

/// The longest window (and the longest lateness or out-of-orderness): 100 years of 365
/// days. Every window of an event in the accepted years (0000 to 9999,
/// `Timestamp::MIN_VALID..=MAX_VALID`) then starts and ends within what every analytics
/// store holds.
pub const MAX_WINDOW_MS: i64 = 100 * 365 * 24 * 3_600_000;

/// The shortest `idle_timeout`. A partition counts as idle when it delivered nothing for
/// that long; the engine polls for up to 200 ms, so a shorter timeout would call a busy
/// partition idle between two polls and let the others' watermark make its events late
/// (and zero would call every partition idle, so that no window ever closes).
pub const MIN_IDLE_TIMEOUT: Duration = Duration::from_secs(1);

/// The shortest `finalize_idle_after`, for the same reason as [`MIN_IDLE_TIMEOUT`]: a
/// shorter one would finalize the windows of a stream between two polls of a busy log.
pub const MIN_FINALIZE_IDLE_AFTER: Duration = Duration::from_secs(1);

/// The longest column name, in bytes (PostgreSQL's limit is 63, and each aggregate also
/// has a `{name}_partial` column).
pub const MAX_COLUMN_NAME_LEN: usize = 48;

/// The most tokens a SQL statement may have (as [`expr::MAX_TOKENS`] for one expression:
/// the length of the text bounds the depth of its syntax tree).
pub const MAX_STATEMENT_TOKENS: usize = expr::MAX_TOKENS;

/// A pipeline as declared, before checking (durations already parsed by the config layer).
#[derive(Debug, Clone, PartialEq)]
pub struct Definition {
    /// Its name (same rules as a stream name); also its consumer group.
    pub name: String,
    /// The streams it reads: at least one, no duplicates.
    pub sources: Vec<String>,
    /// The reference tables its filter, keys and aggregates may read, as
    /// `<lookup>.<field>`.
    pub lookups: Vec<LookupDefinition>,
    /// A condition (SQL); only events for which it is true are aggregated.
    pub filter: Option<String>,
    /// The key fields; `None`: the event's key (a column named `key`); empty: one row per
    /// window.
    pub key: Option<Vec<KeyDefinition>>,
    /// Its windows.
    pub window: WindowSpec,
    /// The aggregates, in column order: (column name, call text such as `sum(payload.x)`);
    /// `None`: `count = count(*)`.
    pub aggregates: Option<Vec<(String, String)>>,
    /// How long after a window closed an event may still update its result.
    pub allowed_lateness: Duration,
    /// How far behind the newest event of a partition an event may be and still count.
    pub max_out_of_orderness: Duration,
    /// A partition with no new event for this long does not hold the watermark back.
    pub idle_timeout: Duration,
    /// When set, the last windows of a stream that went quiet for this long become final.
    pub finalize_idle_after: Option<Duration>,
    /// How often results, state and offsets are committed.
    pub checkpoint_interval: Duration,
}

/// One key field as declared: an expression, and its column's name when the author gave
/// one (SQL's `AS`); otherwise the column is named after the field the expression reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyDefinition {
    /// The column's name, when given.
    pub column: Option<String>,
    /// The expression (SQL).
    pub expr: String,
}

impl From<&str> for KeyDefinition {
    fn from(expr: &str) -> Self {
        Self {
            column: None,
            expr: expr.to_owned(),
        }
    }
}

/// One lookup as declared: a reference table, and what an event's row in it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LookupDefinition {
    /// Its name, which expressions read its fields by: `<name>.<field>`.
    pub name: String,
    /// The expression over the event (SQL) whose text is looked up; it may not read a
    /// lookup.
    pub on: String,
    /// The table's column holding the lookup key.
    pub key: String,
    /// A file holding the table: `.csv`, `.ndjson` or `.jsonl`. Either this or `postgres`.
    pub file: Option<PathBuf>,
    /// A PostgreSQL table holding the table. Either this or `file`.
    pub postgres: Option<PostgresTable>,
    /// How often the table is loaded again: zero (never) or at least [`MIN_REFRESH`].
    pub refresh: Duration,
}

/// A PostgreSQL table, as declared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresTable {
    /// Connection URL.
    pub url: String,
    /// The table: `name` or `schema.name`, each `[A-Za-z_][A-Za-z0-9_]*`.
    pub table: String,
}

/// The shortest `refresh` of a lookup but zero (never): loading a table more often would
/// spend the pipeline's time on reading it.
pub const MIN_REFRESH: Duration = Duration::from_secs(1);

/// The event's own fields, which a lookup may not be named after.
const EVENT_FIELDS: &[&str] = &["id", "stream", "ts", "key", "payload"];

/// The parts a SQL statement declares, as texts to plan (see the module docs).
#[derive(Debug, Clone, PartialEq)]
pub struct SqlQuery {
    /// The stream of `FROM`.
    pub source: String,
    /// The condition of `WHERE`.
    pub filter: Option<String>,
    /// The `GROUP BY` expressions but the window, in order, with the `AS` name each has in
    /// the `SELECT` list (a key that is not selected is still a column).
    pub keys: Vec<KeyDefinition>,
    /// The window function of `GROUP BY`.
    pub window: WindowSpec,
    /// The aggregate calls of the `SELECT` list, in order: (column name, call text).
    pub aggregates: Vec<(String, String)>,
}

/// Why a pipeline definition is refused. Always the author's mistake (retrying cannot
/// help); an expression's error keeps its position in the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct PlanError {
    /// The field at fault: `name`, `sources[1]`, `filter`, `key[0]`, `window.slide`,
    /// `aggregates.revenue`, `idle_timeout`, `sql`...
    pub field: String,
    /// What is wrong, with `(at line L, column C)` when it has a position.
    pub message: String,
}

impl PlanError {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }

    /// Whose fault the error is: the author's.
    #[must_use]
    pub fn domain(&self) -> ErrorDomain {
        ErrorDomain::User
    }

    /// Whether the same call may succeed if retried: never.
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        false
    }
}

/// Checks a definition and compiles it into a plan; its expressions may read the fields of
/// its lookups.
///
/// # Errors
/// The first mistake found, naming its field: a bad name or source, a bad lookup, a window
/// out of bounds, an expression that does not compile, a filter that is not a condition, a
/// key without a column name, an unknown or badly called aggregate, a bad or duplicate
/// column name, or a duration out of bounds.
pub fn plan(definition: &Definition) -> Result<PipelineSpec, PlanError> {
    let d = definition;
    StreamName::new(d.name.clone()).map_err(|e| PlanError::new("name", e.to_string()))?;
    let sources = check_sources(&d.sources)?;
    let lookups = plan_lookups(&d.lookups)?;
    let scope = &Scope {
        lookups: lookups.iter().map(|l| l.name.clone()).collect(),
    };
    check_window(&d.window).map_err(|(part, message)| PlanError::new(part, message))?;
    check_durations(d)?;
    let filter = d
        .filter
        .as_deref()
        .map(|text| compile_filter(text, scope))
        .transpose()
        .map_err(|e| PlanError::new("filter", e.to_string()))?;

    let mut columns = Columns::default();
    let keys = match &d.key {
        None => vec![compile_key(&KeyDefinition::from("key"), true, scope)],
        Some(keys) => keys
            .iter()
            .map(|key| compile_key(key, keys.len() == 1, scope))
            .collect(),
    };
    let keys = keys
        .into_iter()
        .enumerate()
        .map(|(i, key)| {
            let field = format!("key[{i}]");
            let key = key.map_err(|e| PlanError::new(&field, e.to_string()))?;
            columns.claim(&key.name, &field)?;
            Ok(key)
        })
        .collect::<Result<Vec<_>, PlanError>>()?;

    let default_count = [("count".to_owned(), "count(*)".to_owned())];
    let declared = d.aggregates.as_deref().unwrap_or(&default_count);
    if declared.is_empty() {
        return Err(PlanError::new(
            "aggregates",
            "a pipeline computes at least one aggregate, such as `count(*)`",
        ));
    }
    let mut aggregates = Vec::with_capacity(declared.len());
    for (name, call) in declared {
        let field = format!("aggregates.{name}");
        check_column_name(name, false).map_err(|e| PlanError::new(&field, e))?;
        columns.claim(name, &field)?;
        columns.claim(&format!("{name}_partial"), &field)?;
        let aggregate = compile_aggregate(name, call, scope)
            .map_err(|e| PlanError::new(&field, e.to_string()))?;
        aggregates.push(aggregate);
    }

    Ok(PipelineSpec {
        name: d.name.clone(),
        sources,
        lookups,
        filter,
        keys,
        window: d.window,
        aggregates,
        allowed_lateness: d.allowed_lateness,
        max_out_of_orderness: d.max_out_of_orderness,
        idle_timeout: d.idle_timeout,
        finalize_idle_after: d.finalize_idle_after,
        checkpoint_interval: d.checkpoint_interval,
    })
}

fn check_sources(sources: &[String]) -> Result<Vec<StreamName>, PlanError> {
    if sources.is_empty() {
        return Err(PlanError::new(
            "sources",
            "a pipeline reads at least one stream",
        ));
    }
    let mut names: Vec<StreamName> = Vec::with_capacity(sources.len());
    for (i, source) in sources.iter().enumerate() {
        let field = format!("sources[{i}]");
        let name =
            StreamName::new(source.clone()).map_err(|e| PlanError::new(&field, e.to_string()))?;
        if names.contains(&name) {
            return Err(PlanError::new(
                field,
                format!("stream `{name}` is listed twice"),
            ));
        }
        names.push(name);
    }
    Ok(names)
}

/// Checks the lookups and compiles their `on` expressions.
fn plan_lookups(lookups: &[LookupDefinition]) -> Result<Vec<LookupSpec>, PlanError> {
    let names: Vec<String> = lookups.iter().map(|l| l.name.clone()).collect();
    let mut specs: Vec<LookupSpec> = Vec::with_capacity(lookups.len());
    for (i, lookup) in lookups.iter().enumerate() {
        check_lookup_name(&lookup.name, &specs)
            .map_err(|message| PlanError::new(format!("lookups[{i}].name"), message))?;
        let field = |part: &str| format!("lookups.{}.{part}", lookup.name);
        let source = match (&lookup.file, &lookup.postgres) {
            (Some(path), None) => LookupSource::File {
                format: FileFormat::from_path(path).ok_or_else(|| {
                    PlanError::new(
                        field("file"),
                        format!(
                            "`{}`: a lookup file is CSV (`.csv`) or NDJSON (`.ndjson`, \
                             `.jsonl`), as its extension says",
                            path.display()
                        ),
                    )
                })?,
                path: path.clone(),
            },
            (None, Some(postgres)) => {
                check_table_name(&postgres.table)
                    .map_err(|message| PlanError::new(field("postgres.table"), message))?;
                LookupSource::Postgres {
                    url: postgres.url.clone(),
                    table: postgres.table.clone(),
                }
            }
            (Some(_), Some(_)) => {
                return Err(PlanError::new(
                    format!("lookups.{}", lookup.name),
                    "give `file` or `postgres`, not both",
                ));
            }
            (None, None) => {
                return Err(PlanError::new(
                    format!("lookups.{}", lookup.name),
                    "missing its table: `file = \"ads.csv\"` (or `.ndjson`) or `postgres = \
                     { url = \"postgres://...\", table = \"ads\" }`",
                ));
            }
        };
        if lookup.key.is_empty() {
            return Err(PlanError::new(
                field("key"),
                "must name the table's column holding the lookup key",
            ));
        }
        if !lookup.refresh.is_zero() && lookup.refresh < MIN_REFRESH {
            return Err(PlanError::new(
                field("refresh"),
                format!(
                    "must be \"0s\" (never) or at least 1s, not {:?}",
                    lookup.refresh
                ),
            ));
        }
        let on = compile_on(&lookup.on, &names)
            .map_err(|e| PlanError::new(field("on"), e.to_string()))?;
        specs.push(LookupSpec {
            name: lookup.name.clone(),
            on,
            key_column: lookup.key.clone(),
            refresh: lookup.refresh,
            source,
        });
    }
    Ok(specs)
}

/// Checks a lookup's name: an identifier, not one of the event's fields, not taken by an
/// earlier lookup (`earlier`); names compare as expressions read them, ignoring case.
fn check_lookup_name(name: &str, earlier: &[LookupSpec]) -> Result<(), String> {
    if !is_identifier(name) {
        return Err(format!(
            "lookup name `{name}` must be letters, digits and `_`, not starting with a digit"
        ));
    }
    if let Some(field) = EVENT_FIELDS.iter().find(|f| name.eq_ignore_ascii_case(f)) {
        return Err(format!(
            "`{name}` is a field of the event ({}); name the lookup otherwise",
            if *field == "payload" {
                "payload.*"
            } else {
                field
            }
        ));
    }
    if earlier.iter().any(|l| l.name.eq_ignore_ascii_case(name)) {
        return Err(format!("lookup `{name}` is declared twice"));
    }
    Ok(())
}

/// Compiles a lookup's `on`: it reads the event, not a lookup (of `lookups`).
fn compile_on(text: &str, lookups: &[String]) -> Result<Expr, ExprError> {
    Expr::compile(text, &Scope::default()).map_err(|error| {
        let scope = Scope {
            lookups: lookups.to_vec(),
        };
        if Expr::compile(text, &scope).is_ok() {
            ExprError {
                message: "`on` reads the event (id, stream, ts, key, payload.*), not a lookup"
                    .to_owned(),
                ..error
            }
        } else {
            error
        }
    })
}

/// Checks a PostgreSQL table name ([`lookup::is_table_name`]).
fn check_table_name(table: &str) -> Result<(), String> {
    if lookup::is_table_name(table) {
        Ok(())
    } else {
        Err(format!(
            "table `{table}` must be `name` or `schema.name`, each letters, digits and `_`, \
             not starting with a digit"
        ))
    }
}

/// Checks a window's bounds; the error names the part at fault (`window.size`...).
fn check_window(window: &WindowSpec) -> Result<(), (&'static str, String)> {
    let bounded = |part: &'static str, what: &str, ms: i64| {
        if (1..=MAX_WINDOW_MS).contains(&ms) {
            Ok(())
        } else {
            Err((
                part,
                format!(
                    "the window {what} must be between 1ms and 100 years, not {}",
                    show_ms(ms)
                ),
            ))
        }
    };
    match *window {
        WindowSpec::Tumbling { size_ms } => bounded("window.size", "size", size_ms),
        WindowSpec::Hopping { size_ms, slide_ms } => {
            bounded("window.size", "size", size_ms)?;
            if (1..=size_ms).contains(&slide_ms) {
                Ok(())
            } else {
                Err((
                    "window.slide",
                    format!(
                        "the slide must be more than 0 and at most the size ({}), not {}",
                        show_ms(size_ms),
                        show_ms(slide_ms)
                    ),
                ))
            }
        }
        WindowSpec::Session { gap_ms } => bounded("window.gap", "gap", gap_ms),
    }
}

fn check_durations(d: &Definition) -> Result<(), PlanError> {
    for (field, value) in [
        ("allowed_lateness", d.allowed_lateness),
        ("max_out_of_orderness", d.max_out_of_orderness),
    ] {
        if millis(value) > MAX_WINDOW_MS {
            return Err(PlanError::new(
                field,
                format!("must be at most 100 years, not {value:?}"),
            ));
        }
    }
    if d.idle_timeout < MIN_IDLE_TIMEOUT {
        return Err(PlanError::new(
            "idle_timeout",
            format!("must be at least 1s, not {:?}", d.idle_timeout),
        ));
    }
    if let Some(after) = d
        .finalize_idle_after
        .filter(|a| *a < MIN_FINALIZE_IDLE_AFTER)
    {
        return Err(PlanError::new(
            "finalize_idle_after",
            format!("must be at least 1s, not {after:?}"),
        ));
    }
    if d.checkpoint_interval.is_zero() {
        return Err(PlanError::new("checkpoint_interval", "must be more than 0"));
    }
    Ok(())
}

fn compile_filter(text: &str, scope: &Scope) -> Result<Expr, ExprError> {
    let filter = Expr::compile(text, scope)?;
    match filter.ty() {
        None | Some(ColumnType::Bool) => Ok(filter),
        Some(ty) => Err(error_at(
            start_of(text),
            format!(
                "the filter must be a condition (true or false), but `{}` is {}",
                filter.canonical(),
                type_name(ty)
            ),
        )),
    }
}

/// Compiles a key and names its column; `alone`: whether it is the only key (only a lone
/// event key may take the reserved name `key`).
fn compile_key(key: &KeyDefinition, alone: bool, scope: &Scope) -> Result<KeySpec, ExprError> {
    let expr = Expr::compile(&key.expr, scope)?;
    let at = start_of(&key.expr);
    let may_be_key = alone && expr.is_event_key();
    let name = match &key.column {
        Some(column) => {
            check_column_name(column, may_be_key).map_err(|e| error_at(at, e))?;
            column.clone()
        }
        None => {
            let name = expr.column_name().ok_or_else(|| {
                error_at(
                    at,
                    format!(
                        "`{}` needs a column name; write the pipeline in SQL to give it \
                         one, as in `SELECT {0} AS name ... GROUP BY {0}, ...`",
                        expr.canonical()
                    ),
                )
            })?;
            check_column_name(&name, may_be_key).map_err(|e| {
                error_at(
                    at,
                    format!(
                        "{e} (the column is named after the field `{}`; write the pipeline \
                         in SQL to name it otherwise, with `AS`)",
                        expr.canonical()
                    ),
                )
            })?;
            name
        }
    };
    let ty = if expr.is_event_key() {
        ColumnType::Text
    } else {
        expr.ty().unwrap_or(ColumnType::Text)
    };
    Ok(KeySpec { name, expr, ty })
}

/// Compiles an aggregate call (`sum(payload.amount)`, `count(*)`, `count(DISTINCT x)`,
/// `quantile(x, 0.95)`): the first argument is the expression aggregated, any further ones
/// are literal parameters of the function.
fn compile_aggregate(name: &str, call: &str, scope: &Scope) -> Result<AggregateSpec, ExprError> {
    let ast = expr::parse(call)?;
    let start = start_of(call);
    let SqlExpr::Function(function) = &ast else {
        return Err(error_at(
            known_or(ast.span().start, start),
            format!("`{ast}` is not an aggregate call such as `count(*)` or `sum(payload.amount)`"),
        ));
    };
    let at = known_or(function.name.span().start, start);
    let Some(lower) = aggregate_name(function) else {
        return Err(error_at(
            at,
            format!(
                "unknown aggregate function `{}` (known: {})",
                function.name,
                FUNCTIONS.join(", ")
            ),
        ));
    };
    if function.over.is_some()
        || function.filter.is_some()
        || !function.within_group.is_empty()
        || function.null_treatment.is_some()
        || function.uses_odbc_syntax
        || !matches!(function.parameters, FunctionArguments::None)
    {
        return Err(error_at(
            at,
            format!(
                "`{ast}`: only a plain call `{lower}(...)` is supported, with no OVER, \
                 FILTER, WITHIN GROUP or NULLS clause"
            ),
        ));
    }
    let FunctionArguments::List(list) = &function.args else {
        return Err(error_at(
            at,
            format!("`{lower}` needs its argument in parentheses: `{lower}(payload.amount)`"),
        ));
    };
    if !list.clauses.is_empty() {
        return Err(error_at(
            at,
            format!("`{ast}`: clauses such as ORDER BY or LIMIT in a call are not supported"),
        ));
    }
    let Some((first, parameters)) = list.args.split_first() else {
        return Err(error_at(
            at,
            format!("`{lower}()` needs an argument, as in `{lower}(payload.amount)`"),
        ));
    };
    let (star, argument) = match first {
        FunctionArg::Unnamed(FunctionArgExpr::Wildcard) => (true, None),
        FunctionArg::Unnamed(FunctionArgExpr::Expr(argument)) => (false, Some(argument)),
        other => {
            return Err(error_at(
                at,
                format!("`{other}` is not supported as an argument: give an expression or `*`"),
            ));
        }
    };
    let params = parameters
        .iter()
        .map(|p| parameter(p, at))
        .collect::<Result<Vec<_>, _>>()?;
    let resolved = match list.duplicate_treatment {
        Some(DuplicateTreatment::Distinct) if !star && lower == "count" => "count_distinct",
        Some(DuplicateTreatment::Distinct) if !star && lower == "count_distinct" => lower,
        Some(DuplicateTreatment::Distinct) => {
            return Err(error_at(
                at,
                format!(
                    "`{ast}`: DISTINCT is only supported as `count(DISTINCT x)` (which is \
                     `count_distinct(x)`)"
                ),
            ));
        }
        Some(DuplicateTreatment::All) | None => lower,
    };
    let function =
        aggregate::function(resolved, star, &params).map_err(|e| error_at(at, e.to_string()))?;
    let argument = argument
        .map(|argument| Expr::from_ast(argument, call, scope))
        .transpose()?;
    Ok(AggregateSpec {
        name: name.to_owned(),
        function,
        argument,
    })
}

/// The lower-case name of a call to a known aggregate function.
fn aggregate_name(function: &Function) -> Option<&'static str> {
    let [ObjectNamePart::Identifier(name)] = function.name.0.as_slice() else {
        return None;
    };
    if name.quote_style.is_some() {
        return None;
    }
    FUNCTIONS
        .iter()
        .copied()
        .find(|known| name.value.eq_ignore_ascii_case(known))
}

/// A literal parameter of an aggregate call (`quantile`'s `q`).
fn parameter(arg: &FunctionArg, fallback: Location) -> Result<Value<'static>, ExprError> {
    let not_literal = |shown: &dyn std::fmt::Display, at: Location| {
        error_at(
            at,
            format!(
                "`{shown}`: a parameter must be a literal constant, as the 0.95 of \
                 `quantile(payload.amount, 0.95)`"
            ),
        )
    };
    let FunctionArg::Unnamed(FunctionArgExpr::Expr(expr)) = arg else {
        return Err(not_literal(arg, fallback));
    };
    let at = known_or(expr.span().start, fallback);
    let (negative, literal) = match expr {
        SqlExpr::UnaryOp {
            op: UnaryOperator::Minus,
            expr: inner,
        } => (true, inner.as_ref()),
        other => (false, other),
    };
    let SqlExpr::Value(literal) = literal else {
        return Err(not_literal(expr, at));
    };
    match (&literal.value, negative) {
        (SqlValue::Number(digits, _), _) => {
            let text = if negative {
                format!("-{digits}")
            } else {
                digits.clone()
            };
            if let Ok(i) = text.parse::<i64>() {
                Ok(Value::Int(i))
            } else {
                match text.parse::<f64>() {
                    Ok(f) if f.is_finite() => Ok(Value::Float(f)),
                    _ => Err(error_at(at, format!("`{text}` is not a number that fits"))),
                }
            }
        }
        (SqlValue::SingleQuotedString(s), false) => Ok(Value::Str(s.clone().into())),
        (SqlValue::Boolean(b), false) => Ok(Value::Bool(*b)),
        (SqlValue::Null, false) => Ok(Value::Null),
        _ => Err(not_literal(expr, at)),
    }
}

/// Checks a column name: `[a-z_][a-z0-9_]*`, at most [`MAX_COLUMN_NAME_LEN`] bytes, none
/// of [`RESERVED_COLUMNS`] but `key` when `may_be_key`.
fn check_column_name(name: &str, may_be_key: bool) -> Result<(), String> {
    let valid = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !name.starts_with(|c: char| c.is_ascii_digit());
    if name.is_empty() {
        Err("a column name must not be empty".to_owned())
    } else if !valid {
        Err(format!(
            "column name `{name}` must be lower-case letters, digits and `_`, not starting \
             with a digit"
        ))
    } else if name.len() > MAX_COLUMN_NAME_LEN {
        Err(format!(
            "column name `{name}` is longer than {MAX_COLUMN_NAME_LEN} bytes"
        ))
    } else if RESERVED_COLUMNS.contains(&name) && !(may_be_key && name == "key") {
        Err(format!(
            "`{name}` is a reserved column name (reserved: {}; `key` only for a pipeline \
             keyed by the event's key alone)",
            RESERVED_COLUMNS.join(", ")
        ))
    } else {
        Ok(())
    }
}

/// The result columns claimed so far, with the field that claimed each.
#[derive(Debug, Default)]
struct Columns(HashMap<String, String>);

impl Columns {
    fn claim(&mut self, column: &str, field: &str) -> Result<(), PlanError> {
        if let Some(owner) = self.0.get(column) {
            let message = if owner == field {
                format!("column `{column}` is declared twice")
            } else {
                format!("column `{column}` is already taken by {owner}")
            };
            return Err(PlanError::new(field, message));
        }
        self.0.insert(column.to_owned(), field.to_owned());
        Ok(())
    }
}

/// Parses a pipeline's SQL statement into its parts (see the module docs).
///
/// # Errors
/// A [`PlanError`] on field `sql`, with the position in the statement: a syntax error, a
/// statement of another form (joins, subqueries, `HAVING`, `ORDER BY`, `LIMIT`,
/// `DISTINCT`, several statements...), a `GROUP BY` without exactly one window function,
/// a bad interval or window, a `SELECT` item that is neither a `GROUP BY` key nor an
/// aggregate call, an aggregate without `AS`, or a bad or duplicate column name.
pub fn parse_sql(sql: &str) -> Result<SqlQuery, PlanError> {
    Statement::new(sql)
        .and_then(Statement::query)
        .map_err(|e| PlanError::new("sql", e.to_string()))
}

static DIALECT: GenericDialect = GenericDialect {};

/// Keywords that start or end a clause: never a name, though sqlparser's generic dialect
/// would read some as one.
const CLAUSE_KEYWORDS: &[Keyword] = &[
    Keyword::SELECT,
    Keyword::FROM,
    Keyword::WHERE,
    Keyword::GROUP,
    Keyword::BY,
    Keyword::HAVING,
    Keyword::ORDER,
    Keyword::LIMIT,
    Keyword::OFFSET,
    Keyword::FETCH,
    Keyword::UNION,
    Keyword::EXCEPT,
    Keyword::INTERSECT,
    Keyword::WINDOW,
    Keyword::QUALIFY,
    Keyword::AS,
];

/// A statement being read, clause by clause.
struct Statement<'a> {
    sql: &'a str,
    /// The parser's tokens, for the extent of each part.
    tokens: Vec<TokenWithSpan>,
    parser: Parser<'a>,
}

/// An expression of the statement: its syntax tree, and its text placed at its position.
struct Piece {
    ast: SqlExpr,
    text: String,
    start: Location,
    canonical: String,
}

/// A `SELECT` item.
struct Item {
    piece: Piece,
    alias: Option<Ident>,
}

impl<'a> Statement<'a> {
    fn new(sql: &'a str) -> Result<Self, ExprError> {
        let tokens = Tokenizer::new(&DIALECT, sql)
            .tokenize_with_location()
            .map_err(|e| error_at(e.location, format!("syntax error: {}", e.message)))?;
        let too_many = tokens
            .iter()
            .filter(|t| !matches!(t.token, Token::Whitespace(_)))
            .nth(MAX_STATEMENT_TOKENS);
        if let Some(token) = too_many {
            return Err(error_at(
                token.span.start,
                format!("the statement is too long (at most {MAX_STATEMENT_TOKENS} tokens)"),
            ));
        }
        let parser = Parser::new(&DIALECT).with_tokens_with_locations(tokens.clone());
        Ok(Self {
            sql,
            tokens,
            parser,
        })
    }

    fn query(mut self) -> Result<SqlQuery, ExprError> {
        self.select()?;
        let mut items = vec![self.item()?];
        while self.parser.consume_token(&Token::Comma) {
            items.push(self.item()?);
        }
        let source = self.from()?;
        self.refuse_clauses()?;
        let filter = if self.parser.parse_keyword(Keyword::WHERE) {
            Some(self.piece()?)
        } else {
            None
        };
        self.refuse_clauses()?;
        let group_by = self.group_by(filter.is_some())?;
        self.end()?;
        assemble(source, filter, &group_by, items)
    }

    /// `SELECT`, not `SELECT DISTINCT`.
    fn select(&mut self) -> Result<(), ExprError> {
        let next = self.parser.peek_token();
        match &next.token {
            Token::Word(w) if w.keyword == Keyword::SELECT => {
                self.parser.next_token();
            }
            Token::Word(w) if w.keyword == Keyword::WITH => {
                return Err(self.error(&next, "WITH (a common table expression) is not supported"));
            }
            Token::EOF => {
                return Err(self.error(
                    &next,
                    "the statement is empty: write SELECT ... FROM <stream> GROUP BY ...",
                ));
            }
            other => {
                return Err(self.error(
                    &next,
                    format!(
                        "expected SELECT, found `{other}`: a pipeline is one SELECT ... FROM \
                         <stream> GROUP BY ... statement"
                    ),
                ));
            }
        }
        let next = self.parser.peek_token();
        if self.parser.parse_keyword(Keyword::DISTINCT) {
            return Err(self.error(
                &next,
                "SELECT DISTINCT is not supported: GROUP BY already gives one row per window \
                 and key",
            ));
        }
        let _ = self.parser.parse_keyword(Keyword::ALL);
        Ok(())
    }

    /// A `SELECT` item: an expression, with an optional name (`AS` may be left out).
    fn item(&mut self) -> Result<Item, ExprError> {
        let next = self.parser.peek_token();
        if next.token == Token::Mul {
            return Err(self.error(
                &next,
                "SELECT * is not supported: select the keys and aggregates, as in \
                 `SELECT payload.country AS country, count(*) AS orders`",
            ));
        }
        let piece = self.piece()?;
        let alias = match self.parser.peek_token().token {
            Token::Word(w) if w.keyword == Keyword::AS => {
                self.parser.next_token();
                Some(self.ident()?)
            }
            Token::Word(w) if w.keyword == Keyword::NoKeyword || w.quote_style.is_some() => {
                Some(self.ident()?)
            }
            _ => None,
        };
        Ok(Item { piece, alias })
    }

    /// `FROM <stream>`: one stream, no join, subquery or alias.
    fn from(&mut self) -> Result<String, ExprError> {
        let next = self.parser.peek_token();
        if !self.parser.parse_keyword(Keyword::FROM) {
            return Err(self.error(
                &next,
                format!(
                    "expected `,` or FROM, found `{}` (a column is named with `AS name`)",
                    next.token
                ),
            ));
        }
        let next = self.parser.peek_token();
        if next.token == Token::LParen {
            return Err(self.error(&next, "subqueries are not supported: FROM names one stream"));
        }
        self.not_a_clause("a stream name")?;
        let stream = self.ident()?;
        StreamName::new(stream.value.clone())
            .map_err(|e| error_at(self.start(stream.span.start), e.to_string()))?;
        let next = self.parser.peek_token();
        let join = "joins are not supported: FROM names one stream (a TOML pipeline may read \
                    several, listed in `sources`)";
        match &next.token {
            Token::Comma => Err(self.error(&next, join)),
            Token::Period => Err(self.error(&next, "FROM names a stream, not `schema.table`")),
            Token::Word(w)
                if matches!(
                    w.keyword,
                    Keyword::JOIN
                        | Keyword::INNER
                        | Keyword::LEFT
                        | Keyword::RIGHT
                        | Keyword::FULL
                        | Keyword::CROSS
                        | Keyword::NATURAL
                        | Keyword::OUTER
                        | Keyword::LATERAL
                ) =>
            {
                Err(self.error(&next, join))
            }
            Token::Word(w) if w.keyword == Keyword::AS => {
                Err(self.error(&next, "an alias for the stream is not supported"))
            }
            _ => Ok(stream.value),
        }
    }

    /// `GROUP BY <expr>, ...`; `after_where`: whether a `WHERE` clause came before.
    fn group_by(&mut self, after_where: bool) -> Result<Vec<Piece>, ExprError> {
        let next = self.parser.peek_token();
        if !self.parser.parse_keywords(&[Keyword::GROUP, Keyword::BY]) {
            let message = if next.token == Token::EOF || next.token == Token::SemiColon {
                "GROUP BY with a window is required, as in `GROUP BY tumble(ts, INTERVAL '1' \
                 MINUTE)`"
                    .to_owned()
            } else if after_where {
                format!("expected GROUP BY, found `{}`", next.token)
            } else {
                format!("expected WHERE or GROUP BY, found `{}`", next.token)
            };
            return Err(self.error(&next, message));
        }
        let mut pieces = vec![self.piece()?];
        while self.parser.consume_token(&Token::Comma) {
            pieces.push(self.piece()?);
        }
        Ok(pieces)
    }

    /// The end: after an optional `;`, nothing.
    fn end(&mut self) -> Result<(), ExprError> {
        self.refuse_clauses()?;
        let semicolon = self.parser.consume_token(&Token::SemiColon);
        let next = self.parser.peek_token();
        match next.token {
            Token::EOF => Ok(()),
            _ if semicolon => Err(self.error(&next, "a pipeline is one statement, not several")),
            ref other => Err(self.error(&next, format!("unexpected `{other}` after GROUP BY"))),
        }
    }

    /// Refuses the clauses a pipeline does not have, if one comes next.
    fn refuse_clauses(&self) -> Result<(), ExprError> {
        let next = self.parser.peek_token();
        let Token::Word(word) = &next.token else {
            return Ok(());
        };
        let message = match word.keyword {
            Keyword::HAVING => "HAVING is not supported: filter the results when querying them",
            Keyword::ORDER => {
                "ORDER BY is not supported: results are kept per window and key, and ordered \
                 when queried"
            }
            Keyword::LIMIT | Keyword::OFFSET | Keyword::FETCH => {
                "LIMIT, OFFSET and FETCH are not supported: a pipeline keeps every result row"
            }
            Keyword::UNION | Keyword::EXCEPT | Keyword::INTERSECT | Keyword::MINUS => {
                "UNION, EXCEPT and INTERSECT are not supported: a pipeline is one SELECT"
            }
            Keyword::WINDOW | Keyword::QUALIFY => {
                "WINDOW and QUALIFY are not supported: the window is a function in GROUP BY"
            }
            _ => return Ok(()),
        };
        Err(self.error(&next, message))
    }

    /// An expression, with its text as written, placed at its position.
    fn piece(&mut self) -> Result<Piece, ExprError> {
        let first = self.not_a_clause("an expression")?;
        let ast = self
            .parser
            .parse_expr()
            .map_err(|e| expr::syntax_error(&e, self.start(self.parser.peek_token().span.start)))?;
        let start = first.span.start;
        let end = self
            .tokens
            .iter()
            .take(self.parser.get_current_index() + 1)
            .rev()
            .find(|t| !matches!(t.token, Token::Whitespace(_)))
            .map_or(start, |t| t.span.end);
        let subquery = self.tokens.iter().find(|t| {
            t.span.start >= start
                && t.span.end <= end
                && matches!(&t.token, Token::Word(w) if w.keyword == Keyword::SELECT)
        });
        if let Some(select) = subquery {
            return Err(self.error(select, "subqueries are not supported"));
        }
        let padding = usize::try_from(start.line.saturating_sub(1)).unwrap_or(0);
        let indent = usize::try_from(start.column.saturating_sub(1)).unwrap_or(0);
        let text = format!(
            "{}{}{}",
            "\n".repeat(padding),
            " ".repeat(indent),
            &self.sql[byte_offset(self.sql, start)..byte_offset(self.sql, end)]
        );
        Ok(Piece {
            canonical: ast.to_string(),
            ast,
            text,
            start,
        })
    }

    /// The next token, unless it is a keyword that starts or ends a clause, which the
    /// parser would otherwise take for a name where `what` is missing.
    fn not_a_clause(&self, what: &str) -> Result<TokenWithSpan, ExprError> {
        let next = self.parser.peek_token();
        match &next.token {
            Token::Word(w) if CLAUSE_KEYWORDS.contains(&w.keyword) => {
                Err(self.error(&next, format!("expected {what}, found `{}`", next.token)))
            }
            _ => Ok(next),
        }
    }

    fn ident(&mut self) -> Result<Ident, ExprError> {
        let fallback = self.start(self.parser.peek_token().span.start);
        self.parser
            .parse_identifier()
            .map_err(|e| expr::syntax_error(&e, fallback))
    }

    /// `at`, or the end of the statement for the tokens that have no position (its end).
    fn start(&self, at: Location) -> Location {
        known_or(at, end_of_text(self.sql))
    }

    fn error(&self, token: &TokenWithSpan, message: impl Into<String>) -> ExprError {
        error_at(self.start(token.span.start), message)
    }
}

/// Puts the statement's parts together: the window and keys of `GROUP BY`, and what each
/// `SELECT` item is.
fn assemble(
    source: String,
    filter: Option<Piece>,
    group_by: &[Piece],
    items: Vec<Item>,
) -> Result<SqlQuery, ExprError> {
    let mut window: Option<(WindowSpec, &Piece)> = None;
    let mut keys: Vec<&Piece> = Vec::new();
    for piece in group_by {
        let kind = match &piece.ast {
            SqlExpr::Function(function) => window_kind(function).map(|kind| (kind, function)),
            _ => None,
        };
        let Some((kind, function)) = kind else {
            if keys.iter().any(|k| k.canonical == piece.canonical) {
                return Err(error_at(
                    piece.start,
                    format!("`{}` is in GROUP BY twice", piece.canonical),
                ));
            }
            keys.push(piece);
            continue;
        };
        if window.is_some() {
            return Err(error_at(
                piece.start,
                "GROUP BY takes one window function, not several",
            ));
        }
        window = Some((window_spec(kind, function, piece.start)?, piece));
    }
    let Some((window, window_piece)) = window else {
        return Err(error_at(
            group_by[0].start,
            "GROUP BY needs a window function: tumble(ts, <size>), hop(ts, <slide>, <size>) \
             or session(ts, <gap>), as in `GROUP BY payload.country, tumble(ts, INTERVAL '1' \
             MINUTE)`",
        ));
    };

    let mut key_columns: Vec<Option<Option<String>>> = vec![None; keys.len()];
    let mut aggregates = Vec::new();
    let mut names: Vec<String> = Vec::new();
    for item in items {
        let piece = &item.piece;
        if let Some(alias) = &item.alias {
            let at = known_or(alias.span.start, piece.start);
            // `key` is checked by the plan, which knows whether the key is the event's.
            check_column_name(&alias.value, true).map_err(|e| error_at(at, e))?;
            if names.contains(&alias.value) {
                return Err(error_at(
                    at,
                    format!("column `{}` is named twice", alias.value),
                ));
            }
            names.push(alias.value.clone());
        }
        let alias = item.alias.map(|a| a.value);
        if let Some(i) = keys.iter().position(|k| k.canonical == piece.canonical) {
            if key_columns[i].is_some() {
                return Err(error_at(
                    piece.start,
                    format!("`{}` is selected twice", piece.canonical),
                ));
            }
            key_columns[i] = Some(alias);
        } else if is_window_bound(&piece.ast) {
            if let Some(alias) = alias {
                return Err(error_at(
                    piece.start,
                    format!(
                        "`{}` is always a column, under its own name; remove `AS {alias}`",
                        piece.canonical
                    ),
                ));
            }
        } else if piece.canonical == window_piece.canonical {
            return Err(error_at(
                piece.start,
                "select window_start and window_end rather than the window function",
            ));
        } else if matches!(&piece.ast, SqlExpr::Function(f) if aggregate_name(f).is_some()) {
            let Some(alias) = alias else {
                return Err(error_at(
                    piece.start,
                    format!(
                        "an aggregate needs a column name: `{} AS name`",
                        piece.canonical
                    ),
                ));
            };
            aggregates.push((alias, piece.text.clone()));
        } else {
            return Err(error_at(
                piece.start,
                format!(
                    "`{}` is neither a GROUP BY key nor an aggregate (the aggregates are {})",
                    piece.canonical,
                    FUNCTIONS.join(", ")
                ),
            ));
        }
    }
    let keys = keys
        .iter()
        .zip(key_columns)
        .map(|(piece, column)| KeyDefinition {
            column: column.flatten(),
            expr: piece.text.clone(),
        })
        .collect();
    Ok(SqlQuery {
        source,
        filter: filter.map(|f| f.text),
        keys,
        window,
        aggregates,
    })
}

/// The window functions of `GROUP BY`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WindowKind {
    Tumble,
    Hop,
    Session,
}

fn window_kind(function: &Function) -> Option<WindowKind> {
    let [ObjectNamePart::Identifier(name)] = function.name.0.as_slice() else {
        return None;
    };
    if name.quote_style.is_some() {
        return None;
    }
    match name.value.to_ascii_lowercase().as_str() {
        "tumble" => Some(WindowKind::Tumble),
        "hop" => Some(WindowKind::Hop),
        "session" => Some(WindowKind::Session),
        _ => None,
    }
}

/// Whether an expression is `window_start` or `window_end`.
fn is_window_bound(ast: &SqlExpr) -> bool {
    matches!(ast, SqlExpr::Identifier(id)
        if id.quote_style.is_none()
            && (id.value.eq_ignore_ascii_case("window_start")
                || id.value.eq_ignore_ascii_case("window_end")))
}

/// The window of `tumble(ts, size)`, `hop(ts, slide, size)` or `session(ts, gap)`.
fn window_spec(
    kind: WindowKind,
    function: &Function,
    fallback: Location,
) -> Result<WindowSpec, ExprError> {
    let at = known_or(function.name.span().start, fallback);
    let usage = match kind {
        WindowKind::Tumble => "tumble(ts, INTERVAL '1' MINUTE)",
        WindowKind::Hop => {
            "hop(ts, INTERVAL '1' MINUTE, INTERVAL '5' MINUTE) (the slide, then the size)"
        }
        WindowKind::Session => "session(ts, INTERVAL '30' SECOND)",
    };
    let usage_error = || error_at(at, format!("expected a window such as `{usage}`"));
    let FunctionArguments::List(list) = &function.args else {
        return Err(usage_error());
    };
    if list.duplicate_treatment.is_some()
        || !list.clauses.is_empty()
        || function.over.is_some()
        || function.filter.is_some()
        || !function.within_group.is_empty()
        || !matches!(function.parameters, FunctionArguments::None)
    {
        return Err(usage_error());
    }
    let args = list
        .args
        .iter()
        .map(|arg| match arg {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Ok(e),
            _ => Err(usage_error()),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let expected = if kind == WindowKind::Hop { 3 } else { 2 };
    if args.len() != expected {
        return Err(error_at(
            at,
            format!(
                "expected {expected} arguments, not {}, as in `{usage}`",
                args.len()
            ),
        ));
    }
    let is_ts = matches!(args[0], SqlExpr::Identifier(id)
        if id.quote_style.is_none() && id.value.eq_ignore_ascii_case("ts"));
    if !is_ts {
        return Err(error_at(
            known_or(args[0].span().start, at),
            format!(
                "the first argument must be `ts`, the event time, as in `{usage}`, not `{}`",
                args[0]
            ),
        ));
    }
    let spec = match kind {
        WindowKind::Tumble => WindowSpec::Tumbling {
            size_ms: interval_ms(args[1], at)?,
        },
        WindowKind::Hop => WindowSpec::Hopping {
            slide_ms: interval_ms(args[1], at)?,
            size_ms: interval_ms(args[2], at)?,
        },
        WindowKind::Session => WindowSpec::Session {
            gap_ms: interval_ms(args[1], at)?,
        },
    };
    check_window(&spec).map_err(|(_, message)| error_at(at, message))?;
    Ok(spec)
}

/// An interval's length in milliseconds: `INTERVAL '5' MINUTE` or `INTERVAL '5 minutes'`.
fn interval_ms(expr: &SqlExpr, fallback: Location) -> Result<i64, ExprError> {
    let at = known_or(expr.span().start, fallback);
    let expected = || {
        error_at(
            at,
            format!(
                "expected an interval such as INTERVAL '1' MINUTE or INTERVAL '90 seconds', \
                 not `{expr}`"
            ),
        )
    };
    let SqlExpr::Interval(interval) = expr else {
        return Err(expected());
    };
    if interval.last_field.is_some()
        || interval.leading_precision.is_some()
        || interval.fractional_seconds_precision.is_some()
    {
        return Err(error_at(
            at,
            format!("`{expr}`: interval ranges and precisions are not supported"),
        ));
    }
    let text = match interval.value.as_ref() {
        SqlExpr::Value(v) => match &v.value {
            SqlValue::SingleQuotedString(s) => s.clone(),
            SqlValue::Number(n, _) => n.clone(),
            _ => return Err(expected()),
        },
        _ => return Err(expected()),
    };
    let ms = match &interval.leading_field {
        Some(field) => {
            use sqlparser::ast::DateTimeField as F;
            let unit = match field {
                F::Millisecond | F::Milliseconds => 1,
                F::Second | F::Seconds => 1_000,
                F::Minute | F::Minutes => 60_000,
                F::Hour | F::Hours => 3_600_000,
                F::Day | F::Days => 86_400_000,
                other => {
                    return Err(error_at(
                        at,
                        format!(
                            "`{other}` intervals are not supported: use MILLISECOND, SECOND, \
                             MINUTE, HOUR or DAY"
                        ),
                    ));
                }
            };
            text.trim()
                .parse::<i64>()
                .ok()
                .and_then(|n| n.checked_mul(unit))
                .ok_or_else(|| {
                    error_at(
                        at,
                        format!("`{expr}`: '{text}' is not a whole number that fits"),
                    )
                })?
        }
        None => duration_text_ms(&text).ok_or_else(|| {
            error_at(
                at,
                format!(
                    "`{expr}`: expected a length such as '5 minutes', '90 seconds' or '1 hour'"
                ),
            )
        })?,
    };
    Ok(ms)
}

/// `5 minutes`, `90 seconds`, `1 hour 30 minutes`, `250ms` in milliseconds.
fn duration_text_ms(text: &str) -> Option<i64> {
    let mut rest = text.trim();
    if rest.is_empty() {
        return None;
    }
    let mut total: i64 = 0;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let n: i64 = rest[..digits].parse().ok()?;
        rest = rest[digits..].trim_start();
        let letters = rest
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(rest.len());
        let unit = match rest[..letters].to_ascii_lowercase().as_str() {
            "ms" | "millisecond" | "milliseconds" => 1,
            "s" | "sec" | "secs" | "second" | "seconds" => 1_000,
            "m" | "min" | "mins" | "minute" | "minutes" => 60_000,
            "h" | "hour" | "hours" => 3_600_000,
            "d" | "day" | "days" => 86_400_000,
            _ => return None,
        };
        total = total.checked_add(n.checked_mul(unit)?)?;
        rest = rest[letters..].trim_start();
    }
    Some(total)
}

fn error_at(at: Location, message: impl Into<String>) -> ExprError {
    ExprError::at(at, message)
}

/// `at`, unless it is the empty location sqlparser gives what it has no position for.
fn known_or(at: Location, fallback: Location) -> Location {
    if at.line == 0 { fallback } else { at }
}

/// The position of the first character of `text` that is not white space.
fn start_of(text: &str) -> Location {
    let mut at = Location::new(1, 1);
    for c in text.chars().take_while(|c| c.is_whitespace()) {
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

/// The byte offset in `text` of position `at` (the length of `text` past its end).
fn byte_offset(text: &str, at: Location) -> usize {
    let mut here = Location::new(1, 1);
    for (offset, c) in text.char_indices() {
        if here >= at {
            return offset;
        }
        advance(&mut here, c);
    }
    text.len()
}

/// Moves `at` past `c`, counting lines and characters as sqlparser's tokenizer does.
fn advance(at: &mut Location, c: char) {
    if c == '\n' {
        at.line += 1;
        at.column = 1;
    } else {
        at.column += 1;
    }
}

/// A column type for people.
fn type_name(ty: ColumnType) -> &'static str {
    match ty {
        ColumnType::Bool => "a boolean",
        ColumnType::Int => "an integer",
        ColumnType::Float => "a number",
        ColumnType::Text => "text",
    }
}

/// Milliseconds for people: `5m`, `90s`, `1500ms`.
fn show_ms(ms: i64) -> String {
    for (unit, name) in [
        (86_400_000, "d"),
        (3_600_000, "h"),
        (60_000, "m"),
        (1_000, "s"),
    ] {
        if ms != 0 && ms % unit == 0 {
            return format!("{}{name}", ms / unit);
        }
    }
    format!("{ms}ms")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A definition with today's defaults: the event key, `count(*)`.
    fn definition(window: WindowSpec) -> Definition {
        Definition {
            name: "p".to_owned(),
            sources: vec!["orders".to_owned()],
            lookups: Vec::new(),
            filter: None,
            key: None,
            window,
            aggregates: None,
            allowed_lateness: Duration::ZERO,
            max_out_of_orderness: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(30),
            finalize_idle_after: None,
            checkpoint_interval: Duration::from_secs(1),
        }
    }

    const MINUTE: WindowSpec = WindowSpec::Tumbling { size_ms: 60_000 };

    /// The issue's example.
    fn revenue_by_country() -> Definition {
        Definition {
            name: "revenue_by_country".to_owned(),
            filter: Some("payload.status = 'paid' AND payload.amount > 0".to_owned()),
            key: Some(vec![KeyDefinition::from("payload.country")]),
            aggregates: Some(
                [
                    ("orders", "count(*)"),
                    ("revenue", "sum(payload.amount)"),
                    ("avg_amount", "avg(payload.amount)"),
                    ("buyers", "count_distinct(payload.customer)"),
                    ("p95_amount", "quantile(payload.amount, 0.95)"),
                ]
                .map(|(name, call)| (name.to_owned(), call.to_owned()))
                .to_vec(),
            ),
            allowed_lateness: Duration::from_secs(600),
            ..definition(WindowSpec::Hopping {
                size_ms: 300_000,
                slide_ms: 60_000,
            })
        }
    }

    const REVENUE_SQL: &str = "SELECT payload.country AS country, count(*) AS orders, \
        sum(payload.amount) AS revenue, avg(payload.amount) AS avg_amount, \
        count_distinct(payload.customer) AS buyers, quantile(payload.amount, 0.95) AS p95_amount \
        FROM orders WHERE payload.status = 'paid' AND payload.amount > 0 \
        GROUP BY payload.country, hop(ts, INTERVAL '1' MINUTE, INTERVAL '5' MINUTE)";

    /// The definition of a SQL statement, with the settings of `base`.
    fn from_sql(sql: &str, base: Definition) -> Result<Definition, PlanError> {
        let query = parse_sql(sql)?;
        Ok(Definition {
            sources: vec![query.source],
            filter: query.filter,
            key: Some(query.keys),
            window: query.window,
            aggregates: Some(query.aggregates),
            ..base
        })
    }

    fn plan_sql(sql: &str) -> Result<PipelineSpec, PlanError> {
        plan(&from_sql(sql, definition(MINUTE))?)
    }

    fn sql_error(sql: &str) -> String {
        plan_sql(sql).unwrap_err().to_string()
    }

    fn error(d: &Definition) -> String {
        plan(d).unwrap_err().to_string()
    }

    fn with_aggregate(call: &str) -> Definition {
        Definition {
            aggregates: Some(vec![("x".to_owned(), call.to_owned())]),
            ..definition(MINUTE)
        }
    }

    #[test]
    fn a_pipeline_declared_as_before_plans_to_the_counting_plan() {
        let d = definition(MINUTE);
        let spec = plan(&d).unwrap();
        let counting =
            PipelineSpec::counting("p", vec![StreamName::new("orders").unwrap()], MINUTE);
        assert_eq!(spec.definition(), counting.definition());
        assert_eq!(spec.fingerprint(), counting.fingerprint());
        assert_eq!(spec.schema(), counting.schema());
        assert!(spec.is_legacy_count() && spec.keyed_like_the_log());
        let sql = plan_sql("SELECT key, count(*) AS count FROM orders GROUP BY key, tumble(ts, INTERVAL '1' MINUTE)")
            .unwrap();
        assert_eq!(sql.fingerprint(), counting.fingerprint());
    }

    #[test]
    fn the_issues_example_plans() {
        let spec = plan(&revenue_by_country()).unwrap();
        assert_eq!(spec.keys.len(), 1);
        assert_eq!(spec.keys[0].name, "country");
        assert_eq!(spec.keys[0].ty, ColumnType::Text);
        assert!(spec.filter.is_some());
        let names: Vec<&str> = spec.aggregates.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(
            names,
            ["orders", "revenue", "avg_amount", "buyers", "p95_amount"]
        );
        let signatures: Vec<String> = spec
            .aggregates
            .iter()
            .map(|a| a.function.signature())
            .collect();
        assert_eq!(
            signatures,
            ["count(*)", "sum", "avg", "count_distinct", "quantile(0.95)"]
        );
        assert!(spec.aggregates[0].argument.is_none());
        assert_eq!(
            spec.aggregates[1].argument.as_ref().unwrap().canonical(),
            "payload.amount"
        );
        assert_eq!(spec.allowed_lateness, Duration::from_secs(600));
        assert!(!spec.is_legacy_count() && !spec.keyed_like_the_log());
    }

    #[test]
    fn the_sql_form_plans_to_the_same_fingerprint() {
        let toml = plan(&revenue_by_country()).unwrap();
        let d = from_sql(REVENUE_SQL, revenue_by_country()).unwrap();
        let sql = plan(&d).unwrap();
        assert_eq!(sql.definition(), toml.definition());
        assert_eq!(sql.fingerprint(), toml.fingerprint());
        assert_eq!(sql.schema(), toml.schema());
        // Layout does not matter: the canonical texts do.
        let spread = REVENUE_SQL
            .replace(", ", ",\n    ")
            .replace(" FROM", "\nFROM")
            .replace(" GROUP", "\n  GROUP");
        let d = from_sql(&spread, revenue_by_country()).unwrap();
        assert_eq!(plan(&d).unwrap().fingerprint(), toml.fingerprint());
    }

    #[test]
    fn sql_parts_are_the_statements_texts_in_place() {
        let query = parse_sql(
            "SELECT lower(payload.country) AS country, window_start, window_end,\n  sum(payload.amount) revenue\nFROM orders\nWHERE payload.amount > 0\nGROUP BY payload.region, lower(payload.country), tumble(ts, INTERVAL '5 minutes');",
        )
        .unwrap();
        assert_eq!(query.source, "orders");
        assert_eq!(
            query.filter.as_deref(),
            Some("\n\n\n      payload.amount > 0")
        );
        assert_eq!(query.window, WindowSpec::Tumbling { size_ms: 300_000 });
        let keys: Vec<(Option<&str>, &str)> = query
            .keys
            .iter()
            .map(|k| (k.column.as_deref(), k.expr.trim()))
            .collect();
        assert_eq!(
            keys,
            [
                (None, "payload.region"),
                (Some("country"), "lower(payload.country)")
            ]
        );
        assert_eq!(query.aggregates.len(), 1);
        assert_eq!(query.aggregates[0].0, "revenue");
        assert_eq!(query.aggregates[0].1.trim(), "sum(payload.amount)");
        // A key not selected is still a column, named after its field.
        let spec = plan_sql(
            "SELECT count(*) AS n FROM orders GROUP BY payload.region, session(ts, INTERVAL '30' SECOND)",
        )
        .unwrap();
        assert_eq!(spec.keys[0].name, "region");
        assert_eq!(spec.window, WindowSpec::Session { gap_ms: 30_000 });
    }

    #[test]
    fn sql_windows_and_intervals() {
        let window = |group: &str| {
            parse_sql(&format!("SELECT count(*) AS n FROM s GROUP BY {group}"))
                .map(|q| q.window)
                .map_err(|e| e.to_string())
        };
        assert_eq!(
            window("hop(ts, INTERVAL '1' MINUTE, INTERVAL '5' MINUTE)"),
            Ok(WindowSpec::Hopping {
                size_ms: 300_000,
                slide_ms: 60_000
            })
        );
        for (interval, ms) in [
            ("INTERVAL '250' MILLISECOND", 250),
            ("INTERVAL '90' SECOND", 90_000),
            ("INTERVAL 2 HOUR", 7_200_000),
            ("INTERVAL '1' DAY", 86_400_000),
            ("INTERVAL '90 seconds'", 90_000),
            ("INTERVAL '1 hour'", 3_600_000),
            ("INTERVAL '1 hour 30 minutes'", 5_400_000),
            ("INTERVAL '500ms'", 500),
        ] {
            assert_eq!(
                window(&format!("TUMBLE(ts, {interval})")),
                Ok(WindowSpec::Tumbling { size_ms: ms }),
                "{interval}"
            );
        }
        for (group, expected) in [
            (
                "tumble(ts, INTERVAL '0' SECOND)",
                "window size must be between 1ms and 100 years, not 0ms (at line 1, column 38)",
            ),
            (
                "tumble(ts, INTERVAL '101 days' ) , tumble(ts, INTERVAL '1' DAY)",
                "one window function",
            ),
            ("tumble(ts, INTERVAL '3' FORTNIGHT)", "syntax error"),
            (
                "tumble(ts, INTERVAL '3' YEAR)",
                "`YEAR` intervals are not supported",
            ),
            (
                "tumble(ts, INTERVAL '5 parsecs')",
                "expected a length such as '5 minutes'",
            ),
            (
                "tumble(ts, 5)",
                "expected an interval such as INTERVAL '1' MINUTE",
            ),
            (
                "tumble(event_time, INTERVAL '1' MINUTE)",
                "the first argument must be `ts`",
            ),
            ("tumble(ts)", "expected 2 arguments, not 1"),
            (
                "hop(ts, INTERVAL '5' MINUTE, INTERVAL '1' MINUTE)",
                "the slide must be more than 0 and at most the size (1m), not 5m",
            ),
            ("payload.country", "GROUP BY needs a window function"),
        ] {
            let err = window(group).unwrap_err();
            assert!(
                err.starts_with("sql: ") && err.contains(expected),
                "{group}: {err}"
            );
        }
    }

    #[test]
    fn sql_statements_of_another_form_are_refused_with_their_position() {
        for (sql, expected) in [
            ("", "the statement is empty"),
            (
                "WITH x AS (SELECT 1) SELECT count(*) AS n FROM x GROUP BY tumble(ts, INTERVAL '1' MINUTE)",
                "WITH (a common table expression) is not supported (at line 1, column 1)",
            ),
            ("UPDATE s SET a = 1", "expected SELECT, found `UPDATE`"),
            (
                "SELECT DISTINCT key FROM s GROUP BY key, tumble(ts, INTERVAL '1' MINUTE)",
                "SELECT DISTINCT is not supported: GROUP BY already gives one row per window and key (at line 1, column 8)",
            ),
            (
                "SELECT * FROM s GROUP BY tumble(ts, INTERVAL '1' MINUTE)",
                "SELECT * is not supported",
            ),
            (
                "SELECT count(*) AS n FROM s JOIN t ON s.key = t.key GROUP BY tumble(ts, INTERVAL '1' MINUTE)",
                "joins are not supported: FROM names one stream (a TOML pipeline may read several, listed in `sources`) (at line 1, column 29)",
            ),
            (
                "SELECT count(*) AS n FROM s, t GROUP BY tumble(ts, INTERVAL '1' MINUTE)",
                "joins are not supported",
            ),
            (
                "SELECT count(*) AS n FROM (SELECT * FROM s) GROUP BY tumble(ts, INTERVAL '1' MINUTE)",
                "subqueries are not supported: FROM names one stream (at line 1, column 27)",
            ),
            (
                "SELECT count(*) AS n FROM s WHERE key IN (SELECT key FROM t) GROUP BY tumble(ts, INTERVAL '1' MINUTE)",
                "subqueries are not supported (at line 1, column 43)",
            ),
            (
                "SELECT count(*) AS n FROM s GROUP BY tumble(ts, INTERVAL '1' MINUTE) HAVING count(*) > 1",
                "HAVING is not supported",
            ),
            (
                "SELECT count(*) AS n FROM s GROUP BY tumble(ts, INTERVAL '1' MINUTE) ORDER BY n",
                "ORDER BY is not supported",
            ),
            (
                "SELECT count(*) AS n FROM s GROUP BY tumble(ts, INTERVAL '1' MINUTE) LIMIT 10",
                "LIMIT, OFFSET and FETCH are not supported",
            ),
            (
                "SELECT count(*) AS n FROM s GROUP BY tumble(ts, INTERVAL '1' MINUTE) UNION SELECT count(*) AS n FROM t GROUP BY tumble(ts, INTERVAL '1' MINUTE)",
                "UNION, EXCEPT and INTERSECT are not supported",
            ),
            (
                "SELECT count(*) AS n FROM s GROUP BY tumble(ts, INTERVAL '1' MINUTE); SELECT 1",
                "a pipeline is one statement, not several (at line 1, column 71)",
            ),
            (
                "SELECT count(*) AS n FROM s",
                "GROUP BY with a window is required",
            ),
            (
                "SELECT count(*) AS n FROM s AS o GROUP BY tumble(ts, INTERVAL '1' MINUTE)",
                "an alias for the stream is not supported",
            ),
            (
                "SELECT count(*) AS n FROM s o GROUP BY tumble(ts, INTERVAL '1' MINUTE)",
                "expected WHERE or GROUP BY, found `o` (at line 1, column 29)",
            ),
            (
                "SELECT count(*) AS n FROM s WHERE key = 'a' GRUOP BY tumble(ts, INTERVAL '1' MINUTE)",
                "expected GROUP BY, found `GRUOP` (at line 1, column 45)",
            ),
            (
                "SELECT count(*) AS n FROM Orders GROUP BY tumble(ts, INTERVAL '1' MINUTE)",
                "invalid stream name \"Orders\": may only contain a-z, 0-9, '_' and '-' (at line 1, column 27)",
            ),
            (
                "SELECT count(*) n m FROM s GROUP BY tumble(ts, INTERVAL '1' MINUTE)",
                "expected `,` or FROM, found `m`",
            ),
            (
                "SELECT count(* AS n FROM s GROUP BY tumble(ts, INTERVAL '1' MINUTE)",
                "syntax error: Expected: ), found: AS (at line 1, column 16)",
            ),
            (
                "SELECT 'unterminated FROM s",
                "syntax error: Unterminated string literal (at line 1, column 8)",
            ),
            (
                "SELECT FROM s GROUP BY tumble(ts, INTERVAL '1' MINUTE)",
                "expected an expression, found `FROM` (at line 1, column 8)",
            ),
            (
                "SELECT count(*) AS n FROM s WHERE GROUP BY tumble(ts, INTERVAL '1' MINUTE)",
                "expected an expression, found `GROUP` (at line 1, column 35)",
            ),
            (
                "SELECT count(*) AS n FROM GROUP BY tumble(ts, INTERVAL '1' MINUTE)",
                "expected a stream name, found `GROUP` (at line 1, column 27)",
            ),
            (
                "SELECT count(*) AS n FROM s GROUP BY tumble(ts, INTERVAL '1' MINUTE) WHERE x",
                "unexpected `WHERE` after GROUP BY (at line 1, column 70)",
            ),
        ] {
            let err = parse_sql(sql).unwrap_err();
            assert_eq!(err.field, "sql");
            assert!(err.message.contains(expected), "{sql}: {err}");
        }
    }

    #[test]
    fn sql_select_items_are_keys_aggregates_or_window_bounds() {
        let group = "FROM s GROUP BY payload.page, tumble(ts, INTERVAL '1' MINUTE)";
        for (select, expected) in [
            (
                "payload.user AS u, count(*) AS n",
                "`payload.user` is neither a GROUP BY key nor an aggregate (the aggregates are count, sum, min, max, avg, count_distinct, quantile) (at line 1, column 8)",
            ),
            (
                "median(payload.x) AS m",
                "`median(payload.x)` is neither a GROUP BY key nor an aggregate",
            ),
            (
                "count(*)",
                "an aggregate needs a column name: `count(*) AS name` (at line 1, column 8)",
            ),
            (
                "window_start AS ws, count(*) AS n",
                "`window_start` is always a column, under its own name; remove `AS ws`",
            ),
            (
                "tumble(ts, INTERVAL '1' MINUTE), count(*) AS n",
                "select window_start and window_end rather than the window function",
            ),
            (
                "payload.page, payload.page AS p, count(*) AS n",
                "`payload.page` is selected twice (at line 1, column 22)",
            ),
            (
                "count(*) AS n, sum(payload.x) AS n",
                "column `n` is named twice (at line 1, column 41)",
            ),
            (
                "count(*) AS Total",
                "column name `Total` must be lower-case letters",
            ),
            (
                "count(*) AS window_end",
                "`window_end` is a reserved column name",
            ),
        ] {
            let err = sql_error(&format!("SELECT {select} {group}"));
            assert!(err.contains(expected), "{select}: {err}");
        }
        let spec = plan_sql(&format!(
            "SELECT window_start, payload.page AS page, window_end, count(*) AS n {group}"
        ))
        .unwrap();
        assert_eq!(spec.keys[0].name, "page");
        assert_eq!(spec.aggregates[0].name, "n");
    }

    #[test]
    fn errors_in_sql_expressions_point_into_the_statement() {
        let sql = "SELECT count(*) AS n\nFROM s\nWHERE payload.amount > 0 AND nope = 1\nGROUP BY tumble(ts, INTERVAL '1' MINUTE)";
        let err = sql_error(sql);
        assert!(err.starts_with("filter: unknown field `nope`"), "{err}");
        assert!(err.ends_with("(at line 3, column 30)"), "{err}");
        let sql = "SELECT count(*) AS n,\n       quantile(payload.amount, 1.5) AS p\nFROM s GROUP BY tumble(ts, INTERVAL '1' MINUTE)";
        assert_eq!(
            sql_error(sql),
            "aggregates.p: quantile's q must be between 0 and 1, not 1.5 (at line 2, column 8)"
        );
        let sql =
            "SELECT sum(payload.a + 'x') AS n FROM s GROUP BY tumble(ts, INTERVAL '1' MINUTE)";
        let err = sql_error(sql);
        assert!(
            err.starts_with("aggregates.n: type error") && err.ends_with("(at line 1, column 24)"),
            "{err}"
        );
    }

    #[test]
    fn aggregate_calls_are_checked() {
        let ok = |call: &str| {
            let spec = plan(&with_aggregate(call)).unwrap();
            let a = &spec.aggregates[0];
            (
                a.function.signature(),
                a.argument.as_ref().map(|e| e.canonical().to_owned()),
            )
        };
        assert_eq!(ok("count(*)"), ("count(*)".to_owned(), None));
        assert_eq!(
            ok("COUNT(payload.x)"),
            ("count".to_owned(), Some("payload.x".to_owned()))
        );
        assert_eq!(
            ok("count(DISTINCT payload.x)"),
            ok("count_distinct(payload.x)")
        );
        assert_eq!(ok("min(payload.x)").0, "min");
        assert_eq!(ok("max(payload.x * 2)").0, "max");
        assert_eq!(ok("quantile(payload.x, 1)").0, "quantile(1)");
        assert_eq!(ok("quantile(payload.x, -0.0)").0, "quantile(0)");
        for (call, expected) in [
            (
                "foo(payload.x)",
                "aggregates.x: unknown aggregate function `foo` (known: count, sum, min, max, avg, count_distinct, quantile) (at line 1, column 1)",
            ),
            (
                "  median(payload.x)",
                "unknown aggregate function `median` (known: count, sum, min, max, avg, count_distinct, quantile) (at line 1, column 3)",
            ),
            (
                "sum(*)",
                "aggregates.x: sum(*) is not an aggregate: only count takes * (at line 1, column 1)",
            ),
            ("sum()", "`sum()` needs an argument"),
            (
                "sum(payload.x, 2)",
                "sum takes one argument and no parameter, but was given 1 more",
            ),
            ("quantile(payload.x)", "quantile needs its q"),
            (
                "quantile(payload.x, 1.5)",
                "aggregates.x: quantile's q must be between 0 and 1, not 1.5 (at line 1, column 1)",
            ),
            (
                "quantile(payload.x, payload.q)",
                "`payload.q`: a parameter must be a literal constant",
            ),
            (
                "sum(DISTINCT payload.x)",
                "DISTINCT is only supported as `count(DISTINCT x)`",
            ),
            (
                "count(payload.x) OVER ()",
                "only a plain call `count(...)` is supported",
            ),
            ("payload.x", "`payload.x` is not an aggregate call"),
            ("sum(payload.x", "syntax error"),
            ("sum(nope)", "aggregates.x: unknown field `nope`"),
            ("sum(payload.x + 'a')", "(at line 1, column 17)"),
        ] {
            let err = error(&with_aggregate(call));
            assert!(err.contains(expected), "{call}: {err}");
        }
    }

    #[test]
    fn filters_are_conditions() {
        let filtered = |filter: &str| Definition {
            filter: Some(filter.to_owned()),
            ..definition(MINUTE)
        };
        assert!(plan(&filtered("payload.paid")).is_ok());
        let err = error(&filtered("lower(payload.status)"));
        assert!(
            err.starts_with("filter: the filter must be a condition (true or false), but `lower(payload.status)` is text")
                && err.ends_with("(at line 1, column 1)"),
            "{err}"
        );
        let err = error(&filtered("payload.amount > 0 AND foo = 1"));
        assert!(
            err.starts_with("filter: unknown field `foo`")
                && err.ends_with("(at line 1, column 24)"),
            "{err}"
        );
        let err = error(&filtered("payload.amount > 'x' + 1"));
        assert!(
            err.starts_with("filter: ") && err.contains("(at line 1, column"),
            "{err}"
        );
    }

    #[test]
    fn keys_are_named_and_typed() {
        let keyed = |keys: &[&str]| Definition {
            key: Some(keys.iter().map(|k| KeyDefinition::from(*k)).collect()),
            ..definition(MINUTE)
        };
        let err = error(&keyed(&["payload.a.country", "payload.n + 1"]));
        assert_eq!(
            err,
            "key[1]: `payload.n + 1` needs a column name; write the pipeline in SQL to give it \
             one, as in `SELECT payload.n + 1 AS name ... GROUP BY payload.n + 1, ...` (at \
             line 1, column 1)"
        );
        let err = error(&keyed(&[
            "payload.a.country",
            "  CAST(payload.n AS BIGINT)",
        ]));
        assert!(
            err.starts_with("key[1]: `CAST(payload.n AS BIGINT)` needs a column name"),
            "{err}"
        );
        assert!(err.ends_with("(at line 1, column 3)"), "{err}");
        let err = error(&keyed(&["payload.a.country", "nope"]));
        assert!(err.starts_with("key[1]: unknown field `nope`"), "{err}");
        // Typed by the expression's static type, text when unknown.
        let spec = plan(&keyed(&["CAST(payload.n AS BIGINT)"]));
        assert!(spec.is_err());
        let spec = plan_sql(
            "SELECT CAST(payload.n AS BIGINT) AS n, payload.a AS a, key AS k, count(*) AS c FROM s \
             GROUP BY CAST(payload.n AS BIGINT), payload.a, key, tumble(ts, INTERVAL '1' MINUTE)",
        )
        .unwrap();
        let columns: Vec<(&str, ColumnType)> =
            spec.keys.iter().map(|k| (k.name.as_str(), k.ty)).collect();
        assert_eq!(
            columns,
            [
                ("n", ColumnType::Int),
                ("a", ColumnType::Text),
                ("k", ColumnType::Text)
            ]
        );
        let spec = plan(&keyed(&["payload.a.country", "stream"])).unwrap();
        assert_eq!(spec.keys[0].name, "country");
        assert_eq!(spec.keys[1].name, "stream");
        assert!(!spec.is_legacy_count());
        // No key: one row per window.
        let spec = plan(&keyed(&[])).unwrap();
        assert!(spec.keys.is_empty());
        // `key` is only the event key's, alone.
        let err = error(&keyed(&["key", "payload.page"]));
        assert!(
            err.starts_with("key[0]: `key` is a reserved column name"),
            "{err}"
        );
        let err = error(&keyed(&["payload.key"]));
        assert!(
            err.starts_with("key[0]: `key` is a reserved column name") && err.contains("with `AS`"),
            "{err}"
        );
        let err = error(&keyed(&["payload.window_end"]));
        assert!(err.contains("reserved"), "{err}");
        let err = error(&keyed(&["payload.Country"]));
        assert!(err.contains("lower-case"), "{err}");
        let err = error(&keyed(&["payload.a.page", "payload.b.page"]));
        assert_eq!(err, "key[1]: column `page` is already taken by key[0]");
        let spec = plan(&keyed(&["key"])).unwrap();
        assert!(spec.is_legacy_count());
    }

    #[test]
    fn column_names_are_checked() {
        let named = |name: &str| Definition {
            aggregates: Some(vec![(name.to_owned(), "count(*)".to_owned())]),
            ..definition(MINUTE)
        };
        assert!(plan(&named("_n9")).is_ok());
        assert!(plan(&named(&"n".repeat(48))).is_ok());
        for (name, expected) in [
            ("", "must not be empty"),
            (
                "9lives",
                "lower-case letters, digits and `_`, not starting with a digit",
            ),
            ("a-b", "lower-case"),
            ("revision", "`revision` is a reserved column name"),
            ("key", "`key` is a reserved column name"),
        ] {
            let err = error(&named(name));
            assert!(
                err.starts_with(&format!("aggregates.{name}: ")) && err.contains(expected),
                "{name}: {err}"
            );
        }
        assert!(error(&named(&"n".repeat(49))).contains("longer than 48 bytes"));
        let none = Definition {
            aggregates: Some(vec![]),
            ..definition(MINUTE)
        };
        assert_eq!(
            error(&none),
            "aggregates: a pipeline computes at least one aggregate, such as `count(*)`"
        );
        // A key may not take the name of an aggregate's partial state.
        let d = Definition {
            key: Some(vec![KeyDefinition::from("payload.n_partial")]),
            ..named("n")
        };
        assert_eq!(
            error(&d),
            "aggregates.n: column `n_partial` is already taken by key[0]"
        );
        let d = Definition {
            key: Some(vec![KeyDefinition::from("payload.n")]),
            ..named("n")
        };
        assert_eq!(
            error(&d),
            "aggregates.n: column `n` is already taken by key[0]"
        );
    }

    #[test]
    fn names_sources_windows_and_durations_are_bounded() {
        let base = definition(MINUTE);
        let err = error(&Definition {
            name: "Bad".to_owned(),
            ..base.clone()
        });
        assert!(err.starts_with("name: invalid stream name"), "{err}");
        let err = error(&Definition {
            sources: vec![],
            ..base.clone()
        });
        assert_eq!(err, "sources: a pipeline reads at least one stream");
        let err = error(&Definition {
            sources: vec!["a".into(), "b".into(), "a".into()],
            ..base.clone()
        });
        assert_eq!(err, "sources[2]: stream `a` is listed twice");
        let err = error(&Definition {
            sources: vec!["a b".into()],
            ..base.clone()
        });
        assert!(err.starts_with("sources[0]: invalid stream name"), "{err}");

        for (window, expected) in [
            (
                WindowSpec::Tumbling { size_ms: 0 },
                "window.size: the window size must be between 1ms and 100 years, not 0ms",
            ),
            (
                WindowSpec::Tumbling {
                    size_ms: MAX_WINDOW_MS + 1,
                },
                "window.size: ",
            ),
            (
                WindowSpec::Hopping {
                    size_ms: 60_000,
                    slide_ms: 120_000,
                },
                "window.slide: the slide must be more than 0 and at most the size (1m), not 2m",
            ),
            (
                WindowSpec::Hopping {
                    size_ms: 60_000,
                    slide_ms: 0,
                },
                "window.slide: ",
            ),
            (
                WindowSpec::Session { gap_ms: -1 },
                "window.gap: the window gap must be between 1ms and 100 years, not -1ms",
            ),
        ] {
            let err = error(&definition(window));
            assert!(err.starts_with(expected), "{window}: {err}");
        }
        assert!(
            plan(&definition(WindowSpec::Tumbling {
                size_ms: MAX_WINDOW_MS
            }))
            .is_ok()
        );

        let err = error(&Definition {
            idle_timeout: Duration::from_millis(999),
            ..base.clone()
        });
        assert_eq!(err, "idle_timeout: must be at least 1s, not 999ms");
        let err = error(&Definition {
            finalize_idle_after: Some(Duration::from_millis(10)),
            ..base.clone()
        });
        assert_eq!(err, "finalize_idle_after: must be at least 1s, not 10ms");
        let err = error(&Definition {
            checkpoint_interval: Duration::ZERO,
            ..base.clone()
        });
        assert_eq!(err, "checkpoint_interval: must be more than 0");
        let century = Duration::from_secs(101 * 365 * 24 * 3600);
        let err = error(&Definition {
            allowed_lateness: century,
            ..base.clone()
        });
        assert!(
            err.starts_with("allowed_lateness: must be at most 100 years"),
            "{err}"
        );
        let spec = plan(&Definition {
            finalize_idle_after: Some(Duration::from_secs(30)),
            ..base
        })
        .unwrap();
        assert_eq!(spec.finalize_idle_after, Some(Duration::from_secs(30)));
    }

    /// The lookup of the Yahoo Streaming Benchmark: ad id → campaign.
    fn ads() -> LookupDefinition {
        LookupDefinition {
            name: "ads".to_owned(),
            on: "payload.ad_id".to_owned(),
            key: "ad_id".to_owned(),
            file: Some("data/ads.csv".into()),
            postgres: None,
            refresh: Duration::from_secs(60),
        }
    }

    /// Views per campaign, with `lookups`.
    fn views_per_campaign(lookups: Vec<LookupDefinition>) -> Definition {
        Definition {
            name: "views_per_campaign".to_owned(),
            lookups,
            filter: Some("payload.event_type = 'view' AND ads.campaign_id IS NOT NULL".to_owned()),
            key: Some(vec![KeyDefinition::from("ads.campaign_id")]),
            ..definition(WindowSpec::Tumbling { size_ms: 10_000 })
        }
    }

    #[test]
    fn lookups_are_planned_and_read_by_the_expressions() {
        let spec = plan(&views_per_campaign(vec![ads()])).unwrap();
        assert_eq!(spec.lookups.len(), 1);
        let lookup = &spec.lookups[0];
        assert_eq!(
            (
                lookup.name.as_str(),
                lookup.on.canonical(),
                lookup.key_column.as_str()
            ),
            ("ads", "payload.ad_id", "ad_id")
        );
        assert_eq!(lookup.refresh, Duration::from_secs(60));
        assert_eq!(
            lookup.source,
            LookupSource::File {
                path: "data/ads.csv".into(),
                format: FileFormat::Csv
            }
        );
        assert_eq!(spec.keys[0].name, "campaign_id");
        assert!(!spec.keyed_like_the_log());
        // The fingerprint holds what the lookup matches on, not where its table is.
        let moved = LookupDefinition {
            file: None,
            postgres: Some(PostgresTable {
                url: "postgres://db/x".to_owned(),
                table: "public.ads".to_owned(),
            }),
            refresh: Duration::ZERO,
            ..ads()
        };
        let moved = plan(&views_per_campaign(vec![moved])).unwrap();
        assert_eq!(moved.fingerprint(), spec.fingerprint());
        let rekeyed = LookupDefinition {
            on: "key".to_owned(),
            ..ads()
        };
        let rekeyed = plan(&views_per_campaign(vec![rekeyed])).unwrap();
        assert_ne!(rekeyed.fingerprint(), spec.fingerprint());
        for file in ["x.ndjson", "x.JSONL"] {
            let d = views_per_campaign(vec![LookupDefinition {
                file: Some(file.into()),
                ..ads()
            }]);
            let spec = plan(&d).unwrap();
            assert!(matches!(
                spec.lookups[0].source,
                LookupSource::File {
                    format: FileFormat::Ndjson,
                    ..
                }
            ));
        }
    }

    #[test]
    fn lookup_tables_keep_the_columns_the_expressions_read() {
        let spec = plan(&views_per_campaign(vec![ads()])).unwrap();
        let lookup::Columns::Named(names) = spec.lookup_columns() else {
            panic!("every column kept");
        };
        assert!(names.contains("campaign_id"));
        // The key column is not read: the row is found by it before it is pruned.
        assert!(!names.contains("ad_id"));
    }

    /// The rows of the property below: columns of several spellings, scalars and objects.
    fn reference_rows() -> impl proptest::strategy::Strategy<Value = Vec<lookup::ReferenceRow>> {
        use proptest::prelude::*;
        const COLUMNS: [&str; 8] = ["a", "b c", "Mixed", "mixed", "n", "o", "p", "zz"];
        let value = prop_oneof![
            Just(serde_json::Value::Null),
            any::<i32>().prop_map(serde_json::Value::from),
            Just(serde_json::json!("x")),
            Just(serde_json::json!(2.5)),
            any::<i32>().prop_map(|p| serde_json::json!({ "p": p, "q": "y" })),
        ];
        let row =
            proptest::collection::btree_map(proptest::sample::select(&COLUMNS[..]), value, 0..8);
        proptest::collection::vec(row, 1..6).prop_map(|rows| {
            rows.into_iter()
                .enumerate()
                .map(|(i, row)| {
                    let mut row: lookup::ReferenceRow = row
                        .into_iter()
                        .map(|(column, value)| (column.to_owned(), value))
                        .collect();
                    row.insert("ad".to_owned(), serde_json::Value::from(format!("k{i}")));
                    row
                })
                .collect()
        })
    }

    proptest::proptest! {
        /// Every expression reads the same of a row kept whole and of the row keeping
        /// only [`PipelineSpec::lookup_columns`], whichever way it names the fields.
        #[test]
        fn pruned_rows_read_as_whole_ones(rows in reference_rows()) {
            use crate::expr::Row;
            use crate::lookup::{Columns, LookupTable};
            let definition = Definition {
                filter: Some(
                    "ads.a IS NOT NULL OR ads['b c'] = 'x' OR ADS.\"Mixed\" > 1".to_owned(),
                ),
                key: Some(vec![KeyDefinition::from("ads.o.p")]),
                aggregates: Some(vec![("total".to_owned(), "sum(ads.n)".to_owned())]),
                lookups: vec![LookupDefinition {
                    key: "ad".to_owned(),
                    ..ads()
                }],
                ..definition(MINUTE)
            };
            let spec = plan(&definition).unwrap();
            let whole = LookupTable::build(rows.clone(), "ad", &Columns::All);
            let pruned = LookupTable::build(rows.clone(), "ad", &spec.lookup_columns());
            for i in 0..rows.len() {
                let key = format!("k{i}");
                let event = crate::Event {
                    id: crate::EventId::new("e").unwrap(),
                    stream: StreamName::new("s").unwrap(),
                    ts: crate::Timestamp::from_millis(0),
                    key: None,
                    payload: serde_json::json!({ "ad_id": key }).as_object().unwrap().clone(),
                };
                let (whole, pruned) = ([whole.get(&key)], [pruned.get(&key)]);
                let pruned_row = pruned[0].unwrap();
                proptest::prop_assert!(pruned_row.keys().all(|c| !["zz", "mixed", "ad"].contains(&c.as_str())));
                for expr in spec.expressions() {
                    let read = expr.eval(&Row::new(&event, &whole));
                    proptest::prop_assert_eq!(read, expr.eval(&Row::new(&event, &pruned)));
                }
            }
        }
    }

    #[test]
    fn bad_lookups_are_refused_naming_the_field() {
        // A lookup that is not declared is an unknown field, where it is read.
        let err = error(&views_per_campaign(vec![]));
        assert!(
            err.starts_with(
                "filter: unknown field `ads` (fields are id, stream, ts, key, payload.*)"
            ) && err.ends_with("(at line 1, column 33)"),
            "{err}"
        );
        let err = error(&Definition {
            filter: None,
            ..views_per_campaign(vec![])
        });
        assert_eq!(
            err,
            "key[0]: unknown field `ads` (fields are id, stream, ts, key, payload.*) (at line 1, column 1)"
        );
        let err = error(&Definition {
            key: Some(vec![KeyDefinition::from("  campaigns.id")]),
            ..views_per_campaign(vec![ads()])
        });
        assert_eq!(
            err,
            "key[0]: unknown field `campaigns` (fields are id, stream, ts, key, payload.*, ads.*) (at line 1, column 3)"
        );
        let with = |lookup: LookupDefinition| error(&views_per_campaign(vec![lookup]));
        for (lookups, expected) in [
            (
                vec![ads(), ads()],
                "lookups[1].name: lookup `ads` is declared twice",
            ),
            (
                vec![
                    ads(),
                    LookupDefinition {
                        name: "ADS".to_owned(),
                        ..ads()
                    },
                ],
                "lookups[1].name: lookup `ADS` is declared twice",
            ),
        ] {
            assert_eq!(error(&views_per_campaign(lookups)), expected);
        }
        for (name, expected) in [
            (
                "payload",
                "lookups[0].name: `payload` is a field of the event (payload.*)",
            ),
            (
                "Key",
                "lookups[0].name: `Key` is a field of the event (key)",
            ),
            (
                "9ads",
                "lookups[0].name: lookup name `9ads` must be letters, digits and `_`",
            ),
            ("a-b", "lookups[0].name: lookup name `a-b` must be"),
            ("", "lookups[0].name: lookup name `` must be"),
        ] {
            let err = with(LookupDefinition {
                name: name.to_owned(),
                ..ads()
            });
            assert!(err.starts_with(expected), "{name}: {err}");
        }
        for table in [
            "", "ads;drop", "a.b.c", "public.", "\"ads\"", "1ads", "ads x",
        ] {
            let err = with(LookupDefinition {
                file: None,
                postgres: Some(PostgresTable {
                    url: "postgres://db/x".to_owned(),
                    table: table.to_owned(),
                }),
                ..ads()
            });
            assert!(
                err.starts_with(&format!(
                    "lookups.ads.postgres.table: table `{table}` must be `name` or `schema.name`"
                )),
                "{table}: {err}"
            );
        }
        let err = with(LookupDefinition {
            on: "lower(ads.ad_id)".to_owned(),
            ..ads()
        });
        assert_eq!(
            err,
            "lookups.ads.on: `on` reads the event (id, stream, ts, key, payload.*), not a lookup (at line 1, column 7)"
        );
        let err = with(LookupDefinition {
            on: "payload.ad_id +".to_owned(),
            ..ads()
        });
        assert!(err.starts_with("lookups.ads.on: syntax error"), "{err}");
        let err = with(LookupDefinition {
            file: Some("data/ads.json".into()),
            ..ads()
        });
        assert!(
            err.starts_with(
                "lookups.ads.file: `data/ads.json`: a lookup file is CSV (`.csv`) or NDJSON"
            ),
            "{err}"
        );
        let err = with(LookupDefinition {
            file: None,
            ..ads()
        });
        assert!(err.starts_with("lookups.ads: missing its table"), "{err}");
        let err = with(LookupDefinition {
            postgres: Some(PostgresTable {
                url: "postgres://db/x".to_owned(),
                table: "ads".to_owned(),
            }),
            ..ads()
        });
        assert_eq!(err, "lookups.ads: give `file` or `postgres`, not both");
        let err = with(LookupDefinition {
            key: String::new(),
            ..ads()
        });
        assert!(err.starts_with("lookups.ads.key: must name"), "{err}");
        let err = with(LookupDefinition {
            refresh: Duration::from_millis(500),
            ..ads()
        });
        assert_eq!(
            err,
            "lookups.ads.refresh: must be \"0s\" (never) or at least 1s, not 500ms"
        );
        let never = LookupDefinition {
            refresh: Duration::ZERO,
            ..ads()
        };
        assert!(plan(&views_per_campaign(vec![never])).is_ok());
    }

    #[test]
    fn durations_in_text_and_milliseconds_in_people_form() {
        assert_eq!(duration_text_ms("5 minutes"), Some(300_000));
        assert_eq!(duration_text_ms(" 1 h 1 s "), Some(3_601_000));
        assert_eq!(duration_text_ms("1.5 hours"), None);
        assert_eq!(duration_text_ms("minutes"), None);
        assert_eq!(duration_text_ms(""), None);
        assert_eq!(duration_text_ms("99999999999999999 days"), None);
        assert_eq!(show_ms(300_000), "5m");
        assert_eq!(show_ms(1_500), "1500ms");
        assert_eq!(show_ms(0), "0ms");
        assert_eq!(show_ms(86_400_000), "1d");
    }

    #[test]
    fn long_statements_are_refused() {
        let sql = format!(
            "SELECT count(*) AS n FROM s WHERE {} GROUP BY tumble(ts, INTERVAL '1' MINUTE)",
            vec!["payload.a = 1"; 3_000].join(" OR ")
        );
        assert!(parse_sql(&sql).unwrap_err().message.contains("too long"));
    }
}
