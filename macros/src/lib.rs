//! The `cnn!` macro, re-exported by the `cnn` crate: see its documentation for the grammar.
//!
//! `ast` is the syntax, `check` the shapes and rules (the only place that decides), `expand` the
//! generated code.

mod ast;
mod check;
mod expand;

use proc_macro::TokenStream;
use syn::parse_macro_input;

/// Declares convolutional networks whose shapes are checked at compile time. Documented in the
/// `cnn` crate, which re-exports it.
#[proc_macro]
pub fn cnn(input: TokenStream) -> TokenStream {
    let ast = parse_macro_input!(input as ast::Input);
    check::net(&ast)
        .map(|plan| expand::net(&plan))
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}
