//! Fields and checkpoint keys: PyTorch's rule, so that a `cnn!` network and the PyTorch module
//! that mirrors it give every tensor the same key.
//!
//! A scope is a generated struct: the network, a block's body at one call, a group, a named
//! `repeat` and each of its copies. Within a scope, as in PyTorch's `nn.Sequential`, every entry
//! takes the next number from 0 (stateless layers and named entries too, as `append` after
//! `add_module` counts them); an unnamed entry's key is its number (the Rust field `_N`), a
//! named one's its name (an attribute, or `add_module(name, ...)`).
//!
//! Unnamed stateless layers have no field. `residual`, `concat`, `sum`, `scale`, `if`, an
//! unnamed `repeat` (whose copies' entries are spliced in, as `nn.Sequential(*layers)`) and the
//! group that is one branch of a `concat` or `sum` are not scopes: their entries are numbered
//! in the scope they are written in; `identity` takes no number. Checkpoint keys are the
//! dotted paths (`net.b3.0.conv1.weight`), since dfdx joins the names of nested collections
//! with dots.

use std::collections::BTreeSet;

use proc_macro2::Span;
use quote::format_ident;
use syn::Ident;

use super::error;
use crate::ir::{Field, Path};

/// The naming state of one scope while its entries are walked.
pub struct ScopeNames {
    /// The Rust path from the network to this scope's struct.
    pub path: Vec<Ident>,
    /// The checkpoint key prefix of this scope (`b3.0.`), empty for the network.
    pub key: String,
    pub fields: Vec<Field>,
    /// Every key given so far.
    taken: BTreeSet<String>,
    next_index: usize,
}

/// Rule: a name is not `_N` (the field of the unnamed entry N, which a name would clash with,
/// in whichever order they come) nor starts with `__` (the generated `__marker` field).
fn reserved(ident: &Ident) -> bool {
    let name = ident.to_string();
    let name = name.strip_prefix("r#").unwrap_or(&name);
    name.starts_with("__")
        || name
            .strip_prefix('_')
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// The name an entry gets: its Rust field and its key in the scope.
#[derive(Clone)]
pub struct Name {
    pub ident: Ident,
    pub key: String,
}

impl ScopeNames {
    pub fn new(path: Vec<Ident>, key: String) -> Self {
        ScopeNames {
            path,
            key,
            fields: Vec::new(),
            taken: BTreeSet::new(),
            next_index: 0,
        }
    }

    /// Names one entry, which takes the next number. `given` is the user's name;
    /// `needs_field` is false for stateless layers, which get a field only when named.
    pub fn name(
        &mut self,
        given: Option<&Ident>,
        needs_field: bool,
        span: Span,
    ) -> syn::Result<Option<Name>> {
        let index = self.next_index;
        // (At most `MAX_ENTRIES`: never near overflow.)
        self.next_index = index.saturating_add(1);
        let name = match given {
            Some(ident) if reserved(ident) => {
                return Err(error(
                    ident.span(),
                    format!(
                        "layer name `{ident}` is reserved: unnamed entries are the fields `_0`, \
                         `_1`, ..., and names starting with `__` are the macro's; choose another \
                         name"
                    ),
                ));
            }
            Some(ident) => Name {
                ident: ident.clone(),
                key: ident.to_string(),
            },
            None if !needs_field => return Ok(None),
            None => Name {
                ident: format_ident!("_{index}", span = span),
                key: index.to_string(),
            },
        };
        // Rule: names are unique in a scope. (Numbers cannot meet names: a name is an
        // identifier.)
        if !self.taken.insert(name.key.clone()) {
            let at = given.map_or(span, Ident::span);
            return Err(error(
                at,
                format!("layer name `{}` is used twice", name.key),
            ));
        }
        Ok(Some(name))
    }

    /// Names an entry that is always a field (a block call, a group, a repeat, a copy).
    pub fn field_name(&mut self, given: Option<&Ident>, span: Span) -> syn::Result<Name> {
        self.name(given, true, span)?
            .ok_or_else(|| error(span, "this entry has no field"))
    }

    /// The path from the network to a field of this scope.
    pub fn path_to(&self, name: &Name) -> Path {
        let mut path = self.path.clone();
        path.push(name.ident.clone());
        Path(path)
    }

    /// The dotted key of a field of this scope, from the network.
    pub fn key_of(&self, name: &Name) -> String {
        format!("{}{}", self.key, name.key)
    }
}

/// Rule: the networks of one invocation have distinct names, and none is named like the input
/// traits generated for another (`{Net}Input`, `{Net}TrainInput`): they are all items of the
/// module the macro is invoked in, where rustc would report the clash at `cnn!` itself.
pub fn networks(nets: &[crate::ast::Net], errors: &mut super::Errors) {
    let mut seen = BTreeSet::new();
    for net in nets {
        if !seen.insert(net.ident.to_string()) {
            errors.push(error(
                net.ident.span(),
                format!(
                    "network `{}` is defined twice in this invocation",
                    net.ident
                ),
            ));
        }
    }
    for net in nets {
        let name = net.ident.to_string();
        for suffix in ["Input", "TrainInput"] {
            let owner = name
                .strip_suffix(suffix)
                .filter(|owner| seen.contains(*owner));
            if let Some(owner) = owner {
                errors.push(error(
                    net.ident.span(),
                    format!(
                        "a network cannot be named `{name}`: `cnn!` generates the trait \
                         `{name}` for the network `{owner}`; choose another name"
                    ),
                ));
            }
        }
    }
}
