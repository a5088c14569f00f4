//! Expressions: their values and the names they can use.
//!
//! Inside a block, its parameters and `C`, `H`, `W` (the block's input at that call) are names;
//! at network level `C`, `H`, `W` are the shape flowing into the network's entry being checked.
//! Integers are exact (`/` rounds down); an expression that divides by zero or goes below zero
//! is an error at its tokens.

use std::collections::BTreeMap;
use std::fmt;

use proc_macro2::Span;

use super::{Shape, error};
use crate::ast::{BinOp, Expr};

/// A worked-out value.
#[derive(Clone, Debug, PartialEq)]
pub enum Val {
    Int(i128),
    Float(f64),
    Bool(bool),
    /// A word that is not a name in scope, such as `same`: the layer decides what it means.
    Word(String),
    Pair(i128, i128),
}

/// A value and the tokens it came from.
#[derive(Clone, Debug)]
pub struct Spanned {
    pub val: Val,
    pub span: Span,
}

impl fmt::Display for Val {
    /// As a user would write it: `3`, `0.5`, `true`, `same`, `(3, 1)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Val::Int(n) => write!(f, "{n}"),
            Val::Float(x) => write!(f, "{x:?}"),
            Val::Bool(b) => write!(f, "{b}"),
            Val::Word(w) => f.write_str(w),
            Val::Pair(h, w) => write!(f, "({h}, {w})"),
        }
    }
}

/// The words a layer argument may be without being a name: `padding = same`, `padding = valid`.
/// Any other identifier that is not a name in scope is an error where it is written.
const WORDS: &[&str] = &["same", "valid"];

/// The names an expression can use.
#[derive(Clone, Default)]
pub struct Env {
    /// Block parameters, by name.
    vars: BTreeMap<String, Val>,
    /// Inside a block, its parameters in declared order, for "not defined" errors (some may
    /// not be bound yet, while defaults are worked out).
    params: Option<Vec<String>>,
    /// What `C`, `H` and `W` are: the block's input, or the shape flowing into the network's
    /// entry; `None` where no shape is known (after an earlier error).
    shape: Option<Shape>,
}

impl Env {
    pub fn with_shape(&self, shape: Option<Shape>) -> Env {
        Env {
            vars: self.vars.clone(),
            params: self.params.clone(),
            shape,
        }
    }

    /// The environment of a block with parameters `params` (bound with [`Self::bind`]).
    pub fn in_block(mut self, params: Vec<String>) -> Env {
        self.params = Some(params);
        self
    }

    pub fn bind(&mut self, name: String, val: Val) {
        self.vars.insert(name, val);
    }

    fn lookup(&self, name: &str, span: Span) -> syn::Result<Val> {
        if let Some(val) = self.vars.get(name) {
            return Ok(val.clone());
        }
        let axis = match name {
            "C" => 0,
            "H" => 1,
            "W" => 2,
            _ if WORDS.contains(&name) => return Ok(Val::Word(name.to_string())),
            _ => return Err(self.undefined(name, span)),
        };
        match &self.shape {
            Some(Shape::Image { c, h, w }) => {
                let n = [*c, *h, *w].get(axis).copied().unwrap_or(0);
                Ok(Val::Int(n as i128))
            }
            Some(Shape::Flat(n)) if axis == 0 => Ok(Val::Int(*n as i128)),
            Some(Shape::Flat(n)) => Err(error(
                span,
                format!("`{name}` is not defined here: the input is flat, [{n}]"),
            )),
            None => Err(error(span, format!("`{name}` is not known here"))),
        }
    }

    /// Whether `expr` uses `C`, `H` or `W` (not shadowed by a parameter) where no shape is
    /// known: its errors would only repeat an earlier one.
    pub fn needs_shape(&self, expr: &Expr) -> bool {
        if self.shape.is_some() {
            return false;
        }
        let named = |ident: &syn::Ident| {
            let name = ident.to_string();
            ["C", "H", "W"].contains(&name.as_str()) && !self.vars.contains_key(&name)
        };
        // (Expressions are at most `MAX_EXPR_OPS` deep.)
        match expr {
            Expr::Ident(ident) | Expr::Part { base: ident, .. } => named(ident),
            Expr::Binary { lhs, rhs, .. } | Expr::Pair { h: lhs, w: rhs, .. } => {
                self.needs_shape(lhs) || self.needs_shape(rhs)
            }
            Expr::Paren { inner, .. } => self.needs_shape(inner),
            Expr::Int(_) | Expr::Float(_) | Expr::Bool(_) => false,
        }
    }

    /// Rule: an expression uses only names defined where it is written.
    fn undefined(&self, name: &str, span: Span) -> syn::Error {
        let message = match &self.params {
            Some(params) if params.iter().any(|p| p == name) => format!(
                "`{name}` is not defined yet: a default can use only the parameters before it, \
                 and `C`, `H`, `W`"
            ),
            Some(params) if params.is_empty() => format!(
                "`{name}` is not defined here; the block has no parameters (its names are `C`, \
                 `H`, `W`, the shape of its input)"
            ),
            Some(params) => format!(
                "`{name}` is not defined here; the block's parameters are {} (and `C`, `H`, `W` \
                 are the shape of its input)",
                params
                    .iter()
                    .map(|p| format!("`{p}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            None => format!(
                "`{name}` is not defined here; outside blocks the only names are `C`, `H`, `W`, \
                 the shape flowing in"
            ),
        };
        error(span, message)
    }

    pub fn eval(&self, expr: &Expr) -> syn::Result<Spanned> {
        let span = expr.span();
        let val = match expr {
            Expr::Int(lit) => Val::Int(lit.base10_parse()?),
            Expr::Float(lit) => Val::Float(finite(lit.base10_parse()?, expr)?),
            Expr::Bool(lit) => Val::Bool(lit.value),
            Expr::Ident(ident) => self.lookup(&ident.to_string(), ident.span())?,
            Expr::Part { base, index, .. } => {
                let part: usize = index.base10_parse()?;
                match (self.lookup(&base.to_string(), base.span())?, part) {
                    (Val::Pair(h, _), 0) => Val::Int(h),
                    (Val::Pair(_, w), 1) => Val::Int(w),
                    (Val::Pair(..), _) => {
                        return Err(error(
                            index.span(),
                            format!("a pair has parts `.0` and `.1`, not `.{part}`"),
                        ));
                    }
                    (other, _) => {
                        return Err(error(
                            base.span(),
                            format!(
                                "`{base}` is {other}, not a pair: `{base}.{part}` takes a part of a pair such as `(96, 128)`"
                            ),
                        ));
                    }
                }
            }
            Expr::Paren { inner, .. } => self.eval(inner)?.val,
            Expr::Pair { h, w, .. } => {
                let (h, w) = (self.eval(h)?, self.eval(w)?);
                match (h.val, w.val) {
                    (Val::Int(a), Val::Int(b)) => Val::Pair(a, b),
                    (Val::Int(_), other) => return Err(not_int(w.span, &other)),
                    (other, _) => return Err(not_int(h.span, &other)),
                }
            }
            Expr::Binary { lhs, op, rhs } => {
                let (a, b) = (self.eval(lhs)?, self.eval(rhs)?);
                match binary(a, *op, b, span)? {
                    Val::Float(x) => Val::Float(finite(x, expr)?),
                    val => val,
                }
            }
        };
        Ok(Spanned { val, span })
    }
}

/// Rule: a number is finite (`1e400`, `0.0 / 0.0` are not).
fn finite(x: f64, expr: &Expr) -> syn::Result<f64> {
    if x.is_finite() {
        Ok(x)
    } else {
        let text = quote::ToTokens::to_token_stream(expr).to_string();
        Err(error(
            expr.span(),
            format!("`{text}` is {x:?}, not a finite number"),
        ))
    }
}

fn not_int(span: Span, val: &Val) -> syn::Error {
    error(span, format!("expected an integer, not {val}"))
}

fn binary(a: Spanned, op: BinOp, b: Spanned, span: Span) -> syn::Result<Val> {
    use Val::{Bool, Float, Int};
    let symbol = op.symbol();
    let mismatch = || {
        error(
            span,
            format!(
                "`{symbol}` cannot take {} and {}",
                describe_kind(&a.val),
                describe_kind(&b.val)
            ),
        )
    };
    Ok(match (op, &a.val, &b.val) {
        (BinOp::Add(_), Int(x), Int(y)) => {
            Int(x.checked_add(*y).ok_or_else(|| overflow(x, "+", y, span))?)
        }
        (BinOp::Sub(_), Int(x), Int(y)) => {
            // Sizes are never negative: say so where it happens.
            if x < y {
                return Err(error(
                    span,
                    format!("{x} - {y} is below zero; sizes and counts cannot be negative"),
                ));
            }
            Int(x.checked_sub(*y).ok_or_else(|| overflow(x, "-", y, span))?)
        }
        (BinOp::Mul(_), Int(x), Int(y)) => {
            Int(x.checked_mul(*y).ok_or_else(|| overflow(x, "*", y, span))?)
        }
        (BinOp::Div(_), Int(_), Int(0)) => {
            return Err(error(b.span, format!("{} / 0 divides by zero", a.val)));
        }
        (BinOp::Div(_), Int(x), Int(y)) => {
            Int(x.checked_div(*y).ok_or_else(|| overflow(x, "/", y, span))?)
        }
        (BinOp::Add(_), Float(x), Float(y)) => Float(x + y),
        (BinOp::Sub(_), Float(x), Float(y)) => Float(x - y),
        (BinOp::Mul(_), Float(x), Float(y)) => Float(x * y),
        (BinOp::Div(_), Float(x), Float(y)) => Float(x / y),
        (BinOp::Eq(_), x, y) if same_kind(x, y) => Bool(x == y),
        (BinOp::Ne(_), x, y) if same_kind(x, y) => Bool(x != y),
        (BinOp::Lt(_), Int(x), Int(y)) => Bool(x < y),
        (BinOp::Le(_), Int(x), Int(y)) => Bool(x <= y),
        (BinOp::Gt(_), Int(x), Int(y)) => Bool(x > y),
        (BinOp::Ge(_), Int(x), Int(y)) => Bool(x >= y),
        (BinOp::And(_), Bool(x), Bool(y)) => Bool(*x && *y),
        (BinOp::Or(_), Bool(x), Bool(y)) => Bool(*x || *y),
        _ => return Err(mismatch()),
    })
}

fn overflow(x: &i128, symbol: &str, y: &i128, span: Span) -> syn::Error {
    error(
        span,
        format!(
            "{x} {symbol} {y} overflows: the result is beyond {}",
            i128::MAX
        ),
    )
}

fn same_kind(a: &Val, b: &Val) -> bool {
    std::mem::discriminant(a) == std::mem::discriminant(b)
}

fn describe_kind(val: &Val) -> String {
    match val {
        Val::Int(n) => format!("the integer {n}"),
        Val::Float(x) => format!("the number {x:?}"),
        Val::Bool(b) => format!("`{b}`"),
        Val::Word(w) => format!("the word `{w}`"),
        Val::Pair(h, w) => format!("the pair ({h}, {w})"),
    }
}
