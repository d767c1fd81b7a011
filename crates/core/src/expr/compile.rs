//! From a sqlparser syntax tree to a tree of closures: resolves names against the
//! [`Scope`], checks types, and folds constants.
//!
//! Each node becomes one closure that calls its children's. Where a child is a constant,
//! the parent captures its value and reads it by reference, so that comparing with a string
//! literal, say, copies nothing at runtime.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::sync::Arc;

use serde_json::Map;
use sqlparser::ast::{
    self, AccessExpr, BinaryOperator, CaseWhen, DataType, FunctionArg, FunctionArgExpr,
    FunctionArguments, InTarget, ObjectNamePart, Spanned, Subscript, UnaryOperator,
};
use sqlparser::tokenizer::Location;

use super::like::{LikePattern, like};
use super::{EvalFn, ExprError, Row, Scope, known_or, ops};
use crate::value::{ColumnType, Value};
use crate::{Event, EventId, StreamName, Timestamp};

/// How deep expressions may nest (a chain of `AND`s or `OR`s counts as one level).
const MAX_DEPTH: usize = 256;

/// From how many constant strings `IN` looks values up by binary search.
const SORTED_IN_MIN: usize = 8;

/// An expression's static type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ty {
    /// Always this type, or `NULL`.
    Known(ColumnType),
    /// The `NULL` literal, which fits any type.
    Null,
    /// A JSON field: any type, known only at runtime.
    Any,
}

impl Ty {
    /// The column type, when known.
    pub(super) fn column_type(self) -> Option<ColumnType> {
        match self {
            Self::Known(t) => Some(t),
            Self::Null | Self::Any => None,
        }
    }
}

/// The SQL name of a type, for messages.
fn sql_name(ty: ColumnType) -> &'static str {
    match ty {
        ColumnType::Bool => "BOOLEAN",
        ColumnType::Int => "BIGINT",
        ColumnType::Float => "DOUBLE",
        ColumnType::Text => "TEXT",
    }
}

/// Whether a type is numeric.
fn is_numeric(ty: ColumnType) -> bool {
    matches!(ty, ColumnType::Int | ColumnType::Float)
}

/// What an operator needs of an operand.
#[derive(Debug, Clone, Copy)]
enum Want {
    Number,
    Text,
    Bool,
}

impl Want {
    fn admits(self, ty: ColumnType) -> bool {
        match self {
            Self::Number => is_numeric(ty),
            Self::Text => ty == ColumnType::Text,
            Self::Bool => ty == ColumnType::Bool,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Number => "a number",
            Self::Text => "text",
            Self::Bool => "a boolean",
        }
    }
}

/// A type error unless `node` can be what `what` wants (a `NULL` or a JSON field can).
fn expect(node: &Node, want: Want, what: &str) -> Result<(), ExprError> {
    match node.ty {
        Ty::Known(ty) if !want.admits(ty) => Err(ExprError::at(
            node.at,
            format!(
                "type error: {what} needs {}, got {}",
                want.name(),
                sql_name(ty)
            ),
        )),
        _ => Ok(()),
    }
}

/// A type error unless `a` and `b` compare: same type, or both numbers.
fn comparable(a: &Node, b: &Node, at: Location) -> Result<(), ExprError> {
    match (a.ty, b.ty) {
        (Ty::Known(x), Ty::Known(y)) if x != y && !(is_numeric(x) && is_numeric(y)) => {
            Err(ExprError::at(
                at,
                format!(
                    "type error: cannot compare {} with {}",
                    sql_name(x),
                    sql_name(y)
                ),
            ))
        }
        _ => Ok(()),
    }
}

/// The type of the values `nodes` may give in one place (`CASE` results, `COALESCE`
/// arguments): a double when integers and doubles mix; an error when other types do.
fn common_type<'n>(nodes: impl IntoIterator<Item = &'n Node>, what: &str) -> Result<Ty, ExprError> {
    let (mut known, mut any) = (None, false);
    for node in nodes {
        match node.ty {
            Ty::Null => {}
            Ty::Any => any = true,
            Ty::Known(ty) => {
                known = Some(match known {
                    None => ty,
                    Some(k) if k == ty => k,
                    Some(k) if is_numeric(k) && is_numeric(ty) => ColumnType::Float,
                    Some(k) => {
                        return Err(ExprError::at(
                            node.at,
                            format!(
                                "type error: {what} mixes {} and {}",
                                sql_name(k),
                                sql_name(ty)
                            ),
                        ));
                    }
                });
            }
        }
    }
    Ok(if any {
        Ty::Any
    } else {
        known.map_or(Ty::Null, Ty::Known)
    })
}

/// A field that an expression is exactly.
#[derive(Debug, Clone)]
pub(super) struct Field {
    /// The last segment of its path, to name a result column after.
    pub(super) name: String,
    /// Reads it.
    pub(super) read: Reader,
}

/// Reads a field from a row. Operators read their field operands through it directly
/// rather than through the field's closure: one indirect call less per field.
#[derive(Debug, Clone)]
pub(super) enum Reader {
    /// `id`.
    Id,
    /// `stream`.
    Stream,
    /// `ts`.
    Ts,
    /// `key`.
    Key,
    /// `payload.<name>`.
    PayloadField(Box<str>),
    /// `payload.<path>`, two segments or more.
    Payload(Box<[String]>),
    /// `<lookup>.<path>`: the index of the lookup in the row.
    Lookup(usize, Box<[String]>),
}

impl Reader {
    fn read<'a>(&self, row: &Row<'a>) -> Value<'a> {
        match self {
            Self::Id => Value::Str(Cow::Borrowed(row.event.id)),
            Self::Stream => Value::Str(Cow::Borrowed(row.event.stream.as_str())),
            Self::Ts => Value::Int(row.event.ts.millis()),
            Self::Key => row
                .event
                .key
                .map_or(Value::Null, |k| Value::Str(Cow::Borrowed(k))),
            Self::PayloadField(name) => row.event.payload.get(std::slice::from_ref(name)),
            Self::Payload(path) => row.event.payload.get(path),
            Self::Lookup(index, path) => match row.lookups.get(*index) {
                Some(Some(found)) => super::descend(found, path),
                _ => Value::Null,
            },
        }
    }
}

/// A compiled expression, with what its parent needs to know about it.
pub(super) struct Node {
    /// Computes it.
    pub(super) eval: EvalFn,
    /// Its static type.
    pub(super) ty: Ty,
    /// Its value, when it reads no field.
    constant: Option<Value<'static>>,
    /// Where it starts in the source.
    at: Location,
    /// The field it is, when it is one.
    pub(super) field: Option<Field>,
}

impl Node {
    /// A constant.
    fn constant(value: Value<'static>, ty: Ty, at: Location) -> Self {
        let copy = value.clone();
        Self {
            eval: eval_fn(move |_| copy.clone()),
            ty,
            constant: Some(value),
            at,
            field: None,
        }
    }

    /// A node that reads the row.
    fn dynamic(eval: EvalFn, ty: Ty, at: Location) -> Self {
        Self {
            eval,
            ty,
            constant: None,
            at,
            field: None,
        }
    }
}

/// Wraps a closure as an [`EvalFn`] (and gives it the higher-ranked signature).
fn eval_fn<F>(f: F) -> EvalFn
where
    F: for<'a> Fn(&Row<'a>) -> Value<'a> + Send + Sync + 'static,
{
    Arc::new(f)
}

/// An operator's input, read the cheapest way: a constant in place (not cloned), a field
/// directly, anything else through its closure.
#[derive(Clone)]
enum Operand {
    Const(Value<'static>),
    Field(Reader),
    Eval(EvalFn),
}

impl Operand {
    fn of(node: &Node) -> Self {
        match (&node.constant, &node.field) {
            (Some(value), _) => Self::Const(value.clone()),
            (None, Some(field)) => Self::Field(field.read.clone()),
            (None, None) => Self::Eval(node.eval.clone()),
        }
    }

    /// The value, to look at.
    fn get<'s>(&'s self, row: &Row<'s>) -> Cow<'s, Value<'s>> {
        match self {
            Self::Const(value) => Cow::Borrowed(value),
            Self::Field(read) => Cow::Owned(read.read(row)),
            Self::Eval(eval) => Cow::Owned(eval(row)),
        }
    }

    /// The value, to return (a string constant is copied).
    fn value<'a>(&self, row: &Row<'a>) -> Value<'a> {
        match self {
            Self::Const(value) => value.clone(),
            Self::Field(read) => read.read(row),
            Self::Eval(eval) => eval(row),
        }
    }
}

/// A binary operator whose result borrows from neither input (all but `AND` and `OR`),
/// specialized for the usual shapes: an operand and a constant.
fn binary<F>(l: &Node, r: &Node, f: F) -> EvalFn
where
    F: Fn(&Value<'_>, &Value<'_>) -> Value<'static> + Send + Sync + 'static,
{
    use Operand as O;
    match (Operand::of(l), Operand::of(r)) {
        (O::Field(a), O::Const(b)) => eval_fn(move |row| f(&a.read(row), &b)),
        (O::Const(a), O::Field(b)) => eval_fn(move |row| f(&a, &b.read(row))),
        (O::Eval(a), O::Const(b)) => eval_fn(move |row| f(&a(row), &b)),
        (O::Const(a), O::Eval(b)) => eval_fn(move |row| f(&a, &b(row))),
        (a, b) => eval_fn(move |row| f(&a.get(row), &b.get(row))),
    }
}

/// An operator on one input, `f` applied to its value.
fn map<F>(x: &Node, f: F) -> EvalFn
where
    F: for<'a> Fn(Value<'a>) -> Value<'a> + Send + Sync + 'static,
{
    match &x.field {
        Some(field) => {
            let read = field.read.clone();
            eval_fn(move |row| f(read.read(row)))
        }
        None => {
            let x_eval = x.eval.clone();
            eval_fn(move |row| f(x_eval(row)))
        }
    }
}

/// Where `expr` starts: its span's start, or `parent` when it has none.
///
/// The start of most expressions is the start of their first operand; walking down to it
/// (rather than asking sqlparser for the whole span) keeps this cheap and non-recursive on
/// long left-deep chains such as `a + b + c + ...`.
fn position(expr: &ast::Expr, parent: Location) -> Location {
    use ast::Expr as E;
    let mut e = expr;
    let start = loop {
        e = match e {
            E::BinaryOp { left: x, .. }
            | E::Nested(x)
            | E::UnaryOp { expr: x, .. }
            | E::Cast { expr: x, .. }
            | E::IsNull(x)
            | E::IsNotNull(x)
            | E::IsTrue(x)
            | E::IsNotTrue(x)
            | E::IsFalse(x)
            | E::IsNotFalse(x)
            | E::IsUnknown(x)
            | E::IsNotUnknown(x)
            | E::IsDistinctFrom(x, _)
            | E::IsNotDistinctFrom(x, _)
            | E::In { expr: x, .. }
            | E::Between { expr: x, .. }
            | E::Like { expr: x, .. }
            | E::ILike { expr: x, .. } => x,
            _ => break e.span().start,
        };
    };
    known_or(start, parent)
}

/// The text of a string literal, in any of its quotings.
pub(super) fn string_literal(value: &ast::Value) -> Option<&str> {
    use ast::Value as V;
    match value {
        V::SingleQuotedString(s)
        | V::EscapedStringLiteral(s)
        | V::UnicodeStringLiteral(s)
        | V::NationalStringLiteral(s)
        | V::TripleSingleQuotedString(s)
        | V::TripleDoubleQuotedString(s)
        | V::SingleQuotedRawStringLiteral(s)
        | V::DoubleQuotedRawStringLiteral(s)
        | V::TripleSingleQuotedRawStringLiteral(s)
        | V::TripleDoubleQuotedRawStringLiteral(s) => Some(s),
        V::DollarQuotedString(s) => Some(&s.value),
        _ => None,
    }
}

/// A literal.
fn literal(value: &ast::Value, at: Location) -> Result<Node, ExprError> {
    let (value, ty) = match value {
        ast::Value::Number(text, _) => {
            let number = text
                .parse()
                .map(Value::Int)
                .ok()
                .or_else(|| {
                    let x: f64 = text.parse().ok()?;
                    x.is_finite().then_some(Value::Float(x))
                })
                .ok_or_else(|| ExprError::at(at, format!("invalid number `{text}`")))?;
            let ty = match number {
                Value::Int(_) => ColumnType::Int,
                _ => ColumnType::Float,
            };
            (number, Ty::Known(ty))
        }
        ast::Value::Boolean(b) => (Value::Bool(*b), Ty::Known(ColumnType::Bool)),
        ast::Value::Null => (Value::Null, Ty::Null),
        other => match string_literal(other) {
            Some(s) => (
                Value::Str(Cow::Owned(s.to_owned())),
                Ty::Known(ColumnType::Text),
            ),
            None => return Err(ExprError::at(at, format!("unsupported literal `{other}`"))),
        },
    };
    Ok(Node::constant(value, ty, at))
}

/// The column type a SQL type names.
fn column_type(data_type: &DataType) -> Option<ColumnType> {
    use DataType as D;
    Some(match data_type {
        D::BigInt(_)
        | D::Int(_)
        | D::Integer(_)
        | D::SmallInt(_)
        | D::Int2(_)
        | D::Int4(_)
        | D::Int8(_)
        | D::Int64 => ColumnType::Int,
        D::Double(_)
        | D::DoublePrecision
        | D::Float(_)
        | D::Real
        | D::Float4
        | D::Float8
        | D::Float32
        | D::Float64
        | D::Decimal(_)
        | D::Numeric(_)
        | D::Dec(_) => ColumnType::Float,
        D::Varchar(_)
        | D::Text
        | D::String(_)
        | D::CharacterVarying(_)
        | D::CharVarying(_)
        | D::Nvarchar(_) => ColumnType::Text,
        D::Bool | D::Boolean => ColumnType::Bool,
        _ => return None,
    })
}

/// One segment of a field's path, as written.
struct Segment<'e> {
    name: &'e str,
    /// Quoted names match exactly; others ignore ASCII case where SQL does (field roots).
    quoted: bool,
    at: Location,
}

impl Segment<'_> {
    fn of(ident: &ast::Ident, parent: Location) -> Segment<'_> {
        Segment {
            name: &ident.value,
            quoted: ident.quote_style.is_some(),
            at: known_or(ident.span.start, parent),
        }
    }

    /// Whether it names `root` (a field root or a lookup).
    fn is(&self, root: &str) -> bool {
        if self.quoted {
            self.name == root
        } else {
            self.name.eq_ignore_ascii_case(root)
        }
    }
}

/// The path of a field access: `a.b.c`, `a['b'].c`.
fn field_path(expr: &ast::Expr, at: Location) -> Result<Vec<Segment<'_>>, ExprError> {
    let unsupported = |what: &dyn std::fmt::Display| {
        ExprError::at(
            at,
            format!("unsupported field access `{what}`: use `.name` or `['name']`"),
        )
    };
    let mut path = Vec::new();
    let (root, chain) = match expr {
        ast::Expr::CompoundFieldAccess { root, access_chain } => (&**root, access_chain.as_slice()),
        _ => (expr, &[][..]),
    };
    match root {
        ast::Expr::Identifier(ident) => path.push(Segment::of(ident, at)),
        ast::Expr::CompoundIdentifier(idents) => {
            path.extend(idents.iter().map(|i| Segment::of(i, at)));
        }
        other => return Err(unsupported(other)),
    }
    for access in chain {
        match access {
            AccessExpr::Dot(ast::Expr::Identifier(ident)) => path.push(Segment::of(ident, at)),
            AccessExpr::Dot(ast::Expr::CompoundIdentifier(idents)) => {
                path.extend(idents.iter().map(|i| Segment::of(i, at)));
            }
            AccessExpr::Subscript(Subscript::Index {
                index: ast::Expr::Value(v),
            }) => match string_literal(&v.value) {
                Some(name) => path.push(Segment {
                    name,
                    quoted: true,
                    at: known_or(v.span.start, at),
                }),
                None => return Err(unsupported(&v.value)),
            },
            AccessExpr::Dot(other) => return Err(unsupported(other)),
            AccessExpr::Subscript(other) => return Err(unsupported(other)),
        }
    }
    Ok(path)
}

/// Compiles expressions against a scope.
pub(super) struct Compiler<'s> {
    scope: &'s Scope,
    /// How deep the expression being compiled is.
    depth: usize,
    /// Stands in for the row when folding constants: an expression that reads no field
    /// gives the same value on any row.
    blank: Option<Event>,
    /// The payload paths read so far.
    pub(super) paths: Vec<Box<[String]>>,
    /// Whether a lookup's field was read.
    pub(super) reads_lookups: bool,
}

impl<'s> Compiler<'s> {
    pub(super) fn new(scope: &'s Scope) -> Self {
        let blank = match (EventId::new("constant"), StreamName::new("constant")) {
            (Ok(id), Ok(stream)) => Some(Event {
                id,
                stream,
                ts: Timestamp::from_millis(0),
                key: None,
                payload: Map::new(),
            }),
            _ => None,
        };
        Self {
            scope,
            depth: 0,
            blank,
            paths: Vec::new(),
            reads_lookups: false,
        }
    }

    /// Compiles `expr`; `parent` is where its parent starts, for positions it lacks.
    pub(super) fn compile(
        &mut self,
        expr: &ast::Expr,
        parent: Location,
    ) -> Result<Node, ExprError> {
        let at = position(expr, parent);
        if self.depth >= MAX_DEPTH {
            return Err(ExprError::at(
                at,
                format!("expression is nested too deeply (at most {MAX_DEPTH} levels)"),
            ));
        }
        self.depth += 1;
        let node = self.compile_at(expr, at);
        self.depth -= 1;
        node
    }

    /// A node computed by `eval` from `inputs`: folded to a constant when they all are.
    fn node(&self, eval: EvalFn, ty: Ty, at: Location, inputs: &[&Node]) -> Node {
        if inputs.iter().all(|input| input.constant.is_some())
            && let Some(event) = &self.blank
        {
            let value = eval(&Row::new(event, &[])).into_owned();
            return Node::constant(value, ty, at);
        }
        Node::dynamic(eval, ty, at)
    }

    /// A unary operator on `x`.
    fn unary<F>(&self, x: &Node, ty: Ty, at: Location, f: F) -> Node
    where
        F: for<'a> Fn(Value<'a>) -> Value<'a> + Send + Sync + 'static,
    {
        self.node(map(x, f), ty, at, &[x])
    }

    fn compile_at(&mut self, expr: &ast::Expr, at: Location) -> Result<Node, ExprError> {
        use ast::Expr as E;
        match expr {
            E::Identifier(_) | E::CompoundIdentifier(_) | E::CompoundFieldAccess { .. } => {
                self.field(expr, at)
            }
            E::Value(v) => literal(&v.value, at),
            E::Nested(inner) => self.compile(inner, at),
            E::BinaryOp { left, op, right } => self.binary_op(expr, left, op, right, at),
            E::UnaryOp { op, expr: x } => self.unary_op(*op, x, at),
            E::IsNull(x) => self.test(x, at, None, |v| matches!(v, Value::Null)),
            E::IsNotNull(x) => self.test(x, at, None, |v| !v.is_null()),
            E::IsTrue(x) => self.test(x, at, Some("IS TRUE"), |v| matches!(v, Value::Bool(true))),
            E::IsNotTrue(x) => self.test(x, at, Some("IS NOT TRUE"), |v| {
                !matches!(v, Value::Bool(true))
            }),
            E::IsFalse(x) => {
                self.test(x, at, Some("IS FALSE"), |v| matches!(v, Value::Bool(false)))
            }
            E::IsNotFalse(x) => self.test(x, at, Some("IS NOT FALSE"), |v| {
                !matches!(v, Value::Bool(false))
            }),
            E::IsUnknown(x) => {
                self.test(x, at, Some("IS UNKNOWN"), |v| !matches!(v, Value::Bool(_)))
            }
            E::IsNotUnknown(x) => self.test(x, at, Some("IS NOT UNKNOWN"), |v| {
                matches!(v, Value::Bool(_))
            }),
            E::IsDistinctFrom(a, b) => self.distinct(a, b, true, at),
            E::IsNotDistinctFrom(a, b) => self.distinct(a, b, false, at),
            E::In {
                expr: x,
                target: InTarget::List(items),
                negated,
                global: false,
            } => self.in_list(x, items, *negated, at),
            E::Between {
                expr: x,
                negated,
                low,
                high,
            } => self.between(x, low, high, *negated, at),
            E::Like {
                negated,
                any: false,
                expr: x,
                pattern,
                escape_char,
            } => self.like(x, pattern, escape_char.as_deref(), *negated, false, at),
            E::ILike {
                negated,
                any: false,
                expr: x,
                pattern,
                escape_char,
            } => self.like(x, pattern, escape_char.as_deref(), *negated, true, at),
            E::Case {
                operand,
                conditions,
                else_result,
                ..
            } => self.case(operand.as_deref(), conditions, else_result.as_deref(), at),
            E::Cast {
                expr: x,
                data_type,
                format: None,
                ..
            } => self.cast(x, data_type, at),
            E::Function(function) => self.function(function, at),
            _ => Err(ExprError::at(
                at,
                format!("unsupported expression `{expr}`"),
            )),
        }
    }

    /// A field: `id`, `stream`, `ts`, `key`, `payload.<path>` or `<lookup>.<path>`.
    fn field(&mut self, expr: &ast::Expr, at: Location) -> Result<Node, ExprError> {
        let path = field_path(expr, at)?;
        let Some((root, rest)) = path.split_first() else {
            return Err(ExprError::at(at, "expected a field"));
        };
        let names = || {
            rest.iter()
                .map(|s| s.name.to_owned())
                .collect::<Box<[String]>>()
        };
        let event_field = [
            ("id", Reader::Id),
            ("stream", Reader::Stream),
            ("ts", Reader::Ts),
            ("key", Reader::Key),
        ]
        .into_iter()
        .find(|(name, _)| root.is(name));
        let (read, ty) = if let Some((name, read)) = event_field {
            if let Some(extra) = rest.first() {
                return Err(ExprError::at(extra.at, format!("`{name}` has no fields")));
            }
            let ty = if name == "ts" {
                ColumnType::Int
            } else {
                ColumnType::Text
            };
            (read, Ty::Known(ty))
        } else if root.is("payload") {
            let read = match rest {
                [] => {
                    return Err(ExprError::at(
                        root.at,
                        "`payload` is an object: name one of its fields, as in `payload.amount`",
                    ));
                }
                [only] => Reader::PayloadField(only.name.into()),
                _ => Reader::Payload(names()),
            };
            if !self.paths.iter().any(|p| **p == *names()) {
                self.paths.push(names());
            }
            (read, Ty::Any)
        } else if let Some(index) = self.scope.lookups.iter().position(|l| root.is(l)) {
            if rest.is_empty() {
                return Err(ExprError::at(
                    root.at,
                    format!(
                        "`{}` is a lookup: name one of its fields, as in `{}.<field>`",
                        root.name, root.name
                    ),
                ));
            }
            self.reads_lookups = true;
            (Reader::Lookup(index, names()), Ty::Any)
        } else {
            let mut fields = String::from("id, stream, ts, key, payload.*");
            for lookup in &self.scope.lookups {
                fields.push_str(", ");
                fields.push_str(lookup);
                fields.push_str(".*");
            }
            return Err(ExprError::at(
                root.at,
                format!("unknown field `{}` (fields are {fields})", root.name),
            ));
        };
        // A root's name is its canonical one (`KEY` is `key`); a path's last, as written.
        let name = match (rest.last(), &read) {
            (Some(last), _) => last.name.to_owned(),
            (None, Reader::Id) => "id".to_owned(),
            (None, Reader::Stream) => "stream".to_owned(),
            (None, Reader::Ts) => "ts".to_owned(),
            (None, _) => "key".to_owned(),
        };
        let reader = read.clone();
        let mut node = Node::dynamic(eval_fn(move |row| reader.read(row)), ty, at);
        node.field = Some(Field { name, read });
        Ok(node)
    }

    fn binary_op(
        &mut self,
        expr: &ast::Expr,
        left: &ast::Expr,
        op: &BinaryOperator,
        right: &ast::Expr,
        at: Location,
    ) -> Result<Node, ExprError> {
        use BinaryOperator as B;
        match op {
            B::And => return self.connective::<false>(expr, at),
            B::Or => return self.connective::<true>(expr, at),
            B::Plus
            | B::Minus
            | B::Multiply
            | B::Divide
            | B::Modulo
            | B::StringConcat
            | B::Eq
            | B::NotEq
            | B::Lt
            | B::LtEq
            | B::Gt
            | B::GtEq => {}
            other => {
                return Err(ExprError::at(at, format!("unsupported operator `{other}`")));
            }
        }
        let l = self.compile(left, at)?;
        let r = self.compile(right, at)?;
        match op {
            B::Plus => self.arithmetic(&l, &r, op, at, i64::checked_add, |x, y| Some(x + y)),
            B::Minus => self.arithmetic(&l, &r, op, at, i64::checked_sub, |x, y| Some(x - y)),
            B::Multiply => self.arithmetic(&l, &r, op, at, i64::checked_mul, |x, y| Some(x * y)),
            B::Divide => self.arithmetic(&l, &r, op, at, i64::checked_div, ops::divide),
            B::Modulo => self.arithmetic(&l, &r, op, at, i64::checked_rem, ops::remainder),
            B::StringConcat => {
                let eval = binary(&l, &r, ops::concat);
                Ok(self.node(eval, Ty::Known(ColumnType::Text), at, &[&l, &r]))
            }
            B::Eq => self.comparison(&l, &r, at, Ordering::is_eq),
            B::NotEq => self.comparison(&l, &r, at, Ordering::is_ne),
            B::Lt => self.comparison(&l, &r, at, Ordering::is_lt),
            B::LtEq => self.comparison(&l, &r, at, Ordering::is_le),
            B::Gt => self.comparison(&l, &r, at, Ordering::is_gt),
            _ => self.comparison(&l, &r, at, Ordering::is_ge),
        }
    }

    /// `+ - * / %`.
    fn arithmetic<I, F>(
        &self,
        l: &Node,
        r: &Node,
        op: &BinaryOperator,
        at: Location,
        int: I,
        float: F,
    ) -> Result<Node, ExprError>
    where
        I: Fn(i64, i64) -> Option<i64> + Copy + Send + Sync + 'static,
        F: Fn(f64, f64) -> Option<f64> + Copy + Send + Sync + 'static,
    {
        let what = format!("`{op}`");
        expect(l, Want::Number, &what)?;
        expect(r, Want::Number, &what)?;
        let (int_ty, float_ty) = (Ty::Known(ColumnType::Int), Ty::Known(ColumnType::Float));
        let ty = match (l.ty, r.ty) {
            (x, y) if x == float_ty || y == float_ty => float_ty,
            (Ty::Any, _) | (_, Ty::Any) => Ty::Any,
            (x, y) if x == int_ty || y == int_ty => int_ty,
            _ => Ty::Null,
        };
        let eval = binary(l, r, move |a, b| ops::arithmetic(a, b, int, float));
        Ok(self.node(eval, ty, at, &[l, r]))
    }

    /// `= <> < <= > >=`: `holds` tells which orders make it true.
    fn comparison<H>(&self, l: &Node, r: &Node, at: Location, holds: H) -> Result<Node, ExprError>
    where
        H: Fn(Ordering) -> bool + Copy + Send + Sync + 'static,
    {
        comparable(l, r, at)?;
        let eval = binary(l, r, move |a, b| ops::compare(a, b, holds));
        Ok(self.node(eval, Ty::Known(ColumnType::Bool), at, &[l, r]))
    }

    /// A chain of `AND`s (`DECIDES` is false: one false operand decides) or of `OR`s
    /// (`DECIDES` is true), with SQL's three-valued logic.
    fn connective<const DECIDES: bool>(
        &mut self,
        expr: &ast::Expr,
        at: Location,
    ) -> Result<Node, ExprError> {
        let (op, name) = if DECIDES {
            (BinaryOperator::Or, "OR")
        } else {
            (BinaryOperator::And, "AND")
        };
        // Flatten the chain, iteratively: long chains are usually left-deep.
        let mut operands = Vec::new();
        let mut pending = vec![expr];
        while let Some(e) = pending.pop() {
            match e {
                ast::Expr::BinaryOp { left, op: o, right } if *o == op => {
                    pending.push(right);
                    pending.push(left);
                }
                _ => operands.push(e),
            }
        }
        let mut nodes = Vec::with_capacity(operands.len());
        for operand in operands {
            let node = self.compile(operand, at)?;
            expect(&node, Want::Bool, name)?;
            nodes.push(node);
        }
        // Fold the constants: one that decides decides all, the others drop out (a `NULL`
        // leaves its mark: the result is `NULL` unless something decides).
        let bool_ty = Ty::Known(ColumnType::Bool);
        let mut unknown = false;
        let mut rest = Vec::with_capacity(nodes.len());
        for node in nodes {
            match node.constant {
                Some(Value::Bool(b)) if b == DECIDES => {
                    return Ok(Node::constant(Value::Bool(DECIDES), bool_ty, at));
                }
                Some(Value::Bool(_)) => {}
                Some(_) => unknown = true,
                None => rest.push(node.eval),
            }
        }
        let rest: Box<[EvalFn]> = rest.into();
        let eval = match (&*rest, unknown) {
            ([], _) => {
                let value = if unknown {
                    Value::Null
                } else {
                    Value::Bool(!DECIDES)
                };
                return Ok(Node::constant(value, bool_ty, at));
            }
            ([only], false) => {
                let only = only.clone();
                eval_fn(move |row| match only(row) {
                    Value::Bool(b) => Value::Bool(b),
                    _ => Value::Null,
                })
            }
            ([a, b], false) => {
                let (a, b) = (a.clone(), b.clone());
                eval_fn(move |row| {
                    let first = a(row);
                    if matches!(first, Value::Bool(x) if x == DECIDES) {
                        return Value::Bool(DECIDES);
                    }
                    match b(row) {
                        Value::Bool(x) if x == DECIDES => Value::Bool(DECIDES),
                        Value::Bool(_) if matches!(first, Value::Bool(_)) => Value::Bool(!DECIDES),
                        _ => Value::Null,
                    }
                })
            }
            _ => eval_fn(move |row| {
                let mut unknown = unknown;
                for operand in &rest {
                    match operand(row) {
                        Value::Bool(x) if x == DECIDES => return Value::Bool(DECIDES),
                        Value::Bool(_) => {}
                        _ => unknown = true,
                    }
                }
                if unknown {
                    Value::Null
                } else {
                    Value::Bool(!DECIDES)
                }
            }),
        };
        Ok(Node::dynamic(eval, bool_ty, at))
    }

    fn unary_op(
        &mut self,
        op: UnaryOperator,
        x: &ast::Expr,
        at: Location,
    ) -> Result<Node, ExprError> {
        let (want, what) = match op {
            UnaryOperator::Not => (Want::Bool, "NOT"),
            UnaryOperator::Minus => (Want::Number, "unary `-`"),
            UnaryOperator::Plus => (Want::Number, "unary `+`"),
            other => {
                return Err(ExprError::at(at, format!("unsupported operator `{other}`")));
            }
        };
        let x = self.compile(x, at)?;
        expect(&x, want, what)?;
        Ok(match op {
            UnaryOperator::Not => self.unary(&x, Ty::Known(ColumnType::Bool), at, |v| ops::not(&v)),
            UnaryOperator::Minus => self.unary(&x, x.ty, at, |v| ops::negate(&v)),
            _ => self.unary(&x, x.ty, at, |v| ops::plus(&v)),
        })
    }

    /// `IS [NOT] NULL`, `IS [NOT] TRUE`, ...: never `NULL`. `needs_bool` names the test
    /// when its operand must be a boolean.
    fn test<F>(
        &mut self,
        x: &ast::Expr,
        at: Location,
        needs_bool: Option<&str>,
        holds: F,
    ) -> Result<Node, ExprError>
    where
        F: Fn(&Value<'_>) -> bool + Send + Sync + 'static,
    {
        let x = self.compile(x, at)?;
        if let Some(what) = needs_bool {
            expect(&x, Want::Bool, what)?;
        }
        let eval = map(&x, move |v| Value::Bool(holds(&v)));
        Ok(self.node(eval, Ty::Known(ColumnType::Bool), at, &[&x]))
    }

    /// `IS [NOT] DISTINCT FROM`.
    fn distinct(
        &mut self,
        a: &ast::Expr,
        b: &ast::Expr,
        want_distinct: bool,
        at: Location,
    ) -> Result<Node, ExprError> {
        let (l, r) = (self.compile(a, at)?, self.compile(b, at)?);
        comparable(&l, &r, at)?;
        let eval = binary(&l, &r, move |a, b| {
            Value::Bool(ops::distinct(a, b) == want_distinct)
        });
        Ok(self.node(eval, Ty::Known(ColumnType::Bool), at, &[&l, &r]))
    }

    /// `x [NOT] IN (a, b, ...)`: true when `x` equals one of them; otherwise `NULL` when
    /// `x` or one of them is `NULL`, false when none is.
    fn in_list(
        &mut self,
        x: &ast::Expr,
        items: &[ast::Expr],
        negated: bool,
        at: Location,
    ) -> Result<Node, ExprError> {
        let x = self.compile(x, at)?;
        let mut nodes = Vec::with_capacity(items.len());
        for item in items {
            let node = self.compile(item, at)?;
            comparable(&x, &node, node.at)?;
            nodes.push(node);
        }
        let constants: Option<Vec<Value<'static>>> =
            nodes.iter().map(|node| node.constant.clone()).collect();
        let strings: Option<Vec<&str>> = constants
            .as_ref()
            .and_then(|constants| constants.iter().map(Value::as_str).collect());
        let eval = match (strings, constants.as_ref()) {
            (Some(mut strings), _) if strings.len() >= SORTED_IN_MIN => {
                strings.sort_unstable();
                strings.dedup();
                let sorted: Box<[Box<str>]> = strings.into_iter().map(Box::from).collect();
                map(&x, move |v| match v {
                    Value::Str(s) => {
                        let found = sorted.binary_search_by(|c| (**c).cmp(&*s)).is_ok();
                        Value::Bool(found != negated)
                    }
                    // `NULL`, or a value that compares with no string.
                    _ => Value::Null,
                })
            }
            (_, Some(constants)) => {
                let constants: Box<[Value<'static>]> = constants.clone().into();
                map(&x, move |v| {
                    if v.is_null() {
                        return Value::Null;
                    }
                    let mut unknown = false;
                    let found = constants.iter().any(|c| equals(&v, c, &mut unknown));
                    verdict(found, unknown, negated)
                })
            }
            (_, None) => {
                let v = Operand::of(&x);
                let items: Box<[Operand]> = nodes.iter().map(Operand::of).collect();
                eval_fn(move |row| {
                    let v = v.get(row);
                    if v.is_null() {
                        return Value::Null;
                    }
                    let mut unknown = false;
                    let found = items.iter().any(|i| equals(&v, &i.get(row), &mut unknown));
                    verdict(found, unknown, negated)
                })
            }
        };
        let inputs: Vec<&Node> = std::iter::once(&x).chain(&nodes).collect();
        Ok(self.node(eval, Ty::Known(ColumnType::Bool), at, &inputs))
    }

    /// `x [NOT] BETWEEN low AND high`: `low <= x AND x <= high`.
    fn between(
        &mut self,
        x: &ast::Expr,
        low: &ast::Expr,
        high: &ast::Expr,
        negated: bool,
        at: Location,
    ) -> Result<Node, ExprError> {
        let x = self.compile(x, at)?;
        let low = self.compile(low, at)?;
        let high = self.compile(high, at)?;
        comparable(&x, &low, low.at)?;
        comparable(&x, &high, high.at)?;
        let (v, lo, hi) = (Operand::of(&x), Operand::of(&low), Operand::of(&high));
        let eval = eval_fn(move |row| {
            let v = v.get(row);
            let above = v.sql_cmp(&lo.get(row)).map(Ordering::is_ge);
            let below = v.sql_cmp(&hi.get(row)).map(Ordering::is_le);
            let inside = match (above, below) {
                (Some(false), _) | (_, Some(false)) => Some(false),
                (Some(true), Some(true)) => Some(true),
                _ => None,
            };
            inside.map_or(Value::Null, |b| Value::Bool(b != negated))
        });
        Ok(self.node(eval, Ty::Known(ColumnType::Bool), at, &[&x, &low, &high]))
    }

    /// `x [NOT] LIKE pattern [ESCAPE 'c']`, and `ILIKE`.
    fn like(
        &mut self,
        x: &ast::Expr,
        pattern: &ast::Expr,
        escape: Option<&ast::Expr>,
        negated: bool,
        fold_case: bool,
        at: Location,
    ) -> Result<Node, ExprError> {
        let what = if fold_case { "ILIKE" } else { "LIKE" };
        let x = self.compile(x, at)?;
        expect(&x, Want::Text, what)?;
        let p = self.compile(pattern, at)?;
        expect(&p, Want::Text, what)?;
        let escape = match escape {
            None => Some('\\'),
            Some(e) => escape_char(e, at)?,
        };
        let eval = match &p.constant {
            Some(Value::Str(pattern)) => {
                let pattern = LikePattern::new(pattern, escape, fold_case);
                map(&x, move |v| match v {
                    Value::Str(s) => Value::Bool(pattern.matches(&s) != negated),
                    _ => Value::Null,
                })
            }
            _ => binary(&x, &p, move |a, b| match (a, b) {
                (Value::Str(text), Value::Str(pattern)) => {
                    Value::Bool(like(text, pattern, escape, fold_case) != negated)
                }
                _ => Value::Null,
            }),
        };
        Ok(self.node(eval, Ty::Known(ColumnType::Bool), at, &[&x, &p]))
    }

    /// `CASE [x] WHEN ... THEN ... [ELSE ...] END`.
    fn case(
        &mut self,
        subject: Option<&ast::Expr>,
        conditions: &[CaseWhen],
        otherwise: Option<&ast::Expr>,
        at: Location,
    ) -> Result<Node, ExprError> {
        let subject = subject.map(|s| self.compile(s, at)).transpose()?;
        let mut whens = Vec::with_capacity(conditions.len());
        let mut thens = Vec::with_capacity(conditions.len());
        for branch in conditions {
            let when = self.compile(&branch.condition, at)?;
            match &subject {
                Some(subject) => comparable(subject, &when, when.at)?,
                None => expect(&when, Want::Bool, "WHEN")?,
            }
            whens.push(when);
            thens.push(self.compile(&branch.result, at)?);
        }
        let otherwise = otherwise.map(|e| self.compile(e, at)).transpose()?;
        let ty = common_type(thens.iter().chain(&otherwise), "CASE")?;
        let thens: Vec<Node> = thens.into_iter().map(|n| self.widen(n, ty)).collect();
        let otherwise = otherwise.map(|n| self.widen(n, ty));

        let results: Box<[Operand]> = thens.iter().map(Operand::of).collect();
        let fallback = otherwise.as_ref().map(Operand::of);
        let eval = match &subject {
            None => {
                let branches: Box<[(EvalFn, Operand)]> =
                    whens.iter().map(|w| w.eval.clone()).zip(results).collect();
                eval_fn(move |row| {
                    for (when, then) in &branches {
                        if matches!(when(row), Value::Bool(true)) {
                            return then.value(row);
                        }
                    }
                    fallback.as_ref().map_or(Value::Null, |e| e.value(row))
                })
            }
            Some(subject) => {
                let subject = Operand::of(subject);
                let branches: Box<[(Operand, Operand)]> =
                    whens.iter().map(Operand::of).zip(results).collect();
                eval_fn(move |row| {
                    let v = subject.get(row);
                    for (when, then) in &branches {
                        if v.sql_cmp(&when.get(row)) == Some(Ordering::Equal) {
                            return then.value(row);
                        }
                    }
                    fallback.as_ref().map_or(Value::Null, |e| e.value(row))
                })
            }
        };
        let inputs: Vec<&Node> = subject
            .iter()
            .chain(&whens)
            .chain(&thens)
            .chain(&otherwise)
            .collect();
        Ok(self.node(eval, ty, at, &inputs))
    }

    /// `node` converted to a double where integers and doubles mix into `ty`.
    fn widen(&self, node: Node, ty: Ty) -> Node {
        let float = Ty::Known(ColumnType::Float);
        if ty == float && node.ty == Ty::Known(ColumnType::Int) {
            self.unary(&node, float, node.at, |v| ops::cast(v, ColumnType::Float))
        } else {
            node
        }
    }

    /// `CAST(x AS type)`, `x::type`.
    fn cast(
        &mut self,
        x: &ast::Expr,
        data_type: &DataType,
        at: Location,
    ) -> Result<Node, ExprError> {
        let to = column_type(data_type).ok_or_else(|| {
            ExprError::at(
                at,
                format!(
                    "unsupported type `{data_type}` (types are BIGINT, INT, INTEGER, DOUBLE, \
                     DOUBLE PRECISION, FLOAT, REAL, DECIMAL, NUMERIC, VARCHAR, TEXT, STRING, \
                     BOOLEAN)"
                ),
            )
        })?;
        let x = self.compile(x, at)?;
        match x.ty {
            Ty::Known(from) if from == to => {
                return Ok(Node { field: None, ..x });
            }
            Ty::Known(from @ (ColumnType::Bool | ColumnType::Float))
                if matches!(to, ColumnType::Bool | ColumnType::Float) =>
            {
                return Err(ExprError::at(
                    at,
                    format!(
                        "type error: cannot cast {} to {}",
                        sql_name(from),
                        sql_name(to)
                    ),
                ));
            }
            _ => {}
        }
        Ok(self.unary(&x, Ty::Known(to), at, move |v| ops::cast(v, to)))
    }

    /// A function call.
    fn function(&mut self, f: &ast::Function, at: Location) -> Result<Node, ExprError> {
        let name = match f.name.0.as_slice() {
            [ObjectNamePart::Identifier(ident)] => ident.value.to_ascii_lowercase(),
            _ => {
                return Err(ExprError::at(at, format!("unknown function `{}`", f.name)));
            }
        };
        // Aggregate functions are the pipeline plan's, not scalar expressions.
        if crate::aggregate::FUNCTIONS.contains(&name.as_str()) {
            return Err(ExprError::at(
                at,
                format!("aggregate function `{name}` is not allowed here"),
            ));
        }
        let arity = match name.as_str() {
            "lower" | "upper" | "length" | "char_length" | "character_length" | "abs" => Some(1),
            "coalesce" => None,
            _ => {
                return Err(ExprError::at(at, format!("unknown function `{}`", f.name)));
            }
        };
        let args = arguments(f, &name, at)?;
        match arity {
            Some(n) if args.len() != n => {
                return Err(ExprError::at(
                    at,
                    format!("`{name}` takes {n} argument, got {}", args.len()),
                ));
            }
            None if args.is_empty() => {
                return Err(ExprError::at(
                    at,
                    format!("`{name}` takes at least 1 argument, got none"),
                ));
            }
            _ => {}
        }
        let mut nodes = Vec::with_capacity(args.len());
        for arg in args {
            nodes.push(self.compile(arg, at)?);
        }
        if name == "coalesce" {
            return self.coalesce(nodes, at);
        }
        let Some(x) = nodes.pop() else {
            return Err(ExprError::at(at, format!("`{name}` takes 1 argument")));
        };
        let what = format!("{name}()");
        Ok(match name.as_str() {
            "lower" | "upper" => {
                expect(&x, Want::Text, &what)?;
                let text = Ty::Known(ColumnType::Text);
                if name == "lower" {
                    self.unary(&x, text, at, ops::lower)
                } else {
                    self.unary(&x, text, at, ops::upper)
                }
            }
            "abs" => {
                expect(&x, Want::Number, &what)?;
                self.unary(&x, x.ty, at, |v| ops::abs(&v))
            }
            _ => {
                expect(&x, Want::Text, &what)?;
                self.unary(&x, Ty::Known(ColumnType::Int), at, ops::length)
            }
        })
    }

    /// `COALESCE(a, b, ...)`: the first that is not `NULL`.
    fn coalesce(&self, nodes: Vec<Node>, at: Location) -> Result<Node, ExprError> {
        let ty = common_type(&nodes, "COALESCE")?;
        let nodes: Vec<Node> = nodes.into_iter().map(|n| self.widen(n, ty)).collect();
        // `NULL` constants never win, and nothing after another constant is reached.
        let mut kept = Vec::with_capacity(nodes.len());
        for node in &nodes {
            match &node.constant {
                Some(Value::Null) => {}
                Some(_) => {
                    kept.push(Operand::of(node));
                    break;
                }
                None => kept.push(Operand::of(node)),
            }
        }
        let eval = match kept.as_slice() {
            [] => return Ok(Node::constant(Value::Null, ty, at)),
            [Operand::Const(value)] => return Ok(Node::constant(value.clone(), ty, at)),
            [Operand::Eval(only)] => only.clone(),
            _ => {
                let kept: Box<[Operand]> = kept.into();
                eval_fn(move |row| {
                    for operand in &kept {
                        let v = operand.value(row);
                        if !v.is_null() {
                            return v;
                        }
                    }
                    Value::Null
                })
            }
        };
        Ok(Node::dynamic(eval, ty, at))
    }
}

/// Whether `v` equals `item`, for `IN`; notes in `unknown` when they do not compare.
fn equals(v: &Value<'_>, item: &Value<'_>, unknown: &mut bool) -> bool {
    match v.sql_cmp(item) {
        Some(order) => order.is_eq(),
        None => {
            *unknown = true;
            false
        }
    }
}

/// The value of `[NOT] IN`: whether it `found` an equal item, or else whether an item did
/// not compare (`NULL`).
fn verdict(found: bool, unknown: bool, negated: bool) -> Value<'static> {
    if found {
        Value::Bool(!negated)
    } else if unknown {
        Value::Null
    } else {
        Value::Bool(negated)
    }
}

/// The arguments of a plain call, `f(a, b)`.
fn arguments<'f>(
    f: &'f ast::Function,
    name: &str,
    at: Location,
) -> Result<Vec<&'f ast::Expr>, ExprError> {
    let unsupported = || {
        ExprError::at(
            at,
            format!("unsupported syntax in the call to `{name}`: only plain arguments are allowed"),
        )
    };
    let plain = f.over.is_none()
        && f.filter.is_none()
        && f.null_treatment.is_none()
        && f.within_group.is_empty()
        && !f.uses_odbc_syntax
        && matches!(f.parameters, FunctionArguments::None);
    let FunctionArguments::List(list) = &f.args else {
        return Err(unsupported());
    };
    if !plain || list.duplicate_treatment.is_some() || !list.clauses.is_empty() {
        return Err(unsupported());
    }
    list.args
        .iter()
        .map(|arg| match arg {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Ok(e),
            _ => Err(unsupported()),
        })
        .collect()
}

/// The character of `ESCAPE 'c'`; `None` for `ESCAPE ''`.
fn escape_char(e: &ast::Expr, parent: Location) -> Result<Option<char>, ExprError> {
    if let ast::Expr::Value(v) = e
        && let Some(s) = string_literal(&v.value)
    {
        let mut chars = s.chars();
        match (chars.next(), chars.next()) {
            (None, _) => return Ok(None),
            (Some(c), None) => return Ok(Some(c)),
            _ => {}
        }
    }
    Err(ExprError::at(
        position(e, parent),
        "ESCAPE needs a string of one character (or '' for none)",
    ))
}
