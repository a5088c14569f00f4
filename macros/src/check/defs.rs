//! User blocks: their definitions, and binding a call's arguments to a block's parameters.
//!
//! A block is checked once per call, with the call's arguments and input shape; calls with the
//! same arguments on the same input share one generated struct (see `walk`).

use std::collections::{BTreeMap, BTreeSet};

use super::Errors;
use super::args::EvalArg;
use super::error;
use super::expr::{Env, Val};
use super::layers::{closest, is_layer};
use crate::ast::{self, BlockDef, Op};

/// The blocks of an invocation, by name.
pub struct Blocks<'a> {
    defs: BTreeMap<String, &'a BlockDef>,
}

/// Names that mean something else inside a block.
const RESERVED: &[&str] = &["C", "H", "W"];

impl<'a> Blocks<'a> {
    pub fn new(defs: &'a [BlockDef]) -> syn::Result<Self> {
        let mut errors = Errors::default();
        let mut map = BTreeMap::new();
        for def in defs {
            let name = def.ident.to_string();
            // Rule: a block is not named like a layer (calls could not tell them apart).
            if is_layer(&name) {
                errors.push(error(
                    def.ident.span(),
                    format!("a block cannot be named `{name}`: that is a layer"),
                ));
                continue;
            }
            // Rule: block names are unique in an invocation.
            if map.insert(name.clone(), def).is_some() {
                errors.push(error(
                    def.ident.span(),
                    format!("block `{name}` is defined twice"),
                ));
            }
            // Rule: parameters are unique, and not `C`, `H`, `W` (the block's input shape).
            let mut seen = BTreeSet::new();
            for param in &def.params {
                let p = param.ident.to_string();
                if RESERVED.contains(&p.as_str()) {
                    errors.push(error(
                        param.ident.span(),
                        format!(
                            "a parameter cannot be named `{p}`: inside a block `C`, `H` and `W` \
                             are the shape of its input"
                        ),
                    ));
                } else if !seen.insert(p.clone()) {
                    errors.push(error(
                        param.ident.span(),
                        format!("parameter `{p}` is declared twice"),
                    ));
                }
            }
        }
        errors.finish(Blocks { defs: map })
    }

    pub fn get(&self, name: &str) -> Option<&'a BlockDef> {
        self.defs.get(name).copied()
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.defs.keys().map(String::as_str)
    }

    /// The suggestion for an unknown layer or block name, if one is close.
    pub fn closest(&self, name: &str) -> Option<&str> {
        closest(
            name,
            super::layers::LAYERS.iter().copied().chain(self.names()),
        )
    }
}

/// The call's environment: the block's parameters bound to the call's arguments (defaults
/// for the rest, worked out in order, so a default may use earlier parameters and `C`, `H`,
/// `W`), and `C`, `H`, `W` bound to `input` (already in `base`). Also returns the bound
/// values in parameter order, which name the instance.
pub fn bind(
    def: &BlockDef,
    op: &Op,
    args: &[EvalArg],
    base: &Env,
) -> syn::Result<(Env, Vec<(String, Val)>)> {
    let mut errors = Errors::default();
    let name = def.ident.to_string();
    let params: Vec<&ast::Param> = def.params.iter().collect();
    let signature = signature(def);
    let mut given: BTreeMap<String, Val> = BTreeMap::new();
    let mut positional = 0;
    for arg in args {
        if let Some(from) = &arg.from {
            errors.push(error(
                from.span,
                format!(
                    "a block call takes no `IN =>` count; `{name}` works on its input as it is"
                ),
            ));
            continue;
        }
        let param = match &arg.key {
            Some((key, span)) => {
                // Rule: a named argument is one of the block's parameters.
                if !params.iter().any(|p| p.ident == key) {
                    let hint = closest(
                        key,
                        params
                            .iter()
                            .map(|p| p.ident.to_string())
                            .collect::<Vec<_>>()
                            .iter()
                            .map(String::as_str),
                    )
                    .map(|c| format!("; did you mean `{c}`?"))
                    .unwrap_or_default();
                    errors.push(error(
                        *span,
                        format!("`{name}` has no parameter `{key}`{hint} (it is `{signature}`)"),
                    ));
                    continue;
                }
                (key.clone(), *span)
            }
            None => {
                // Rule: no more positional arguments than parameters.
                let Some(param) = params.get(positional) else {
                    errors.push(error(
                        arg.span,
                        format!(
                            "`{name}` takes {} argument{}, but this is argument {} (it is `{signature}`)",
                            params.len(),
                            if params.len() == 1 { "" } else { "s" },
                            crate::size::ordinal(positional)
                        ),
                    ));
                    positional = crate::size::ordinal(positional);
                    continue;
                };
                positional = crate::size::ordinal(positional);
                (param.ident.to_string(), arg.span)
            }
        };
        // Rule: each parameter is given once.
        if given
            .insert(param.0.clone(), arg.value.val.clone())
            .is_some()
        {
            errors.push(error(
                param.1,
                format!("argument `{}` of `{name}` is given twice", param.0),
            ));
        }
    }
    let mut env = base
        .clone()
        .in_block(params.iter().map(|p| p.ident.to_string()).collect());
    let mut bound = Vec::new();
    for param in &params {
        let p = param.ident.to_string();
        let val = match (given.remove(&p), &param.default) {
            (Some(val), _) => Some(val),
            (None, Some(default)) => errors.ok(env.eval(default)).map(|v| v.val),
            (None, None) => {
                // Rule: a parameter without a default is given.
                errors.push(syn::Error::new_spanned(
                    op,
                    format!("missing argument `{p}` of `{signature}`"),
                ));
                None
            }
        };
        if let Some(val) = val {
            env.bind(p.clone(), val.clone());
            bound.push((p, val));
        }
    }
    errors.finish((env, bound))
}

/// `Residual(c, use_1x1conv = false, stride = 1)`, as declared.
pub fn signature(def: &BlockDef) -> String {
    let params: Vec<String> = def
        .params
        .iter()
        .map(|p| match &p.default {
            Some(default) => {
                let text = quote::ToTokens::to_token_stream(default).to_string();
                format!("{} = {text}", p.ident)
            }
            None => p.ident.to_string(),
        })
        .collect();
    format!("{}({})", def.ident, params.join(", "))
}
