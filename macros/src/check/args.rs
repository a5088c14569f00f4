//! Arguments: worked out in the caller's environment, then read once by the layer or block
//! that takes them. Unknown and duplicated names and extra positional arguments are errors,
//! collected with the others of the same layer.

use std::collections::BTreeMap;

use proc_macro2::Span;
use syn::spanned::Spanned as _;

use super::Errors;
use super::error;
use super::expr::{Env, Spanned, Val};
use crate::ast::{Arg, Op};

/// One argument with its values worked out.
pub struct EvalArg {
    /// `kernel` in `kernel = 3`.
    pub key: Option<(String, Span)>,
    /// `IN` in `IN => OUT`.
    pub from: Option<Spanned>,
    pub value: Spanned,
    /// The whole argument, for errors about it.
    pub span: Span,
}

/// Works out every argument of `op`; `None` when one fails. Each failure is reported, but for
/// those that use `C`, `H` or `W` where no shape is known (after an earlier error, which they
/// would only repeat).
pub fn eval_args(op: &Op, env: &Env, errors: &mut Errors) -> Option<Vec<EvalArg>> {
    let mut failed = false;
    let args = op
        .args()
        .filter_map(|arg| {
            let span = arg.span();
            let result = match arg {
                Arg::Named { key, value, .. } => env.eval(value).map(|value| EvalArg {
                    key: Some((key.to_string(), key.span())),
                    from: None,
                    value,
                    span,
                }),
                Arg::Positional { from, value } => {
                    let from = from.as_ref().map(|(from, _)| env.eval(from)).transpose();
                    from.and_then(|from| {
                        env.eval(value).map(|value| EvalArg {
                            key: None,
                            from,
                            value,
                            span,
                        })
                    })
                }
            };
            match result {
                Ok(arg) => Some(arg),
                Err(e) => {
                    failed = true;
                    let values = match arg {
                        Arg::Named { value, .. } => vec![value],
                        Arg::Positional { from, value } => {
                            from.iter().map(|(from, _)| from).chain([value]).collect()
                        }
                    };
                    if !values.iter().any(|v| env.needs_shape(v)) {
                        errors.push(e);
                    }
                    None
                }
            }
        })
        .collect();
    (!failed).then_some(args)
}

#[derive(Clone, Copy)]
pub struct Num {
    pub value: usize,
    pub span: Span,
}

#[derive(Clone, Copy)]
pub struct Pair {
    pub h: usize,
    pub w: usize,
    pub span: Span,
}

/// A layer's arguments, read once.
pub struct Args<'a> {
    pub op: &'a Op,
    positional: std::vec::IntoIter<(Option<&'a Spanned>, &'a Spanned)>,
    named: BTreeMap<String, &'a Spanned>,
    pub errors: Errors,
}

impl<'a> Args<'a> {
    pub fn read(op: &'a Op, args: &'a [EvalArg], keys: &[&str], max_positional: usize) -> Self {
        let layer = op.ident.to_string();
        let mut errors = Errors::default();
        let mut positional = Vec::new();
        let mut named = BTreeMap::new();
        for arg in args {
            match &arg.key {
                Some((name, span)) => {
                    // Rule: every named argument is one the layer knows, given once.
                    if !keys.contains(&name.as_str()) {
                        let expected = match keys {
                            [] => format!("{layer} takes no named arguments"),
                            _ => format!("expected one of: {}", keys.join(", ")),
                        };
                        errors.push(error(
                            *span,
                            format!("unknown argument `{name}` for {layer}; {expected}"),
                        ));
                    } else if named.insert(name.clone(), &arg.value).is_some() {
                        errors.push(error(*span, format!("duplicate argument `{name}`")));
                    }
                }
                None => {
                    if positional.len() == max_positional {
                        let message = match max_positional {
                            0 => format!("{layer} takes no positional arguments"),
                            _ => format!("{layer} takes one positional argument"),
                        };
                        errors.push(error(arg.span, message));
                    } else {
                        positional.push((arg.from.as_ref(), &arg.value));
                    }
                }
            }
        }
        Args {
            op,
            positional: positional.into_iter(),
            named,
            errors,
        }
    }

    pub fn named(&mut self, key: &str) -> Option<&'a Spanned> {
        self.named.get(key).copied()
    }

    /// The positional argument; `IN =>` is allowed only where `arrow` says so.
    pub fn positional(&mut self, arrow: bool) -> Option<&'a Spanned> {
        let (from, value) = self.positional.next()?;
        if let (Some(from), false) = (from, arrow) {
            self.errors.push(error(
                from.span,
                format!("{} takes no `IN =>` count", self.op.ident),
            ));
        }
        Some(value)
    }

    /// `[IN =>] OUT`: the explicit input count, checked later, and the output count.
    pub fn channels(&mut self, what: &str, usage: &str) -> (Option<Num>, Option<Num>) {
        let Some((from, value)) = self.positional.next() else {
            self.errors.push(syn::Error::new_spanned(
                self.op,
                format!("missing the {what}, as in `{usage}`"),
            ));
            return (None, None);
        };
        let in_c = from.and_then(|from| self.errors.ok(num(from, "the in-count")));
        (in_c, self.errors.ok(num(value, what)))
    }

    /// `[OUT]`: an optional count, checked against the actual one later.
    pub fn optional_count(&mut self, what: &str) -> Option<Num> {
        let count = self.positional(false).map(|v| num(v, what)).transpose();
        self.errors.ok(count).flatten()
    }

    pub fn required(&mut self, key: &str, usage: &str) -> Option<&'a Spanned> {
        let value = self.named(key);
        if value.is_none() {
            self.errors.push(syn::Error::new_spanned(
                self.op,
                format!("missing argument `{key}`, as in `{usage}`"),
            ));
        }
        value
    }

    pub fn pair_or(&mut self, key: &str, default: usize) -> Option<Pair> {
        match self.named(key) {
            Some(value) => self.errors.ok(pair(value, key)),
            None => Some(Pair {
                h: default,
                w: default,
                span: self.op.span(),
            }),
        }
    }

    pub fn bool_or(&mut self, key: &str, default: bool) -> Option<bool> {
        match self.named(key) {
            Some(Spanned {
                val: Val::Bool(b), ..
            }) => Some(*b),
            Some(value) => {
                self.errors.push(error(
                    value.span,
                    format!("expected `true` or `false` for `{key}`"),
                ));
                None
            }
            None => Some(default),
        }
    }

    /// `groups`, 1 when not given.
    pub fn groups(&mut self) -> Option<Num> {
        match self.named("groups") {
            Some(value) => self.errors.ok(num(value, "groups")),
            None => Some(Num {
                value: 1,
                span: self.op.span(),
            }),
        }
    }

    /// Rule: a convolution's kernel, stride, dilation and groups are at least 1; so are its
    /// out-channels.
    pub fn conv_at_least_one(
        &mut self,
        [kernel, stride, dilation]: [Option<Pair>; 3],
        groups: Option<Num>,
        out_c: Option<Num>,
    ) {
        for (what, pair) in [
            ("kernel", kernel),
            ("stride", stride),
            ("dilation", dilation),
        ] {
            if let Some(pair) = pair {
                self.at_least_one(what, &pair);
            }
        }
        if let Some(groups) = groups.filter(|g| g.value == 0) {
            self.errors
                .push(error(groups.span, "groups must be at least 1, not 0"));
        }
        if let Some(Num { value: 0, span }) = out_c {
            self.errors
                .push(error(span, "out-channels must be at least 1, not 0"));
        }
    }

    pub fn at_least_one(&mut self, what: &str, pair: &Pair) {
        if pair.h == 0 || pair.w == 0 {
            let got = if pair.h == pair.w {
                pair.h.to_string()
            } else {
                format!("({}, {})", pair.h, pair.w)
            };
            self.errors.push(error(
                pair.span,
                format!("{what} must be at least 1, not {got}"),
            ));
        }
    }

    pub fn finish(self) -> syn::Result<()> {
        self.errors.finish(())
    }
}

pub fn num(value: &Spanned, what: &str) -> syn::Result<Num> {
    match value.val {
        Val::Int(n) => Ok(Num {
            value: usize::try_from(n).map_err(|_| error(value.span, "number out of range"))?,
            span: value.span,
        }),
        _ => Err(error(value.span, format!("expected an integer for {what}"))),
    }
}

pub fn pair(value: &Spanned, what: &str) -> syn::Result<Pair> {
    let size = |n: i128| usize::try_from(n).map_err(|_| error(value.span, "number out of range"));
    match value.val {
        Val::Int(n) => Ok(Pair {
            h: size(n)?,
            w: size(n)?,
            span: value.span,
        }),
        Val::Pair(h, w) => Ok(Pair {
            h: size(h)?,
            w: size(w)?,
            span: value.span,
        }),
        _ => Err(error(
            value.span,
            format!("expected an integer or a pair `(h, w)` for `{what}`"),
        )),
    }
}

pub fn float(value: &Spanned, what: &str) -> syn::Result<f64> {
    match value.val {
        Val::Float(x) => Ok(x),
        Val::Int(n) => Ok(n as f64),
        _ => Err(error(value.span, format!("expected a number for {what}"))),
    }
}

pub fn probability(value: &Spanned) -> syn::Result<f64> {
    let p = float(value, "the dropout probability")?;
    // Rule: a dropout probability is in [0, 1); 1 would zero every activation.
    if (0.0..1.0).contains(&p) {
        Ok(p)
    } else {
        Err(error(
            value.span,
            format!("dropout probability must be in [0, 1), not {p}"),
        ))
    }
}

/// The arguments as worked out, normalised for the summary: `(6, kernel=5, padding=2)`, or
/// nothing without arguments.
pub fn describe(op: &Op, args: &[EvalArg]) -> String {
    let mut out = op.ident.to_string();
    if !args.is_empty() {
        let parts: Vec<String> = args
            .iter()
            .map(|arg| match (&arg.key, &arg.from) {
                (Some((key, _)), _) => format!("{key}={}", arg.value.val),
                (None, Some(from)) => format!("{} => {}", from.val, arg.value.val),
                (None, None) => arg.value.val.to_string(),
            })
            .collect();
        out += &format!("({})", parts.join(", "));
    }
    out
}
