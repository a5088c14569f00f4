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

/// The names an expression can use.
#[derive(Clone, Default)]
pub struct Env {
    /// Block parameters, by name.
    vars: BTreeMap<String, Val>,
    /// What `C`, `H` and `W` are: the block's input, or the shape flowing into the network's
    /// entry; `None` where no shape is known (after an earlier error).
    shape: Option<Shape>,
}

impl Env {
    pub fn with_shape(&self, shape: Option<Shape>) -> Env {
        Env {
            vars: self.vars.clone(),
            shape,
        }
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
            _ => return Ok(Val::Word(name.to_string())),
        };
        match &self.shape {
            Some(Shape::Image { c, h, w }) => Ok(Val::Int([*c, *h, *w][axis] as i128)),
            Some(Shape::Flat(n)) if axis == 0 => Ok(Val::Int(*n as i128)),
            Some(Shape::Flat(n)) => Err(error(
                span,
                format!("`{name}` is not defined here: the input is flat, [{n}]"),
            )),
            None => Err(error(span, format!("`{name}` is not known here"))),
        }
    }

    pub fn eval(&self, expr: &Expr) -> syn::Result<Spanned> {
        let span = expr.span();
        let val = match expr {
            Expr::Int(lit) => Val::Int(lit.base10_parse()?),
            Expr::Float(lit) => Val::Float(lit.base10_parse()?),
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
                binary(a, *op, b, span)?
            }
        };
        Ok(Spanned { val, span })
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
        (BinOp::Add(_), Int(x), Int(y)) => Int(x + y),
        (BinOp::Sub(_), Int(x), Int(y)) => {
            // Sizes are never negative: say so where it happens.
            if x < y {
                return Err(error(
                    span,
                    format!("{x} - {y} is below zero; sizes and counts cannot be negative"),
                ));
            }
            Int(x - y)
        }
        (BinOp::Mul(_), Int(x), Int(y)) => Int(x * y),
        (BinOp::Div(_), Int(_), Int(0)) => {
            return Err(error(b.span, format!("{} / 0 divides by zero", a.val)));
        }
        (BinOp::Div(_), Int(x), Int(y)) => Int(x / y),
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

fn same_kind(a: &Val, b: &Val) -> bool {
    std::mem::discriminant(a) == std::mem::discriminant(b)
}

fn describe_kind(val: &Val) -> String {
    match val {
        Val::Int(n) => format!("the integer {n}"),
        Val::Float(x) => format!("the number {x:?}"),
        Val::Bool(b) => format!("`{b}`"),
        Val::Word(w) => format!("the unknown name `{w}`"),
        Val::Pair(h, w) => format!("the pair ({h}, {w})"),
    }
}
