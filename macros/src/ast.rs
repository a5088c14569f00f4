//! Syntax only: the invocation as written. Every node keeps its tokens, so that `check` can point
//! its errors at them; nothing here knows which layers or blocks exist, what their arguments
//! mean, or what an expression is worth.

use proc_macro2::{Span, TokenStream, TokenTree};
use quote::{ToTokens, TokenStreamExt};
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::{
    Attribute, Ident, LitBool, LitFloat, LitInt, Token, Visibility, braced, bracketed,
    parenthesized, token,
};

use crate::size::{MAX_BRACKETS, MAX_EXPR_OPS};

/// The words that open a construct rather than name a layer or a block.
pub mod kw {
    syn::custom_keyword!(block);
    syn::custom_keyword!(residual);
    syn::custom_keyword!(shortcut);
    syn::custom_keyword!(concat);
    syn::custom_keyword!(sum);
    syn::custom_keyword!(scale);
    syn::custom_keyword!(repeat);
    syn::custom_keyword!(identity);
}

/// A whole invocation: blocks and networks, in any order (a network may call a block defined
/// after it).
///
/// ```text
/// input := (block | net)*
/// ```
pub struct Input {
    pub blocks: Vec<BlockDef>,
    pub nets: Vec<Net>,
}

/// One network.
///
/// ```text
/// net   := attr* VIS `struct` IDENT `:` dims (`->` dims)? `{` stack `}`
/// attr  := `#[cnn(` (option `,`)* option? `)]` | any other outer attribute
/// ```
pub struct Net {
    /// The attributes for the struct, passed through: every one but `#[cnn(...)]`.
    pub attrs: Vec<Attribute>,
    /// The options of every `#[cnn(...)]`, in order; the macro reads them and drops the
    /// attribute.
    pub options: Vec<NetOption>,
    pub vis: Visibility,
    pub ident: Ident,
    /// The shape of one input image, `[C, H, W]`.
    pub input: Dims,
    /// The declared output shape of one image, checked when given.
    pub output: Option<Dims>,
    pub body: Stack,
}

/// A user block: a named, parameterised stack, expanded at each call with the call's arguments
/// and input shape.
///
/// ```text
/// block := ATTR* VIS? `block` IDENT `(` (param `,`)* param? `)` `{` stack `}`
/// param := IDENT (`=` expr)?
/// ```
pub struct BlockDef {
    /// Doc comments and attributes: documentation only (a block generates no item of its own).
    pub attrs: Vec<Attribute>,
    pub ident: Ident,
    pub params: Punctuated<Param, Token![,]>,
    pub body: Stack,
}

/// A block parameter, with its default when it has one.
pub struct Param {
    pub ident: Ident,
    pub default: Option<Expr>,
}

/// One option of `#[cnn(...)]`: `input_grad = false`.
///
/// ```text
/// option := IDENT `=` expr
/// ```
pub struct NetOption {
    pub key: Ident,
    pub value: Expr,
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

/// Entries applied one after the other.
///
/// ```text
/// stack := (entry `,`)* entry?
/// ```
pub struct Stack {
    pub entries: Punctuated<Entry, Token![,]>,
}

/// One entry of a stack: `c1: conv2d(6, kernel = 5) -> [6, 24, 24]`.
///
/// ```text
/// entry := (IDENT `:`)? item (`->` dims)?
/// ```
pub struct Entry {
    /// `c1:`, the field the entry is stored in.
    pub name: Option<Ident>,
    pub item: Item,
    /// `-> [6, 24, 24]`, the entry's output shape, checked.
    pub expect: Option<Dims>,
}

/// What an entry is.
///
/// ```text
/// item := op                                                  a layer or a block call
///       | `identity`
///       | `{` stack `}`                                       a group
///       | `residual` `{` stack `}` (`shortcut` `{` stack `}`)?
///       | `concat` `{` branches `}` | `sum` `{` branches `}`
///       | `scale` `{` stack `}`
///       | `repeat` `(` expr `)` `{` stack `}`
///       | `if` expr `{` stack `}` (`else` `{` stack `}`)?
/// branches := (entry `,`)* entry?                             at least two (checked)
/// ```
pub enum Item {
    /// A layer (`relu`, `conv2d(6, kernel = 5)`) or a call of a user block
    /// (`Residual(64)`): the same syntax, told apart by `check`.
    Op(Op),
    Identity(kw::identity),
    Group {
        brace: token::Brace,
        body: Stack,
    },
    Residual {
        keyword: kw::residual,
        body: Stack,
        shortcut: Option<(kw::shortcut, Stack)>,
    },
    Concat {
        keyword: kw::concat,
        branches: Stack,
    },
    Sum {
        keyword: kw::sum,
        branches: Stack,
    },
    Scale {
        keyword: kw::scale,
        gate: Stack,
    },
    Repeat {
        keyword: kw::repeat,
        count: Expr,
        body: Stack,
    },
    If {
        keyword: Token![if],
        cond: Expr,
        then: Stack,
        otherwise: Option<Stack>,
    },
}

/// A layer or block by name, with optional arguments: `relu`, `conv2d(6, kernel = 5)`.
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
/// arg   := IDENT `=` expr          named:      kernel = 5
///        | (expr `=>`)? expr      positional: 6, 1 => 6, 0.5, c / 2
/// ```
pub enum Arg {
    Named {
        key: Ident,
        eq: Token![=],
        value: Expr,
    },
    Positional {
        from: Option<(Expr, Token![=>])>,
        value: Expr,
    },
}

/// An expression, worked out at expansion time.
///
/// ```text
/// expr    := or
/// or      := and (`||` and)*
/// and     := cmp (`&&` cmp)*
/// cmp     := add ((`==` | `!=` | `<` | `<=` | `>` | `>=`) add)?
/// add     := mul ((`+` | `-`) mul)*
/// mul     := atom ((`*` | `/`) atom)*
/// atom    := INT | FLOAT | `true` | `false` | IDENT | IDENT `.` (`0` | `1`)
///          | `(` expr `)` | `(` expr `,` expr `)`
/// ```
pub enum Expr {
    Int(LitInt),
    Float(LitFloat),
    Bool(LitBool),
    /// A parameter, `C`/`H`/`W`, or a word such as `same`.
    Ident(Ident),
    /// `c.0`, `c.1`: a part of a pair.
    Part {
        base: Ident,
        dot: Token![.],
        index: LitInt,
    },
    Binary {
        lhs: Box<Expr>,
        op: BinOp,
        rhs: Box<Expr>,
    },
    Paren {
        paren: token::Paren,
        inner: Box<Expr>,
    },
    /// `(h, w)`
    Pair {
        paren: token::Paren,
        h: Box<Expr>,
        comma: Token![,],
        w: Box<Expr>,
    },
}

/// A binary operator, with its tokens.
#[derive(Clone, Copy)]
pub enum BinOp {
    Add(Token![+]),
    Sub(Token![-]),
    Mul(Token![*]),
    Div(Token![/]),
    Eq(Token![==]),
    Ne(Token![!=]),
    Lt(Token![<]),
    Le(Token![<=]),
    Gt(Token![>]),
    Ge(Token![>=]),
    And(Token![&&]),
    Or(Token![||]),
}

impl Parse for Input {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let mut blocks = Vec::new();
        let mut nets = Vec::new();
        while !input.is_empty() {
            let attrs = input.call(Attribute::parse_outer)?;
            let vis: Visibility = input.parse()?;
            let lookahead = input.lookahead1();
            if lookahead.peek(kw::block) {
                blocks.push(BlockDef::parse_rest(attrs, input)?);
            } else if lookahead.peek(Token![struct]) {
                nets.push(Net::parse_rest(attrs, vis, input)?);
            } else {
                return Err(lookahead.error());
            }
        }
        Ok(Input { blocks, nets })
    }
}

impl Net {
    fn parse_rest(all: Vec<Attribute>, vis: Visibility, input: ParseStream) -> syn::Result<Self> {
        let mut attrs = Vec::new();
        let mut options = Vec::new();
        for attr in all {
            if attr.path().is_ident("cnn") {
                let list =
                    attr.parse_args_with(Punctuated::<NetOption, Token![,]>::parse_terminated)?;
                options.extend(list);
            } else {
                attrs.push(attr);
            }
        }
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
            options,
            vis,
            ident,
            input: shape,
            output,
            body,
        })
    }
}

impl BlockDef {
    fn parse_rest(attrs: Vec<Attribute>, input: ParseStream) -> syn::Result<Self> {
        input.parse::<kw::block>()?;
        let ident = input.parse()?;
        let content;
        parenthesized!(content in input);
        let params = Punctuated::parse_terminated(&content)?;
        let content;
        braced!(content in input);
        let body = content.parse()?;
        Ok(BlockDef {
            attrs,
            ident,
            params,
            body,
        })
    }
}

impl Parse for Param {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let ident = input.parse()?;
        let default = if input.peek(Token![=]) {
            input.parse::<Token![=]>()?;
            Some(input.parse()?)
        } else {
            None
        };
        Ok(Param { ident, default })
    }
}

impl Parse for NetOption {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let key = input.parse()?;
        input.parse::<Token![=]>()?;
        let value = input.parse()?;
        Ok(NetOption { key, value })
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
            entries: Punctuated::parse_terminated(input)?,
        })
    }
}

impl Parse for Entry {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let name = if input.peek(Ident) && input.peek2(Token![:]) && !input.peek2(Token![::]) {
            let name = input.parse()?;
            input.parse::<Token![:]>()?;
            Some(name)
        } else {
            None
        };
        let item = input.parse()?;
        let expect = if input.peek(Token![->]) {
            input.parse::<Token![->]>()?;
            Some(input.parse()?)
        } else {
            None
        };
        Ok(Entry { name, item, expect })
    }
}

fn braced_stack(input: ParseStream) -> syn::Result<(token::Brace, Stack)> {
    let content;
    let brace = braced!(content in input);
    Ok((brace, content.parse()?))
}

impl Parse for Item {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        // A construct's keyword is only one when a brace or its argument follows: `scale` alone
        // would still be read as (an unknown) layer, and reported as one.
        if input.peek(token::Brace) {
            let (brace, body) = braced_stack(input)?;
            return Ok(Item::Group { brace, body });
        }
        if input.peek(kw::residual) && input.peek2(token::Brace) {
            let keyword = input.parse()?;
            let (_, body) = braced_stack(input)?;
            let shortcut = if input.peek(kw::shortcut) {
                let word = input.parse()?;
                Some((word, braced_stack(input)?.1))
            } else {
                None
            };
            return Ok(Item::Residual {
                keyword,
                body,
                shortcut,
            });
        }
        if input.peek(kw::concat) && input.peek2(token::Brace) {
            let keyword = input.parse()?;
            let (_, branches) = braced_stack(input)?;
            return Ok(Item::Concat { keyword, branches });
        }
        if input.peek(kw::sum) && input.peek2(token::Brace) {
            let keyword = input.parse()?;
            let (_, branches) = braced_stack(input)?;
            return Ok(Item::Sum { keyword, branches });
        }
        if input.peek(kw::scale) && input.peek2(token::Brace) {
            let keyword = input.parse()?;
            let (_, gate) = braced_stack(input)?;
            return Ok(Item::Scale { keyword, gate });
        }
        if input.peek(kw::repeat) && input.peek2(token::Paren) {
            let keyword = input.parse()?;
            let content;
            parenthesized!(content in input);
            let count = content.parse()?;
            if !content.is_empty() {
                return Err(content.error("expected one count, as in `repeat(2) { ... }`"));
            }
            let (_, body) = braced_stack(input)?;
            return Ok(Item::Repeat {
                keyword,
                count,
                body,
            });
        }
        if input.peek(Token![if]) {
            let keyword = input.parse()?;
            // The condition holds no braces, so the first one opens the body (as in Rust).
            let cond = input.parse()?;
            let (_, then) = braced_stack(input)?;
            let otherwise = if input.peek(Token![else]) {
                input.parse::<Token![else]>()?;
                Some(braced_stack(input)?.1)
            } else {
                None
            };
            return Ok(Item::If {
                keyword,
                cond,
                then,
                otherwise,
            });
        }
        if input.peek(kw::identity) && !input.peek2(token::Paren) {
            return Ok(Item::Identity(input.parse()?));
        }
        Ok(Item::Op(input.parse()?))
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
            // `a == b` is an expression, not a named argument.
            if !input.peek2(Token![==]) {
                return Ok(Arg::Named {
                    key: input.parse()?,
                    eq: input.parse()?,
                    value: input.parse()?,
                });
            }
        }
        let first: Expr = input.parse()?;
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

impl Parse for Expr {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let mut budget = MAX_EXPR_OPS;
        parse_binary(input, 0, &mut budget)
    }
}

/// Rule: an expression has at most `MAX_EXPR_OPS` operators and parentheses (see `size`):
/// `budget` is what is left of them, spent here at `input`'s next token.
fn spend(input: ParseStream, budget: &mut usize) -> syn::Result<()> {
    match budget.checked_sub(1) {
        Some(left) => {
            *budget = left;
            Ok(())
        }
        None => Err(input.error(format!(
            "this expression has more than {MAX_EXPR_OPS} operators and parentheses, the limit \
             on one expression; work part of it out by hand"
        ))),
    }
}

/// Rule: brackets (`{}`, `()`, `[]`) nest at most `MAX_BRACKETS` deep (see `size`), checked on
/// the tokens with a loop before anything recurses over them.
pub fn check_nesting(tokens: &TokenStream) -> syn::Result<()> {
    let mut open = vec![tokens.clone().into_iter()];
    while let Some(top) = open.last_mut() {
        match top.next() {
            Some(TokenTree::Group(group)) => {
                if open.len() > MAX_BRACKETS {
                    return Err(syn::Error::new(
                        group.span_open(),
                        format!(
                            "brackets nested more than {MAX_BRACKETS} deep; that is the limit, \
                             which keeps the macro within its stack (networks nest a few levels)"
                        ),
                    ));
                }
                open.push(group.stream().into_iter());
            }
            Some(_) => {}
            None => {
                open.pop();
            }
        }
    }
    Ok(())
}

/// The operator at the head of `input` and its precedence level (0 binds loosest), if any.
fn peek_op(input: ParseStream) -> Option<usize> {
    if input.peek(Token![||]) {
        Some(0)
    } else if input.peek(Token![&&]) {
        Some(1)
    } else if input.peek(Token![==])
        || input.peek(Token![!=])
        || input.peek(Token![<=])
        || input.peek(Token![>=])
        || (input.peek(Token![<]) && !input.peek(Token![<-]))
        || (input.peek(Token![>]) && !input.peek(Token![=>]))
    {
        Some(2)
    } else if input.peek(Token![+]) || (input.peek(Token![-]) && !input.peek(Token![->])) {
        Some(3)
    } else if input.peek(Token![*]) || input.peek(Token![/]) {
        Some(4)
    } else {
        None
    }
}

fn parse_op(input: ParseStream) -> syn::Result<BinOp> {
    Ok(if input.peek(Token![||]) {
        BinOp::Or(input.parse()?)
    } else if input.peek(Token![&&]) {
        BinOp::And(input.parse()?)
    } else if input.peek(Token![==]) {
        BinOp::Eq(input.parse()?)
    } else if input.peek(Token![!=]) {
        BinOp::Ne(input.parse()?)
    } else if input.peek(Token![<=]) {
        BinOp::Le(input.parse()?)
    } else if input.peek(Token![>=]) {
        BinOp::Ge(input.parse()?)
    } else if input.peek(Token![<]) {
        BinOp::Lt(input.parse()?)
    } else if input.peek(Token![>]) {
        BinOp::Gt(input.parse()?)
    } else if input.peek(Token![+]) {
        BinOp::Add(input.parse()?)
    } else if input.peek(Token![-]) {
        BinOp::Sub(input.parse()?)
    } else if input.peek(Token![*]) {
        BinOp::Mul(input.parse()?)
    } else {
        BinOp::Div(input.parse()?)
    })
}

/// Precedence climbing: operators of level `min` and tighter, left-associative; comparisons do
/// not chain.
fn parse_binary(input: ParseStream, min: usize, budget: &mut usize) -> syn::Result<Expr> {
    let mut lhs = parse_atom(input, budget)?;
    while let Some(level) = peek_op(input).filter(|&level| level >= min) {
        spend(input, budget)?;
        let op = parse_op(input)?;
        let rhs = parse_binary(input, level.saturating_add(1), budget)?;
        lhs = Expr::Binary {
            lhs: Box::new(lhs),
            op,
            rhs: Box::new(rhs),
        };
        if level == 2 && peek_op(input) == Some(2) {
            return Err(input.error("comparisons do not chain; add parentheses"));
        }
    }
    Ok(lhs)
}

fn parse_atom(input: ParseStream, budget: &mut usize) -> syn::Result<Expr> {
    let lookahead = input.lookahead1();
    if lookahead.peek(LitInt) {
        Ok(Expr::Int(input.parse()?))
    } else if lookahead.peek(LitFloat) {
        Ok(Expr::Float(input.parse()?))
    } else if lookahead.peek(LitBool) {
        Ok(Expr::Bool(input.parse()?))
    } else if lookahead.peek(Ident) {
        let ident: Ident = input.parse()?;
        if input.peek(Token![.]) && input.peek2(LitInt) {
            let dot = input.parse()?;
            let index = input.parse()?;
            return Ok(Expr::Part {
                base: ident,
                dot,
                index,
            });
        }
        Ok(Expr::Ident(ident))
    } else if lookahead.peek(token::Paren) {
        spend(input, budget)?;
        let content;
        let paren = parenthesized!(content in input);
        let first = parse_binary(&content, 0, budget)?;
        if content.is_empty() {
            return Ok(Expr::Paren {
                paren,
                inner: Box::new(first),
            });
        }
        let comma = content.parse()?;
        let w = parse_binary(&content, 0, budget)?;
        content.parse::<Option<Token![,]>>()?;
        if !content.is_empty() {
            return Err(content.error("expected a pair `(h, w)`"));
        }
        Ok(Expr::Pair {
            paren,
            h: Box::new(first),
            comma,
            w: Box::new(w),
        })
    } else {
        Err(lookahead.error())
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

impl ToTokens for BinOp {
    fn to_tokens(&self, tokens: &mut TokenStream) {
        match self {
            BinOp::Add(t) => t.to_tokens(tokens),
            BinOp::Sub(t) => t.to_tokens(tokens),
            BinOp::Mul(t) => t.to_tokens(tokens),
            BinOp::Div(t) => t.to_tokens(tokens),
            BinOp::Eq(t) => t.to_tokens(tokens),
            BinOp::Ne(t) => t.to_tokens(tokens),
            BinOp::Lt(t) => t.to_tokens(tokens),
            BinOp::Le(t) => t.to_tokens(tokens),
            BinOp::Gt(t) => t.to_tokens(tokens),
            BinOp::Ge(t) => t.to_tokens(tokens),
            BinOp::And(t) => t.to_tokens(tokens),
            BinOp::Or(t) => t.to_tokens(tokens),
        }
    }
}

impl BinOp {
    pub fn symbol(&self) -> &'static str {
        match self {
            BinOp::Add(_) => "+",
            BinOp::Sub(_) => "-",
            BinOp::Mul(_) => "*",
            BinOp::Div(_) => "/",
            BinOp::Eq(_) => "==",
            BinOp::Ne(_) => "!=",
            BinOp::Lt(_) => "<",
            BinOp::Le(_) => "<=",
            BinOp::Gt(_) => ">",
            BinOp::Ge(_) => ">=",
            BinOp::And(_) => "&&",
            BinOp::Or(_) => "||",
        }
    }
}

impl ToTokens for Expr {
    fn to_tokens(&self, tokens: &mut TokenStream) {
        match self {
            Expr::Int(lit) => lit.to_tokens(tokens),
            Expr::Float(lit) => lit.to_tokens(tokens),
            Expr::Bool(lit) => lit.to_tokens(tokens),
            Expr::Ident(ident) => tokens.append(ident.clone()),
            Expr::Part { base, dot, index } => {
                base.to_tokens(tokens);
                dot.to_tokens(tokens);
                index.to_tokens(tokens);
            }
            Expr::Binary { lhs, op, rhs } => {
                lhs.to_tokens(tokens);
                op.to_tokens(tokens);
                rhs.to_tokens(tokens);
            }
            Expr::Paren { paren, inner } => {
                paren.surround(tokens, |tokens| inner.to_tokens(tokens))
            }
            Expr::Pair { paren, h, comma, w } => paren.surround(tokens, |tokens| {
                h.to_tokens(tokens);
                comma.to_tokens(tokens);
                w.to_tokens(tokens);
            }),
        }
    }
}

impl ToTokens for Item {
    fn to_tokens(&self, tokens: &mut TokenStream) {
        // Only the head of a construct: errors about it point at its keyword.
        match self {
            Item::Op(op) => op.to_tokens(tokens),
            Item::Identity(k) => k.to_tokens(tokens),
            Item::Group { brace, .. } => brace.surround(tokens, |_| {}),
            Item::Residual { keyword, .. } => keyword.to_tokens(tokens),
            Item::Concat { keyword, .. } => keyword.to_tokens(tokens),
            Item::Sum { keyword, .. } => keyword.to_tokens(tokens),
            Item::Scale { keyword, .. } => keyword.to_tokens(tokens),
            Item::Repeat { keyword, count, .. } => {
                keyword.to_tokens(tokens);
                count.to_tokens(tokens);
            }
            Item::If { keyword, cond, .. } => {
                keyword.to_tokens(tokens);
                cond.to_tokens(tokens);
            }
        }
    }
}

impl Op {
    /// The positional and named arguments, empty when the layer has no parentheses.
    pub fn args(&self) -> impl Iterator<Item = &Arg> {
        self.args.iter().flat_map(|args| args.list.iter())
    }
}

impl Expr {
    /// From the first to the last token (on stable, where spans cannot be joined, the first).
    pub fn span(&self) -> Span {
        match self {
            Expr::Int(lit) => lit.span(),
            Expr::Float(lit) => lit.span(),
            Expr::Bool(lit) => lit.span,
            Expr::Ident(ident) => ident.span(),
            Expr::Paren { paren, .. } | Expr::Pair { paren, .. } => paren.span.join(),
            Expr::Part { .. } | Expr::Binary { .. } => {
                syn::spanned::Spanned::span(&self.to_token_stream())
            }
        }
    }
}

impl Item {
    /// Where errors about the item as a whole point: its keyword, or the layer's name.
    pub fn span(&self) -> Span {
        match self {
            Item::Op(op) => op.ident.span(),
            Item::Identity(k) => k.span,
            Item::Group { brace, .. } => brace.span.open(),
            Item::Residual { keyword, .. } => keyword.span,
            Item::Concat { keyword, .. } => keyword.span,
            Item::Sum { keyword, .. } => keyword.span,
            Item::Scale { keyword, .. } => keyword.span,
            Item::Repeat { keyword, .. } => keyword.span,
            Item::If { keyword, .. } => keyword.span,
        }
    }
}

impl Dims {
    pub fn span(&self) -> Span {
        self.bracket.span.join()
    }
}
