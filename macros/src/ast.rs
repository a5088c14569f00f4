//! Syntax only: the invocation as written. Every node keeps its tokens, so that `check` can point
//! its errors at them; nothing here knows which layers exist or what their arguments mean.

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, TokenStreamExt};
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::{
    Attribute, Ident, Lit, LitBool, LitFloat, LitInt, Token, Visibility, braced, bracketed,
    parenthesized, token,
};

/// A whole invocation: any number of networks.
///
/// ```text
/// input := net*
/// ```
pub struct Input {
    pub nets: Vec<Net>,
}

/// One network.
///
/// ```text
/// net   := attr* VIS `struct` IDENT `:` dims (`->` dims)? `{` stack `}`
/// ```
pub struct Net {
    pub attrs: Vec<Attribute>,
    pub vis: Visibility,
    pub ident: Ident,
    /// The shape of one input image, `[C, H, W]`.
    pub input: Dims,
    /// The declared output shape of one image, checked when given.
    pub output: Option<Dims>,
    pub body: Stack,
}

/// A shape written as a list of integers, `[16, 5, 5]`.
///
/// ```text
/// dims  := `[` (INT `,`)* INT? `]`
/// ```
pub struct Dims {
    pub bracket: token::Bracket,
    pub dims: Punctuated<LitInt, Token![,]>,
}

/// Layers applied one after the other.
///
/// ```text
/// stack := (layer `,`)* layer?
/// ```
pub struct Stack {
    pub layers: Punctuated<Layer, Token![,]>,
}

/// One entry of a stack: `c1: conv2d(6, kernel = 5) -> [6, 24, 24]`.
///
/// ```text
/// layer := (IDENT `:`)? kind (`->` dims)?
/// ```
pub struct Layer {
    /// `c1:`, the field the layer is stored in.
    pub name: Option<Ident>,
    pub kind: Kind,
    /// `-> [6, 24, 24]`, the layer's output shape, checked.
    pub expect: Option<Dims>,
}

/// What a stack entry is. Only single layers exist today; blocks (residual connections, parallel
/// branches joined by concatenation, repeats) will be further variants holding `Stack`s, written
/// `IDENT { stack }` or `IDENT(args) { stack }`, which the current grammar never accepts, so adding
/// them breaks nothing.
pub enum Kind {
    Op(Op),
}

/// A layer by name, with optional arguments: `relu`, `conv2d(6, kernel = 5)`.
///
/// ```text
/// op    := IDENT (`(` (arg `,`)* arg? `)`)?
/// ```
pub struct Op {
    pub ident: Ident,
    pub args: Option<Args>,
}

pub struct Args {
    pub paren: token::Paren,
    pub list: Punctuated<Arg, Token![,]>,
}

/// ```text
/// arg   := IDENT `=` value          named:      kernel = 5
///        | (value `=>`)? value      positional: 6, 1 => 6, 0.5
/// ```
pub enum Arg {
    Named {
        key: Ident,
        eq: Token![=],
        value: Value,
    },
    Positional {
        from: Option<(Value, Token![=>])>,
        value: Value,
    },
}

/// ```text
/// value := INT | FLOAT | `true` | `false` | IDENT | `(` INT `,` INT `)`
/// ```
pub enum Value {
    Int(LitInt),
    Float(LitFloat),
    Bool(LitBool),
    Ident(Ident),
    /// `(h, w)`
    Pair {
        paren: token::Paren,
        h: LitInt,
        comma: Token![,],
        w: LitInt,
    },
}

impl Parse for Input {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let mut nets = Vec::new();
        while !input.is_empty() {
            nets.push(input.parse()?);
        }
        Ok(Input { nets })
    }
}

impl Parse for Net {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let attrs = input.call(Attribute::parse_outer)?;
        let vis = input.parse()?;
        input.parse::<Token![struct]>()?;
        let ident = input.parse()?;
        input.parse::<Token![:]>()?;
        let shape = input.parse()?;
        let output = if input.peek(Token![->]) {
            input.parse::<Token![->]>()?;
            Some(input.parse()?)
        } else {
            None
        };
        let content;
        braced!(content in input);
        let body = content.parse()?;
        Ok(Net {
            attrs,
            vis,
            ident,
            input: shape,
            output,
            body,
        })
    }
}

impl Parse for Dims {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let content;
        let bracket = bracketed!(content in input);
        let dims = Punctuated::parse_terminated(&content)?;
        Ok(Dims { bracket, dims })
    }
}

impl Parse for Stack {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        Ok(Stack {
            layers: Punctuated::parse_terminated(input)?,
        })
    }
}

impl Parse for Layer {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let name = if input.peek(Ident) && input.peek2(Token![:]) && !input.peek2(Token![::]) {
            let name = input.parse()?;
            input.parse::<Token![:]>()?;
            Some(name)
        } else {
            None
        };
        let kind = Kind::Op(input.parse()?);
        let expect = if input.peek(Token![->]) {
            input.parse::<Token![->]>()?;
            Some(input.parse()?)
        } else {
            None
        };
        Ok(Layer { name, kind, expect })
    }
}

impl Parse for Op {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let ident = input.parse()?;
        let args = if input.peek(token::Paren) {
            let content;
            let paren = parenthesized!(content in input);
            let list = Punctuated::parse_terminated(&content)?;
            Some(Args { paren, list })
        } else {
            None
        };
        Ok(Op { ident, args })
    }
}

impl Parse for Arg {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        if input.peek(Ident) && input.peek2(Token![=]) && !input.peek2(Token![=>]) {
            return Ok(Arg::Named {
                key: input.parse()?,
                eq: input.parse()?,
                value: input.parse()?,
            });
        }
        let first: Value = input.parse()?;
        if input.peek(Token![=>]) {
            let arrow = input.parse()?;
            let value = input.parse()?;
            Ok(Arg::Positional {
                from: Some((first, arrow)),
                value,
            })
        } else {
            Ok(Arg::Positional {
                from: None,
                value: first,
            })
        }
    }
}

impl Parse for Value {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let lookahead = input.lookahead1();
        if lookahead.peek(LitInt) {
            Ok(Value::Int(input.parse()?))
        } else if lookahead.peek(LitFloat) {
            Ok(Value::Float(input.parse()?))
        } else if lookahead.peek(LitBool) {
            match input.parse()? {
                Lit::Bool(b) => Ok(Value::Bool(b)),
                _ => unreachable!("peeked a bool literal"),
            }
        } else if lookahead.peek(Ident) {
            Ok(Value::Ident(input.parse()?))
        } else if lookahead.peek(token::Paren) {
            let content;
            let paren = parenthesized!(content in input);
            let h = content.parse()?;
            let comma = content.parse()?;
            let w = content.parse()?;
            content.parse::<Option<Token![,]>>()?;
            if !content.is_empty() {
                return Err(content.error("expected a pair `(h, w)`"));
            }
            Ok(Value::Pair { paren, h, comma, w })
        } else {
            Err(lookahead.error())
        }
    }
}

// Printing the nodes back gives `syn::Error::new_spanned` a span from the first to the last token.

impl ToTokens for Dims {
    fn to_tokens(&self, tokens: &mut TokenStream) {
        self.bracket
            .surround(tokens, |tokens| self.dims.to_tokens(tokens));
    }
}

impl ToTokens for Op {
    fn to_tokens(&self, tokens: &mut TokenStream) {
        self.ident.to_tokens(tokens);
        if let Some(args) = &self.args {
            args.paren
                .surround(tokens, |tokens| args.list.to_tokens(tokens));
        }
    }
}

impl ToTokens for Arg {
    fn to_tokens(&self, tokens: &mut TokenStream) {
        match self {
            Arg::Named { key, eq, value } => {
                key.to_tokens(tokens);
                eq.to_tokens(tokens);
                value.to_tokens(tokens);
            }
            Arg::Positional { from, value } => {
                if let Some((from, arrow)) = from {
                    from.to_tokens(tokens);
                    arrow.to_tokens(tokens);
                }
                value.to_tokens(tokens);
            }
        }
    }
}

impl ToTokens for Value {
    fn to_tokens(&self, tokens: &mut TokenStream) {
        match self {
            Value::Int(lit) => lit.to_tokens(tokens),
            Value::Float(lit) => lit.to_tokens(tokens),
            Value::Bool(lit) => lit.to_tokens(tokens),
            Value::Ident(ident) => tokens.append(ident.clone()),
            Value::Pair { paren, h, comma, w } => paren.surround(tokens, |tokens| {
                h.to_tokens(tokens);
                comma.to_tokens(tokens);
                w.to_tokens(tokens);
            }),
        }
    }
}

impl Op {
    /// The positional and named arguments, empty when the layer has no parentheses.
    pub fn args(&self) -> impl Iterator<Item = &Arg> {
        self.args.iter().flat_map(|args| args.list.iter())
    }
}

impl Value {
    pub fn span(&self) -> Span {
        match self {
            Value::Int(lit) => lit.span(),
            Value::Float(lit) => lit.span(),
            Value::Bool(lit) => lit.span,
            Value::Ident(ident) => ident.span(),
            Value::Pair { paren, .. } => paren.span.join(),
        }
    }
}

impl Dims {
    pub fn span(&self) -> Span {
        self.bracket.span.join()
    }
}
