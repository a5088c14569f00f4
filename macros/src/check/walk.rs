//! The walk: every entry of the network in order, into blocks and branches, applying the
//! layers' rules ([`layers`](super::layers)), the join rules ([`blocks`](super::blocks)), the
//! naming rules ([`names`](super::names)) and fusion ([`fuse`](super::fuse)), and writing one
//! summary row per layer and per construct.

use std::collections::{BTreeMap, BTreeSet};

use quote::format_ident;

use super::args::{describe, eval_args};
use super::blocks::{self, Branch};
use super::defs::{self, Blocks};
use super::expr::{Env, Val};
use super::fuse::{Item as FuseItem, field_layer, fuse};
use super::layers::{self, is_layer};
use super::names::{Name, ScopeNames};
use super::{Errors, Flow, Shape, error, fmt_dims};
use crate::ast::{self, Entry, Item, Op};
use crate::ir::{Field, FieldTy, Mode, Row, Scope, Step};
use crate::size::{self, MAX_DEPTH, MAX_ENTRIES, MAX_INVOCATION_ENTRIES, ordinal};

/// What the walk of one network found.
pub struct Walked {
    pub errors: Errors,
    pub fields: Vec<Field>,
    pub scopes: Vec<Scope>,
    pub steps: Vec<Step>,
    pub rows: Vec<Row>,
    /// The output shape, when every shape was worked out.
    pub output: Option<Shape>,
    pub mode: Mode,
    /// Whether the network's first step is a conv2d (which `input_grad = false` needs).
    pub starts_with_conv: bool,
}

/// Walks `net`, which may take at most `budget` rows (what is left of the invocation's).
pub fn network(
    net: &ast::Net,
    blocks: &Blocks<'_>,
    mut flow: Flow,
    input_grad: bool,
    budget: usize,
) -> Walked {
    let mut walker = Walker {
        blocks,
        net: net.ident.to_string(),
        scopes: Vec::new(),
        instances: BTreeMap::new(),
        block_counts: BTreeMap::new(),
        calls: Vec::new(),
        rows: Vec::new(),
        errors: Errors::default(),
        level: 0,
        budget,
        exhausted: false,
        idents: BTreeSet::new(),
    };
    let mut root = ScopeNames::new(Vec::new(), String::new());
    let mut steps = walker.stack(&net.body, &mut root, &Env::default(), &mut flow, 0, true);
    let starts_with_conv = matches!(steps.first(), Some(Step::Conv { .. }));
    if let Some(Step::Conv {
        input_grad: first, ..
    }) = steps.first_mut()
    {
        *first = input_grad;
    }
    Walked {
        errors: walker.errors,
        fields: root.fields,
        scopes: walker.scopes,
        steps,
        rows: walker.rows,
        output: flow.shape,
        mode: flow.mode,
        starts_with_conv,
    }
}

struct Walker<'b, 'a> {
    blocks: &'b Blocks<'a>,
    /// The network's name, the prefix of its scopes' structs.
    net: String,
    scopes: Vec<Scope>,
    /// Block instances already generated: `Residual(c=64, ...) on [64, 24, 24]` -> scope.
    instances: BTreeMap<String, usize>,
    /// How many distinct instances of each block so far, for the structs' names.
    block_counts: BTreeMap<String, usize>,
    /// The blocks being expanded, outermost first: a call of one of them is recursion.
    calls: Vec<String>,
    rows: Vec<Row>,
    errors: Errors,
    /// How deeply the entry being walked is nested, as expanded (at most `MAX_DEPTH`).
    level: usize,
    /// The rows left to the invocation when this network's walk began.
    budget: usize,
    /// Whether the walk passed `MAX_ENTRIES` rows (reported once; nothing more is walked).
    exhausted: bool,
    /// The generated structs' names so far, kept unique.
    idents: BTreeSet<String>,
}

impl Walker<'_, '_> {
    /// Walks one stack in `scope`, returning its fused steps. `top` marks the network's own
    /// entries (and those of its groups, repeats and `if`s, outside blocks), where `C`, `H`,
    /// `W` are the shape flowing into each entry.
    fn stack(
        &mut self,
        stack: &ast::Stack,
        scope: &mut ScopeNames,
        env: &Env,
        flow: &mut Flow,
        depth: usize,
        top: bool,
    ) -> Vec<Step> {
        let mut items = Vec::new();
        for entry in &stack.entries {
            let here = if top {
                env.with_shape(flow.shape.clone())
            } else {
                env.clone()
            };
            self.entry(entry, scope, &here, flow, depth, top, &mut items);
        }
        fuse(items)
    }

    /// One entry; `top` as for [`Self::stack`], passed on to groups, repeats and `if`, whose
    /// entries are the network's too.
    #[allow(clippy::too_many_arguments)]
    fn entry(
        &mut self,
        entry: &Entry,
        scope: &mut ScopeNames,
        env: &Env,
        flow: &mut Flow,
        depth: usize,
        top: bool,
        items: &mut Vec<FuseItem>,
    ) {
        // Limits: the walk stops at `MAX_ENTRIES` rows, and nests at most `MAX_DEPTH` levels
        // (see `size`).
        if self.exhausted {
            flow.shape = None;
            return;
        }
        if self.rows.len() >= MAX_ENTRIES.min(self.budget) {
            self.exhausted = true;
            let message = if self.budget < MAX_ENTRIES {
                format!(
                    "this invocation's networks expand to more than {MAX_INVOCATION_ENTRIES} \
                     layers, block calls, groups and copies in all; that is the limit, which \
                     keeps the macro and the compiler fast: split them among invocations"
                )
            } else {
                format!(
                    "`{}` expands to more than {MAX_ENTRIES} layers, block calls, groups and \
                     copies; that is the limit (ten times the largest real networks), which \
                     keeps the macro and the compiler fast",
                    self.net
                )
            };
            self.errors.push(error(entry.item.span(), message));
            flow.shape = None;
            return;
        }
        let levels = match &entry.item {
            Item::Op(op) if is_layer(&op.ident.to_string()) => 0,
            Item::Identity(_) => 0,
            // A named repeat is a struct of copies, each a struct.
            Item::Repeat { .. } if entry.name.is_some() => 2,
            _ => 1,
        };
        let level = self.level.saturating_add(levels);
        if level > MAX_DEPTH {
            self.exhausted = true;
            self.errors.push(error(
                entry.item.span(),
                format!(
                    "nested more than {MAX_DEPTH} levels deep (groups, block calls, repeats and \
                     constructs, counted as expanded); that is the limit, which keeps the macro \
                     within its stack and the generated code within rustc's recursion limit"
                ),
            ));
            flow.shape = None;
            return;
        }
        let outer = std::mem::replace(&mut self.level, level);
        self.entry_at_level(entry, scope, env, flow, depth, top, items);
        self.level = outer;
    }

    /// [`Self::entry`] within the limits.
    #[allow(clippy::too_many_arguments)]
    fn entry_at_level(
        &mut self,
        entry: &Entry,
        scope: &mut ScopeNames,
        env: &Env,
        flow: &mut Flow,
        depth: usize,
        top: bool,
        items: &mut Vec<FuseItem>,
    ) {
        // Rule: a name gives a field, so it goes on what has one: a layer, a block call, a
        // group or a repeat. The other constructs' layers are fields of the enclosing scope.
        if let (Some(name), false) = (
            &entry.name,
            matches!(
                entry.item,
                Item::Op(_) | Item::Group { .. } | Item::Repeat { .. }
            ),
        ) {
            self.errors.push(error(
                name.span(),
                format!(
                    "`{name}:` names nothing: only layers, block calls, groups and repeats are \
                     fields; to make this a field, wrap it in a named group: `{name}: {{ ... }}`"
                ),
            ));
        }
        match &entry.item {
            Item::Op(op) => {
                let name = op.ident.to_string();
                if is_layer(&name) {
                    self.layer(entry, op, scope, env, flow, depth, items);
                } else if let Some(def) = self.blocks.get(&name) {
                    let steps = self.call(entry, op, def, scope, env, flow, depth);
                    items.push(FuseItem::Steps(steps));
                } else {
                    // Rule: a layer is one of `LAYERS`, or a block of the invocation.
                    let message = match self.blocks.closest(&name) {
                        Some(close) => {
                            format!("unknown layer or block `{name}`; did you mean `{close}`?")
                        }
                        None => {
                            let blocks: Vec<&str> = self.blocks.names().collect();
                            let blocks = if blocks.is_empty() {
                                String::new()
                            } else {
                                format!("; or a block: {}", blocks.join(", "))
                            };
                            format!(
                                "unknown layer `{name}`; expected one of: {}{blocks}",
                                layers::LAYERS.join(", ")
                            )
                        }
                    };
                    self.errors.push(error(op.ident.span(), message));
                    flow.shape = None;
                }
            }
            Item::Identity(_) => {
                self.leaf_row(scope, None, depth, "identity".into(), flow, (0, 0, 0));
            }
            Item::Group { brace, body } => {
                let steps =
                    self.group(entry, body, brace.span.open(), scope, env, flow, depth, top);
                items.push(FuseItem::Steps(steps));
            }
            Item::Residual {
                keyword,
                body,
                shortcut,
            } => {
                let header = self.open_row_named(String::new(), depth, "residual".into());
                let input = flow.shape.clone();
                let mut body_flow = flow.clone();
                let body_steps = self.stack(
                    body,
                    scope,
                    env,
                    &mut body_flow,
                    depth.saturating_add(1),
                    false,
                );
                let mut short_flow = flow.clone();
                let short_steps = match shortcut {
                    Some((_, stack)) => {
                        let at = self.open_row_named(
                            String::new(),
                            depth.saturating_add(1),
                            "shortcut".into(),
                        );
                        let steps = self.stack(
                            stack,
                            scope,
                            env,
                            &mut short_flow,
                            depth.saturating_add(2),
                            false,
                        );
                        self.close_row(at, &short_flow, keyword.span);
                        if steps.is_empty() {
                            // (`if` chose nothing, say.)
                            if let Some(row) = self.rows.get_mut(at) {
                                row.kind = "shortcut (identity)".into();
                            }
                        }
                        steps
                    }
                    None => Vec::new(),
                };
                let has_shortcut = shortcut.is_some() && !short_steps.is_empty();
                flow.shape = match (&input, &body_flow.shape, &short_flow.shape) {
                    (Some(input), Some(b), Some(s)) => {
                        match blocks::residual(keyword.span, input, b, s, has_shortcut) {
                            Ok(()) => Some(b.clone()),
                            Err(e) => {
                                self.errors.push(e);
                                None
                            }
                        }
                    }
                    _ => None,
                };
                join_fields(flow, &[&body_flow, &short_flow], "residual");
                self.close_row(header, flow, keyword.span);
                items.push(FuseItem::Steps(vec![Step::Residual {
                    body: body_steps,
                    shortcut: short_steps,
                    relu: false,
                }]));
            }
            Item::Concat { keyword, branches } => {
                let step = self.join(keyword.span, true, branches, scope, env, flow, depth);
                items.push(FuseItem::Steps(vec![step]));
            }
            Item::Sum { keyword, branches } => {
                let step = self.join(keyword.span, false, branches, scope, env, flow, depth);
                items.push(FuseItem::Steps(vec![step]));
            }
            Item::Scale { keyword, gate } => {
                let header = self.open_row_named(String::new(), depth, "scale".into());
                let mut gate_flow = flow.clone();
                let gate_steps = self.stack(
                    gate,
                    scope,
                    env,
                    &mut gate_flow,
                    depth.saturating_add(1),
                    false,
                );
                let mut flatten = None;
                if let (Some(input), Some(g)) = (&flow.shape, &gate_flow.shape) {
                    match blocks::scale(keyword.span, input, g) {
                        Ok(f) => {
                            flatten = if f {
                                input.dims().first().copied()
                            } else {
                                None
                            }
                        }
                        Err(e) => {
                            self.errors.push(e);
                            flow.shape = None;
                        }
                    }
                } else {
                    flow.shape = None;
                }
                // The output is the input's, each value scaled by a gate that sees (at most) the
                // whole image: the field is the larger, the spacing of units the input's.
                let (shape, spacing) = (flow.shape.clone(), flow.field.map(|f| f.j));
                let main = flow.clone();
                join_fields(flow, &[&main, &gate_flow], "scale");
                flow.shape = shape;
                if let (Some(field), Some(j)) = (&mut flow.field, spacing) {
                    field.j = j;
                }
                self.close_row(header, flow, keyword.span);
                items.push(FuseItem::Steps(vec![Step::Scale {
                    gate: gate_steps,
                    flatten,
                }]));
            }
            Item::Repeat {
                keyword,
                count,
                body,
            } => {
                let steps = self.repeat(
                    entry,
                    keyword.span,
                    count,
                    body,
                    scope,
                    env,
                    flow,
                    depth,
                    top,
                );
                items.push(FuseItem::Steps(steps));
            }
            Item::If {
                cond,
                then,
                otherwise,
                ..
            } => {
                let chosen = match self.errors.ok(env.eval(cond)) {
                    Some(value) => match value.val {
                        Val::Bool(b) => Some(b),
                        other => {
                            self.errors.push(error(
                                value.span,
                                format!("an `if` condition is `true` or `false`, not {other}"),
                            ));
                            None
                        }
                    },
                    None => None,
                };
                match chosen {
                    Some(true) => {
                        let steps = self.stack(then, scope, env, flow, depth, top);
                        items.push(FuseItem::Steps(steps));
                    }
                    Some(false) => {
                        if let Some(otherwise) = otherwise {
                            let steps = self.stack(otherwise, scope, env, flow, depth, top);
                            items.push(FuseItem::Steps(steps));
                        }
                    }
                    None => flow.shape = None,
                }
            }
        }
        // Rule: an entry's declared output shape is its actual one.
        if let (Some(expect), Some(shape)) = (&entry.expect, &flow.shape) {
            match super::dims_values(expect) {
                Ok(expected) if expected != shape.dims() => {
                    self.errors.push(error(
                        expect.span(),
                        format!(
                            "output {} differs from the actual {}",
                            fmt_dims(&expected),
                            fmt_dims(&shape.dims())
                        ),
                    ));
                    flow.shape = None;
                }
                Ok(_) => {}
                Err(e) => self.errors.push(e),
            }
        }
    }

    /// `concat { ... }` (`is_concat`) or `sum { ... }`: every branch from the same input.
    #[allow(clippy::too_many_arguments)]
    fn join(
        &mut self,
        at: proc_macro2::Span,
        is_concat: bool,
        branches: &ast::Stack,
        scope: &mut ScopeNames,
        env: &Env,
        flow: &mut Flow,
        depth: usize,
    ) -> Step {
        let word = if is_concat { "concat" } else { "sum" };
        let header = self.open_row_named(String::new(), depth, word.into());
        let mut outs = Vec::new();
        let mut all_steps = Vec::new();
        let mut flows = Vec::new();
        for (i, branch) in branches.entries.iter().enumerate() {
            let mut bflow = flow.clone();
            let label = match &branch.name {
                Some(name) => format!("branch {} (`{name}`)", ordinal(i)),
                None => format!("branch {}", ordinal(i)),
            };
            let steps = match (&branch.item, &branch.name) {
                // An unnamed group is the branch's stack: a row of its own, its layers inside.
                (Item::Group { body, .. }, None) => {
                    let row = self.open_row_named(
                        String::new(),
                        depth.saturating_add(1),
                        format!("branch {}", ordinal(i)),
                    );
                    let steps =
                        self.stack(body, scope, env, &mut bflow, depth.saturating_add(2), false);
                    self.close_row(row, &bflow, branch.item.span());
                    steps
                }
                _ => {
                    let mut items = Vec::new();
                    self.entry(
                        branch,
                        scope,
                        env,
                        &mut bflow,
                        depth.saturating_add(1),
                        false,
                        &mut items,
                    );
                    fuse(items)
                }
            };
            if let Some(shape) = &bflow.shape {
                outs.push(Branch {
                    label,
                    span: branch.item.span(),
                    shape: shape.clone(),
                });
            }
            all_steps.push(steps);
            flows.push(bflow);
        }
        let count = branches.entries.len();
        let joined = blocks::at_least_two(at, word, count).and_then(|()| {
            if outs.len() < count || flow.shape.is_none() {
                return Ok(None);
            }
            if is_concat {
                blocks::concat(at, &outs).map(Some)
            } else {
                blocks::sum(at, &outs).map(Some)
            }
        });
        flow.shape = match joined {
            Ok(shape) => shape,
            Err(e) => {
                self.errors.push(e);
                None
            }
        };
        join_fields(flow, &flows.iter().collect::<Vec<_>>(), word);
        self.close_row(header, flow, at);
        if is_concat {
            let channels = match flow.shape {
                Some(Shape::Image { c, .. } | Shape::Flat(c)) => c,
                None => 0,
            };
            Step::Concat {
                branches: all_steps,
                channels,
            }
        } else {
            Step::Sum {
                branches: all_steps,
                relu: false,
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn layer(
        &mut self,
        entry: &Entry,
        op: &Op,
        scope: &mut ScopeNames,
        env: &Env,
        flow: &mut Flow,
        depth: usize,
        items: &mut Vec<FuseItem>,
    ) {
        // Where no shape is known (after an error), `C`, `H`, `W` mean nothing: such
        // arguments are not reported again.
        let args = eval_args(op, env, &mut self.errors);
        let Some(args) = args else {
            // (The layer's own rules would only report the argument as missing.)
            flow.shape = None;
            return;
        };
        let spec = match layers::spec(op, &args) {
            Ok(spec) => spec,
            Err(e) => {
                self.errors.push(e);
                flow.shape = None;
                return;
            }
        };
        let stateful = spec.has_state();
        let name = match scope.name(entry.name.as_ref(), stateful, op.ident.span()) {
            Ok(name) => name,
            Err(e) => {
                self.errors.push(e);
                None
            }
        };
        let Some(shape) = flow.shape.clone() else {
            return;
        };
        let keyword = op.ident.to_string();
        let label = match &name {
            Some(name) => format!("{keyword} `{}`", scope.key_of(name)),
            None => keyword,
        };
        let kind = describe(op, &args);
        let placed = match layers::place(op, &spec, flow, shape, &label, &kind) {
            Ok(placed) => placed,
            Err(e) => {
                self.errors.push(e);
                flow.shape = None;
                return;
            }
        };
        let row = self.leaf_row(
            scope,
            name.as_ref(),
            depth,
            kind,
            flow,
            (placed.params, placed.non_trainable, placed.macs),
        );
        if let Some(name) = &name {
            scope.fields.push(Field {
                ident: name.ident.clone(),
                key: name.key.clone(),
                ty: FieldTy::Layer(field_layer(&placed.placing)),
                doc: self.row_doc(row),
            });
        }
        // (A layer with parameters but no name had a naming error: nothing is generated.)
        if name.is_some() || !stateful {
            items.push(FuseItem::Layer {
                field: name.as_ref().map(|name| scope.path_to(name)),
                placing: placed.placing,
            });
        }
    }

    /// A call of a user block: its body walked in a scope of its own, with the call's
    /// arguments bound to the block's parameters and `C`, `H`, `W` to the call's input.
    #[allow(clippy::too_many_arguments)]
    fn call(
        &mut self,
        entry: &Entry,
        op: &Op,
        def: &ast::BlockDef,
        scope: &mut ScopeNames,
        env: &Env,
        flow: &mut Flow,
        depth: usize,
    ) -> Vec<Step> {
        let block = def.ident.to_string();
        let args = eval_args(op, env, &mut self.errors);
        let name = match scope.field_name(entry.name.as_ref(), op.ident.span()) {
            Ok(name) => name,
            Err(e) => {
                self.errors.push(e);
                flow.shape = None;
                return Vec::new();
            }
        };
        let (Some(input), Some(args)) = (flow.shape.clone(), args) else {
            flow.shape = None;
            return Vec::new();
        };
        // Rule: a block does not call itself, directly or through others.
        if self.calls.contains(&block) {
            let chain: Vec<&str> = self.calls.iter().map(String::as_str).collect();
            self.errors.push(error(
                op.ident.span(),
                format!(
                    "block `{block}` calls itself ({} -> {block}); blocks cannot recurse, since every call is expanded",
                    chain.join(" -> ")
                ),
            ));
            flow.shape = None;
            return Vec::new();
        }
        let call_text = describe(op, &args);
        let (block_env, bound) = match defs::bind(
            def,
            op,
            &args,
            &Env::default().with_shape(Some(input.clone())),
        ) {
            Ok(bound) => bound,
            Err(e) => {
                self.errors.push(e);
                flow.shape = None;
                return Vec::new();
            }
        };
        let header = self.open_row(&name, scope, depth, call_text.clone());
        let mut child =
            ScopeNames::new(scope.path_to(&name).0, format!("{}.", scope.key_of(&name)));
        let outer = std::mem::take(&mut self.errors);
        let scopes_before = self.scopes.len();
        self.calls.push(block.clone());
        let steps = self.stack(
            &def.body,
            &mut child,
            &block_env,
            flow,
            depth.saturating_add(1),
            false,
        );
        self.calls.pop();
        if let Some(inner) = std::mem::replace(&mut self.errors, outer).into_error() {
            self.errors.push(blocks::in_call(
                inner,
                op.ident.span(),
                &call_text,
                &Some(input),
            ));
            flow.shape = None;
            return Vec::new();
        }
        let key = format!(
            "{block}({}) on {}",
            bound
                .iter()
                .map(|(p, v)| format!("{p}={v}"))
                .collect::<Vec<_>>()
                .join(", "),
            fmt_dims(&input.dims())
        );
        let index = match self.instances.get(&key) {
            Some(&index) => {
                // The same struct as an earlier call: drop the copies this walk made.
                self.scopes.truncate(scopes_before);
                index
            }
            None => {
                let n = self.block_counts.entry(block.clone()).or_default();
                *n = n.saturating_add(1);
                let n = *n;
                let ident = self.unique_ident(format!("__{}_{}_{n}", self.net, block));
                self.scopes.push(Scope {
                    ident,
                    attrs: def.attrs.clone(),
                    fields: child.fields,
                    doc: format!(
                        "`{call_text}` on {}, in `{}`",
                        fmt_dims(&input.dims()),
                        self.net
                    ),
                });
                let index = self.scopes.len().saturating_sub(1);
                self.instances.insert(key, index);
                index
            }
        };
        flow.made_by = format!("`{}`", scope.key_of(&name));
        self.close_row(header, flow, op.ident.span());
        scope.fields.push(Field {
            ident: name.ident.clone(),
            key: name.key.clone(),
            ty: FieldTy::Scope(index),
            doc: self.row_doc(header),
        });
        steps
    }

    /// A group: a scope of its own (a nested `nn.Sequential`), its entries numbered from 0.
    #[allow(clippy::too_many_arguments)]
    fn group(
        &mut self,
        entry: &Entry,
        body: &ast::Stack,
        span: proc_macro2::Span,
        scope: &mut ScopeNames,
        env: &Env,
        flow: &mut Flow,
        depth: usize,
        top: bool,
    ) -> Vec<Step> {
        let name = match scope.field_name(entry.name.as_ref(), span) {
            Ok(name) => name,
            Err(e) => {
                self.errors.push(e);
                flow.shape = None;
                return Vec::new();
            }
        };
        let header = self.open_row(&name, scope, depth, "group".into());
        let mut child =
            ScopeNames::new(scope.path_to(&name).0, format!("{}.", scope.key_of(&name)));
        let steps = self.stack(body, &mut child, env, flow, depth.saturating_add(1), top);
        self.close_row(header, flow, span);
        self.child_scope(
            scope,
            &name,
            child,
            header,
            format!("group `{}`", scope.key_of(&name)),
        );
        steps
    }

    /// `repeat(n) { ... }`; a named one is a scope whose children are the n copies, numbered
    /// from 0; a copy is the body's one unnamed block call itself, or else a scope of the
    /// body's entries.
    #[allow(clippy::too_many_arguments)]
    fn repeat(
        &mut self,
        entry: &Entry,
        at: proc_macro2::Span,
        count: &ast::Expr,
        body: &ast::Stack,
        scope: &mut ScopeNames,
        env: &Env,
        flow: &mut Flow,
        depth: usize,
        top: bool,
    ) -> Vec<Step> {
        let n = match self
            .errors
            .ok(env.eval(count))
            .map(|c| blocks::repeat_count(&c))
        {
            Some(Ok(n)) => n,
            Some(Err(e)) => {
                self.errors.push(e);
                flow.shape = None;
                return Vec::new();
            }
            None => {
                flow.shape = None;
                return Vec::new();
            }
        };
        if entry.name.is_none() {
            return self.splice(at, n, body, scope, env, flow, depth, top);
        }
        let name = match scope.field_name(entry.name.as_ref(), at) {
            Ok(name) => name,
            Err(e) => {
                self.errors.push(e);
                flow.shape = None;
                return Vec::new();
            }
        };
        let header = self.open_row(&name, scope, depth, format!("repeat({n})"));
        let mut copies =
            ScopeNames::new(scope.path_to(&name).0, format!("{}.", scope.key_of(&name)));
        // A body of one unnamed block call: each copy is that call's scope (`net.0.conv1`).
        let entries: Vec<&Entry> = body.entries.iter().collect();
        let single = match entries.as_slice() {
            [only] if only.expect.is_none() => match &only.item {
                Item::Op(op)
                    if only.name.is_none() && self.blocks.get(&op.ident.to_string()).is_some() =>
                {
                    Some(only)
                }
                _ => None,
            },
            _ => None,
        };
        let mut steps = Vec::new();
        for i in 0..n {
            let ok = self.repetition(at, i, n, flow, |this, flow| match single {
                Some(only) => {
                    let mut items = Vec::new();
                    this.entry(
                        only,
                        &mut copies,
                        env,
                        flow,
                        depth.saturating_add(1),
                        top,
                        &mut items,
                    );
                    steps.extend(fuse(items));
                }
                None => {
                    let copy = match copies.field_name(None, at) {
                        Ok(copy) => copy,
                        Err(e) => return this.errors.push(e),
                    };
                    let row = this.open_row_named(
                        copy.key.clone(),
                        depth.saturating_add(1),
                        format!("copy {} of {n}", ordinal(i)),
                    );
                    if let Some(row) = this.rows.get_mut(row) {
                        row.path = copies.key_of(&copy);
                    }
                    let mut child = ScopeNames::new(
                        copies.path_to(&copy).0,
                        format!("{}.", copies.key_of(&copy)),
                    );
                    steps.extend(this.stack(
                        body,
                        &mut child,
                        env,
                        flow,
                        depth.saturating_add(2),
                        top,
                    ));
                    this.close_row(row, flow, at);
                    let what = format!("copy {} of `{}`", ordinal(i), scope.key_of(&name));
                    this.child_scope(&mut copies, &copy, child, row, what);
                }
            });
            if !ok {
                return Vec::new();
            }
        }
        self.close_row(header, flow, at);
        let what = format!("`{}`", scope.key_of(&name));
        self.child_scope(scope, &name, copies, header, what);
        steps
    }

    /// An unnamed `repeat(n) { ... }`: the copies' entries are entries of `scope`, numbered on
    /// from the entries before them, as `nn.Sequential(*layers)` numbers a list built in a loop.
    #[allow(clippy::too_many_arguments)]
    fn splice(
        &mut self,
        at: proc_macro2::Span,
        n: usize,
        body: &ast::Stack,
        scope: &mut ScopeNames,
        env: &Env,
        flow: &mut Flow,
        depth: usize,
        top: bool,
    ) -> Vec<Step> {
        let header = self.open_row_named(String::new(), depth, format!("repeat({n})"));
        let mut steps = Vec::new();
        for i in 0..n {
            let ok = self.repetition(at, i, n, flow, |this, flow| {
                let row = this.open_row_named(
                    String::new(),
                    depth.saturating_add(1),
                    format!("copy {} of {n}", ordinal(i)),
                );
                steps.extend(this.stack(body, scope, env, flow, depth.saturating_add(2), top));
                this.close_row(row, flow, at);
            });
            if !ok {
                return Vec::new();
            }
        }
        self.close_row(header, flow, at);
        steps
    }

    /// Repetition `i` of `n` (from 0), walked by `walk`; its errors are reported as that
    /// repetition's, with its input. `false` when it had any.
    fn repetition(
        &mut self,
        at: proc_macro2::Span,
        i: usize,
        n: usize,
        flow: &mut Flow,
        walk: impl FnOnce(&mut Self, &mut Flow),
    ) -> bool {
        let input = flow.shape.clone();
        let outer = std::mem::take(&mut self.errors);
        walk(self, flow);
        match std::mem::replace(&mut self.errors, outer).into_error() {
            Some(inner) => {
                self.errors
                    .push(blocks::in_repetition(inner, at, i, n, &input));
                flow.shape = None;
                false
            }
            None => true,
        }
    }

    /// Makes `child` a struct and a field `name` of `scope`.
    fn child_scope(
        &mut self,
        scope: &mut ScopeNames,
        name: &Name,
        child: ScopeNames,
        row: usize,
        doc: String,
    ) {
        let ident = self.unique_ident(format!(
            "__{}_{}",
            self.net,
            child
                .path
                .iter()
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join("_")
        ));
        self.scopes.push(Scope {
            ident,
            attrs: Vec::new(),
            fields: child.fields,
            doc,
        });
        scope.fields.push(Field {
            ident: name.ident.clone(),
            key: name.key.clone(),
            ty: FieldTy::Scope(self.scopes.len().saturating_sub(1)),
            doc: self.row_doc(row),
        });
    }

    /// `base`, or `base_2`, `base_3`, ... when a struct of that name was generated already:
    /// the names join paths with `_`, so two different paths can meet (`a_b` > `c` and `a` >
    /// `b_c`).
    fn unique_ident(&mut self, base: String) -> syn::Ident {
        let mut name = base.clone();
        let mut n = 1usize;
        while self.idents.contains(&name) {
            n = n.saturating_add(1);
            name = format!("{base}_{n}");
        }
        self.idents.insert(name.clone());
        format_ident!("{}", name)
    }

    // -----------------------------------------------------------------------------------------
    // Rows

    fn leaf_row(
        &mut self,
        scope: &ScopeNames,
        name: Option<&Name>,
        depth: usize,
        kind: String,
        flow: &Flow,
        (params, non_trainable, macs): (usize, usize, usize),
    ) -> usize {
        self.push_row(Row {
            name: name.map_or_else(String::new, |n| n.key.clone()),
            path: name.map_or_else(String::new, |n| scope.key_of(n)),
            depth,
            kind,
            output: flow.shape.as_ref().map_or_else(Vec::new, Shape::dims),
            params,
            non_trainable,
            macs,
            receptive_field: flow.field.map(|f| f.r),
        })
    }

    /// Adds a row; returns its index.
    fn push_row(&mut self, row: Row) -> usize {
        self.rows.push(row);
        self.rows.len().saturating_sub(1)
    }

    /// The doc line of the field whose row is `at`.
    fn row_doc(&self, at: usize) -> String {
        self.rows.get(at).map(field_doc).unwrap_or_default()
    }

    /// A scope's row, before its contents; [`close_row`](Self::close_row) fills it in.
    fn open_row(&mut self, name: &Name, scope: &ScopeNames, depth: usize, kind: String) -> usize {
        let at = self.open_row_named(name.key.clone(), depth, kind);
        if let Some(row) = self.rows.get_mut(at) {
            row.path = scope.key_of(name);
        }
        at
    }

    fn open_row_named(&mut self, name: String, depth: usize, kind: String) -> usize {
        self.push_row(Row {
            name,
            path: String::new(),
            depth,
            kind,
            output: Vec::new(),
            params: 0,
            non_trainable: 0,
            macs: 0,
            receptive_field: None,
        })
    }

    /// Fills in a construct's row: its output, and the totals of the rows one level inside
    /// (an overflow is an error at `span`, the construct).
    fn close_row(&mut self, at: usize, flow: &Flow, span: proc_macro2::Span) {
        let Some(depth) = self.rows.get(at).map(|row| row.depth) else {
            return;
        };
        let inside: Vec<&Row> = self
            .rows
            .iter()
            .skip(at.saturating_add(1))
            .take_while(|r| r.depth > depth)
            .filter(|r| Some(r.depth) == depth.checked_add(1))
            .collect();
        let kind = self
            .rows
            .get(at)
            .map(|row| row.kind.clone())
            .unwrap_or_default();
        let total = |what: &str, f: fn(&Row) -> usize| {
            let terms: Vec<usize> = inside.iter().map(|r| f(r)).collect();
            size::sum(format_args!("the {what} of `{kind}`"), span, &terms)
        };
        let totals = (
            total("parameter count", |r| r.params),
            total("non-trainable parameter count", |r| r.non_trainable),
            total("multiply-add count", |r| r.macs),
        );
        let (params, non_trainable, macs) = match totals {
            (Ok(p), Ok(n), Ok(m)) => (p, n, m),
            (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
                self.errors.push(e);
                (0, 0, 0)
            }
        };
        if let Some(row) = self.rows.get_mut(at) {
            row.params = params;
            row.non_trainable = non_trainable;
            row.macs = macs;
            row.output = flow.shape.as_ref().map_or_else(Vec::new, Shape::dims);
            row.receptive_field = flow.field.map(|f| f.r);
        }
    }
}

/// After branches meet: the receptive field is the largest branch's, the mode the strictest.
fn join_fields(flow: &mut Flow, branches: &[&Flow], made_by: &str) {
    let fields: Option<Vec<_>> = branches.iter().map(|b| b.field).collect();
    flow.field = fields.and_then(|fields| {
        fields.into_iter().reduce(|a, b| super::Field2 {
            r: (a.r.0.max(b.r.0), a.r.1.max(b.r.1)),
            j: (a.j.0.max(b.j.0), a.j.1.max(b.j.1)),
        })
    });
    flow.mode = branches.iter().map(|b| b.mode).fold(flow.mode, Mode::max);
    flow.made_by = made_by.to_string();
}

fn field_doc(row: &Row) -> String {
    let mut doc = format!("`{}`: output {}", row.kind, fmt_dims(&row.output));
    if row.params > 0 {
        doc += &format!(", {} parameters", crate::fmt::thousands(row.params));
    }
    if !row.path.is_empty() {
        doc += &format!("; checkpoint key `{}`", row.path);
    }
    doc
}
