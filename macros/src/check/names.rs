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
        self.next_index += 1;
        let name = match given {
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
