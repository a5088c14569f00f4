//! Fields and checkpoint keys.
//!
//! A scope is a generated struct: the network, a block's body at one call, a named group, a
//! `repeat` and each of its copies. Within a scope:
//! - a named entry (`conv3: conv2d(...)`, `b2: { ... }`) is the field of that name;
//! - in the network and in block bodies, an unnamed layer with parameters is named by kind and
//!   ordinal among the layers of its kind in that scope (`conv1`, `bn2`, `linear1`,
//!   `conv_transpose1`), an unnamed block call by the block in snake case and its ordinal
//!   (`residual1`), an unnamed `repeat` as `repeat1`;
//! - in a group and in a repeat, an unnamed entry is numbered by its position, as PyTorch's
//!   `nn.Sequential` numbers its children: every entry takes the next number, stateless ones
//!   too (the Rust field is `_N`, the key `N`).
//!
//! Unnamed stateless layers have no field. `residual`, `concat`, `sum`, `scale`, `if` and
//! unnamed groups are not scopes: their layers are named in the scope they are written in.
//! Checkpoint keys are the dotted paths (`b3.0.conv1.weight`), since dfdx joins the names of
//! nested collections with dots.

use std::collections::BTreeMap;

use proc_macro2::Span;
use quote::format_ident;
use syn::Ident;

use super::error;
use crate::ir::{Field, Path};

/// The naming state of one scope while its entries are walked.
pub struct ScopeNames {
    /// Numbered by position (group, repeat) rather than by kind and ordinal.
    positional: bool,
    /// The Rust path from the network to this scope's struct.
    pub path: Vec<Ident>,
    /// The checkpoint key prefix of this scope (`b3.0.`), empty for the network.
    pub key: String,
    pub fields: Vec<Field>,
    /// Every name given so far, with where it came from and whether the user wrote it.
    taken: BTreeMap<String, (Span, bool)>,
    ordinals: BTreeMap<String, usize>,
    next_index: usize,
}

/// The name an entry gets: its Rust field and its key in the scope.
#[derive(Clone)]
pub struct Name {
    pub ident: Ident,
    pub key: String,
}

impl ScopeNames {
    pub fn new(positional: bool, path: Vec<Ident>, key: String) -> Self {
        ScopeNames {
            positional,
            path,
            key,
            fields: Vec::new(),
            taken: BTreeMap::new(),
            ordinals: BTreeMap::new(),
            next_index: 0,
        }
    }

    /// Names one entry. `given` is the user's name; `prefix` the default's kind (`conv`,
    /// `residual`) for entries that need a field; `needs_field` false for stateless layers,
    /// which get a field only when named. Every entry takes a position in a positional scope.
    pub fn name(
        &mut self,
        given: Option<&Ident>,
        prefix: Option<&str>,
        needs_field: bool,
        span: Span,
    ) -> syn::Result<Option<Name>> {
        let index = self.next_index;
        self.next_index += 1;
        let ordinal = prefix.map(|prefix| {
            let n = self.ordinals.entry(prefix.to_string()).or_default();
            *n += 1;
            *n
        });
        let name = match (given, self.positional) {
            (Some(ident), _) => Name {
                ident: ident.clone(),
                key: ident.to_string(),
            },
            (None, _) if !needs_field => return Ok(None),
            (None, true) => Name {
                ident: format_ident!("_{index}", span = span),
                key: index.to_string(),
            },
            (None, false) => {
                let prefix = prefix.expect("an entry that needs a field has a default prefix");
                let ident = format_ident!("{prefix}{}", ordinal.unwrap_or(1), span = span);
                Name {
                    key: ident.to_string(),
                    ident,
                }
            }
        };
        // Rule: names are unique in a scope, given ones and defaults alike.
        let given_here = given.is_some();
        if let Some(&(first_span, first_given)) = self.taken.get(&name.key) {
            let message = if given_here && first_given {
                format!("layer name `{}` is used twice", name.key)
            } else {
                format!(
                    "layer name `{}` is already the default name of another layer (unnamed layers \
                     with parameters are conv1, conv2, ..., conv_transpose1, ..., linear1, ..., bn1, ... \
                     by kind)",
                    name.key
                )
            };
            // Point at the name the user wrote; if both were, at the second one.
            let at = if given_here || !first_given {
                given.map_or(span, Ident::span)
            } else {
                first_span
            };
            return Err(error(at, message));
        }
        self.taken.insert(
            name.key.clone(),
            (given.map_or(span, Ident::span), given_here),
        );
        Ok(Some(name))
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

/// `Residual` -> `residual`, `DenseBlock` -> `dense_block`.
pub fn snake_case(name: &str) -> String {
    let mut out = String::new();
    for (i, ch) in name.chars().enumerate() {
        if ch.is_uppercase() {
            if i > 0 && !out.ends_with('_') {
                out.push('_');
            }
            out.extend(ch.to_lowercase());
        } else {
            out.push(ch);
        }
    }
    out
}
