//! Code generation: `quote!` only. Every number is in the plan already; every path is absolute
//! through `::cnn::__private`, so that users need no imports.
//!
//! The struct's own type parameters are `E` and `D`, as documented (`LeNet<E = f32, D = Cpu>`);
//! every generated impl and function names its parameters `E`, `D`, `__B`, `__T`, `__X`,
//! ..., so that a network named `B` or `T` (which the impls also name) does not clash with them.

use std::fmt::Write as _;

use proc_macro2::{Group, Literal, Span, TokenStream, TokenTree};
use quote::{format_ident, quote};
use syn::Ident;

use crate::fmt::{fmt_dims, thousands};
use crate::ir::{
    Act, Conv, ConvTranspose, Field, FieldLayer, FieldTy, Linear, Mode, NetPlan, Path, Plan, Pool,
    PoolKind, Row, Scope, Step, Unit,
};

pub fn net(plan: &Plan) -> TokenStream {
    plan.nets.iter().map(one_net).collect()
}

fn dfdx() -> TokenStream {
    quote!(::cnn::__private::dfdx)
}

fn lit(n: usize) -> Literal {
    Literal::usize_unsuffixed(n)
}

fn one_net(net: &NetPlan) -> TokenStream {
    let dfdx = dfdx();
    let NetPlan {
        attrs,
        vis,
        ident: name,
        ..
    } = net;
    let doc = struct_doc(net);

    let fields = fields_tokens(net, &net.fields);
    // Without fields that hold tensors, `E` and `D` would be unused.
    let marker = !net.fields.iter().any(Field::has_tensors);
    let marker_field =
        marker.then(|| quote!(__marker: ::core::marker::PhantomData<fn() -> (E, D)>,));

    let collection = tensor_collection(net.ident, &net.fields, marker);
    let scopes = net.scopes.iter().map(|scope| scope_struct(net, scope));
    let slope = uses_slope(net).then(|| {
        quote! {
            /// `leaky_relu`'s slope in the network's dtype.
            fn __slope<E: #dfdx::shapes::Dtype>(slope: f64) -> E {
                E::from_f64(slope).unwrap()
            }
        }
    });
    let forward = forward(net);
    let consts = consts(net);

    quote! {
        #(#attrs)*
        #[doc = #doc]
        #[derive(Debug, Clone)]
        #vis struct #name<
            E: #dfdx::shapes::Dtype = f32,
            D: #dfdx::tensor::Storage<E> = #dfdx::tensor::Cpu,
        > {
            #(#fields,)*
            #marker_field
        }

        #consts

        #(#scopes)*

        const _: () = {
            #collection
            #slope

            impl<E, D, __E2, __D2> #dfdx::nn::BuildOnDevice<__D2, __E2> for #name<E, D>
            where
                E: #dfdx::shapes::Dtype,
                D: #dfdx::tensor::Storage<E>,
                __E2: #dfdx::shapes::Dtype,
                __D2: #dfdx::tensor_ops::Device<__E2>,
                #name<__E2, __D2>: #dfdx::nn::BuildModule<__D2, __E2>,
            {
                type Built = #name<__E2, __D2>;
            }

            #forward
        };
    }
}

/// Whether any step or field uses `leaky_relu`, whose slope needs converting to `E`.
fn uses_slope(net: &NetPlan) -> bool {
    fn in_steps(steps: &[Step]) -> bool {
        steps.iter().any(|step| match step {
            Step::Unit(Unit::Act(Act::LeakyReLU(_))) => true,
            Step::Residual { body, shortcut, .. } => in_steps(body) || in_steps(shortcut),
            Step::Concat { branches, .. } | Step::Sum { branches, .. } => {
                branches.iter().any(|b| in_steps(b))
            }
            Step::Scale { gate, .. } => in_steps(gate),
            _ => false,
        })
    }
    let leaky_field = |f: &Field| {
        matches!(
            &f.ty,
            FieldTy::Layer(FieldLayer::Unit(Unit::Act(Act::LeakyReLU(_))))
        )
    };
    in_steps(&net.steps)
        || net.fields.iter().any(leaky_field)
        || net.scopes.iter().any(|s| s.fields.iter().any(leaky_field))
}

/// The fields of a struct, each with its doc.
fn fields_tokens(net: &NetPlan, fields: &[Field]) -> Vec<TokenStream> {
    let vis = net.vis;
    fields
        .iter()
        .map(|field| {
            let ident = &field.ident;
            let ty = field_ty(net, &field.ty);
            let doc = &field.doc;
            quote! {
                #[doc = #doc]
                #vis #ident: #ty
            }
        })
        .collect()
}

/// The struct of a nested scope (a block call, a named group, a repeat or one of its copies),
/// with its `TensorCollection`: dfdx joins its name to its fields' with a dot, which makes the
/// checkpoint keys dotted paths.
fn scope_struct(net: &NetPlan, scope: &Scope) -> TokenStream {
    let dfdx = dfdx();
    let vis = net.vis;
    let ident = &scope.ident;
    let fields = fields_tokens(net, &scope.fields);
    let marker = !scope.fields.iter().any(Field::has_tensors);
    let marker_field =
        marker.then(|| quote!(__marker: ::core::marker::PhantomData<fn() -> (E, D)>,));
    let collection = tensor_collection(ident, &scope.fields, marker);
    let doc = format!("Part of `{}` made by `cnn!`: {}.", net.ident, scope.doc);
    let attrs = &scope.attrs;
    quote! {
        #(#attrs)*
        #[doc = #doc]
        #[doc(hidden)]
        #[allow(non_camel_case_types)]
        #[derive(Debug, Clone)]
        #vis struct #ident<
            E: #dfdx::shapes::Dtype = f32,
            D: #dfdx::tensor::Storage<E> = #dfdx::tensor::Cpu,
        > {
            #(#fields,)*
            #marker_field
        }

        const _: () = {
            #collection
        };
    }
}

// ---------------------------------------------------------------------------------------------
// Types and values of layers

fn field_ty(net: &NetPlan, ty: &FieldTy) -> TokenStream {
    match ty {
        FieldTy::Layer(layer) => layer_ty(layer),
        FieldTy::Scope(index) => match net.scopes.get(*index) {
            Some(scope) => {
                let ident = &scope.ident;
                quote!(#ident<E, D>)
            }
            // (`check` makes every index one of `scopes`.)
            None => quote!(::core::compile_error!("cnn!: a field's struct is missing")),
        },
    }
}

fn layer_ty(layer: &FieldLayer) -> TokenStream {
    let dfdx = dfdx();
    match layer {
        FieldLayer::Conv(conv) => conv_ty(conv),
        FieldLayer::ConvTranspose(t) => conv_transpose_ty(t),
        FieldLayer::Linear(Linear { in_f, out_f, bias }) => {
            let (i, o) = (lit(*in_f), lit(*out_f));
            if *bias {
                quote!(#dfdx::nn::modules::Linear<#i, #o, E, D>)
            } else {
                quote!(#dfdx::nn::modules::UnbiasedLinear<#i, #o, E, D>)
            }
        }
        // The crate's own (dfdx's is made of slow generic ops); same tensors, same names.
        FieldLayer::BatchNorm { channels, image } => {
            let c = lit(*channels);
            if *image {
                quote!(::cnn::nn::BatchNorm2D<#c, E, D>)
            } else {
                quote!(::cnn::nn::BatchNorm1D<#c, E, D>)
            }
        }
        FieldLayer::Unit(Unit::Act(Act::LeakyReLU(_))) => quote!(#dfdx::nn::modules::LeakyReLU<E>),
        FieldLayer::Unit(unit) => unit_path(unit),
        FieldLayer::Dropout(_) => quote!(#dfdx::nn::modules::Dropout),
    }
}

fn conv_ty(conv: &Conv) -> TokenStream {
    let Conv {
        in_c,
        out_c,
        kernel,
        input,
        output,
        stride,
        pad,
        pad_end,
        dilation,
        groups,
        bias,
    } = conv;
    let [
        in_c,
        out_c,
        kh,
        kw,
        h,
        w,
        oh,
        ow,
        sh,
        sw,
        ph,
        pw,
        dh,
        dw,
        g,
        in_per_group,
        ph_end,
        pw_end,
    ] = [
        *in_c,
        *out_c,
        kernel.0,
        kernel.1,
        input.0,
        input.1,
        output.0,
        output.1,
        stride.0,
        stride.1,
        pad.0,
        pad.1,
        dilation.0,
        dilation.1,
        *groups,
        in_c.checked_div(*groups).unwrap_or(0),
        pad_end.0,
        pad_end.1,
    ]
    .map(lit);
    quote! {
        ::cnn::nn::Conv2D<
            #in_c, #out_c, #kh, #kw, #h, #w, #oh, #ow, #sh, #sw, #ph, #pw, #dh, #dw,
            #g, #in_per_group, #bias, #ph_end, #pw_end, E, D
        >
    }
}

fn conv_transpose_ty(t: &ConvTranspose) -> TokenStream {
    let ConvTranspose {
        in_c,
        out_c,
        kernel,
        input,
        output,
        stride,
        pad,
        output_pad,
        dilation,
        groups,
        bias,
    } = t;
    let [
        in_c,
        out_c,
        kh,
        kw,
        h,
        w,
        oh,
        ow,
        sh,
        sw,
        ph,
        pw,
        oph,
        opw,
        dh,
        dw,
        g,
        out_per_group,
    ] = [
        *in_c,
        *out_c,
        kernel.0,
        kernel.1,
        input.0,
        input.1,
        output.0,
        output.1,
        stride.0,
        stride.1,
        pad.0,
        pad.1,
        output_pad.0,
        output_pad.1,
        dilation.0,
        dilation.1,
        *groups,
        out_c.checked_div(*groups).unwrap_or(0),
    ]
    .map(lit);
    quote! {
        ::cnn::nn::ConvTranspose2D<
            #in_c, #out_c, #kh, #kw, #h, #w, #oh, #ow, #sh, #sw, #ph, #pw, #oph, #opw, #dh, #dw,
            #g, #out_per_group, #bias, E, D
        >
    }
}

/// The type of a stateless layer.
fn unit_path(unit: &Unit) -> TokenStream {
    unit_tokens(unit, quote!())
}

/// A stateless layer as a value: the unit struct, its generics written with a turbofish.
fn unit_value(unit: &Unit) -> TokenStream {
    match unit {
        Unit::Act(Act::LeakyReLU(slope)) => {
            let dfdx = dfdx();
            quote!(#dfdx::nn::modules::LeakyReLU(__slope(#slope)))
        }
        _ => unit_tokens(unit, quote!(::)),
    }
}

fn unit_tokens(unit: &Unit, turbofish: TokenStream) -> TokenStream {
    let dfdx = dfdx();
    match unit {
        // Ours: dfdx 0.13 has neither.
        Unit::Act(Act::ReLU6) => quote!(::cnn::nn::ReLU6),
        Unit::Act(Act::SiLU) => quote!(::cnn::nn::SiLU),
        Unit::Act(act) => {
            let ident = format_ident!("{}", act_type(*act));
            quote!(#dfdx::nn::modules::#ident)
        }
        Unit::GlobalPool(PoolKind::Avg) => quote!(#dfdx::nn::modules::AvgPoolGlobal),
        Unit::GlobalPool(PoolKind::Max) => quote!(#dfdx::nn::modules::MaxPoolGlobal),
        Unit::AdaptiveAvg { input, output } => {
            let params = [input.0, input.1, output.0, output.1].map(lit);
            quote!(::cnn::nn::AdaptiveAvgPool2D #turbofish <#(#params),*>)
        }
        Unit::Pool(Pool {
            kind,
            kernel,
            input,
            output,
            stride,
            pad,
        }) => {
            let ident = match kind {
                PoolKind::Max => format_ident!("MaxPool2D"),
                PoolKind::Avg => format_ident!("AvgPool2D"),
            };
            let params = [
                kernel.0, kernel.1, input.0, input.1, output.0, output.1, stride.0, stride.1,
                pad.0, pad.1,
            ]
            .map(lit);
            quote!(::cnn::nn::#ident #turbofish <#(#params),*>)
        }
        Unit::Flatten(n) => {
            let n = lit(*n);
            quote!(::cnn::nn::Flatten2D #turbofish <#n>)
        }
    }
}

fn act_type(act: Act) -> &'static str {
    match act {
        Act::ReLU => "ReLU",
        Act::ReLU6 => "ReLU6",
        Act::SiLU => "SiLU",
        Act::LeakyReLU(_) => "LeakyReLU",
        Act::Sigmoid => "Sigmoid",
        Act::Tanh => "Tanh",
        Act::GeLU => "AccurateGeLU",
        Act::FastGeLU => "FastGeLU",
        Act::Softmax => "Softmax",
        Act::LogSoftmax => "LogSoftmax",
        Act::Abs => "Abs",
        Act::Exp => "Exp",
        Act::Ln => "Ln",
        Act::Sqrt => "Sqrt",
        Act::Square => "Square",
        Act::Sin => "Sin",
        Act::Cos => "Cos",
    }
}

/// The value a field without tensors is built with; `None` for one with tensors (which the
/// module visitor builds).
fn field_init(layer: &FieldLayer) -> Option<TokenStream> {
    match layer {
        FieldLayer::Unit(unit) => Some(unit_value(unit)),
        FieldLayer::Dropout(p) => {
            let dfdx = dfdx();
            let p = Literal::f32_suffixed(*p as f32);
            Some(quote!(#dfdx::nn::modules::Dropout { p: #p }))
        }
        FieldLayer::Conv(_)
        | FieldLayer::ConvTranspose(_)
        | FieldLayer::Linear(_)
        | FieldLayer::BatchNorm { .. } => None,
    }
}

// ---------------------------------------------------------------------------------------------
// TensorCollection: what build_module, optimisers, save/load, to_device and to_dtype walk

fn tensor_collection(name: &Ident, fields: &[Field], marker: bool) -> TokenStream {
    let dfdx = dfdx();
    let visited: Vec<&Field> = fields.iter().filter(|f| f.has_tensors()).collect();
    let modules = visited.iter().map(|field| {
        let ident = &field.ident;
        let key = &field.key;
        quote! {
            <Self as #dfdx::nn::TensorCollection<E, D>>::module(#key, |s| &s.#ident, |s| &mut s.#ident)
        }
    });
    let modules = nest(modules.collect());
    let pattern = nest(
        visited
            .iter()
            .map(|f| {
                let ident = &f.ident;
                quote!(#ident)
            })
            .collect(),
    );
    // (Every field without tensors is a layer: nested scopes are visited.)
    let inits = fields
        .iter()
        .filter(|f| !f.has_tensors())
        .filter_map(|field| {
            let ident = &field.ident;
            let FieldTy::Layer(layer) = &field.ty else {
                return None;
            };
            let value = field_init(layer)?;
            Some(quote!(#ident: #value))
        });
    let visited_idents = visited.iter().map(|f| &f.ident);
    let marker = marker.then(|| quote!(__marker: ::core::marker::PhantomData,));
    quote! {
        impl<E: ::cnn::Float, D: ::cnn::ConvDevice<E>> #dfdx::nn::TensorCollection<E, D> for #name<E, D> {
            type To<__E2: #dfdx::shapes::Dtype, __D2: #dfdx::tensor_ops::Device<__E2>> = #name<__E2, __D2>;

            fn iter_tensors<__V: #dfdx::nn::ModuleVisitor<Self, E, D>>(
                visitor: &mut __V,
            ) -> ::core::result::Result<::core::option::Option<Self::To<__V::E2, __V::D2>>, __V::Err> {
                visitor.visit_fields(
                    #modules,
                    |#pattern| #name { #(#visited_idents,)* #(#inits,)* #marker },
                )
            }
        }

    }
}

/// Tuples of at most 6 (the most `visit_fields` takes), nested as needed.
fn nest(mut items: Vec<TokenStream>) -> TokenStream {
    while items.len() > 6 {
        items = items.chunks(6).map(|chunk| quote!((#(#chunk,)*))).collect();
    }
    quote!((#(#items,)*))
}

// ---------------------------------------------------------------------------------------------
// Forward

fn forward(net: &NetPlan) -> TokenStream {
    let dfdx = dfdx();
    let name = net.ident;
    let input = fmt_dims(&net.input);
    let batch = format!("[B, {}", &input[1..]);
    let output = fmt_dims(&net.output);

    let input_trait = format_ident!("{}Input", name);
    let train_trait = format_ident!("{}TrainInput", name);

    // Inference: `forward`, `try_forward`.
    let (tape, tape_param) = match net.mode {
        Mode::Same | Mode::Dropout => (quote!(__T), quote!(__T: #dfdx::tensor::Tape<E, D>,)),
        Mode::BatchNorm => (quote!(#dfdx::tensor::NoneTape), quote!()),
    };
    let body = steps(net, false);
    let which = match net.mode {
        Mode::BatchNorm => "an untraced",
        _ => "a",
    };
    let message = format!(
        "`{name}` takes {which} tensor of shape {input} or a batch {batch}, not `{{Self}}`"
    );
    let label = format!("not a {input} image or a {batch} batch for `{name}`");
    let note = match net.mode {
        Mode::BatchNorm => format!(
            "`{name}` holds batch_norm2d: `forward` runs inference on a tensor without a tape, \
             `forward_mut` trains on a traced one"
        ),
        _ => format!("`{name}` was declared by `cnn!` as `{input} -> {output}`"),
    };
    let inference = input_impls(
        net,
        &input_trait,
        &tape,
        &tape_param,
        &body,
        true,
        false,
        (&message, &label, &note),
    );
    // A wrong input is a type error on the hidden trait; the compiler says (abridged from
    // tests/ui/forward-wrong-shape.stderr):
    //
    // error[E0277]: `LeNet` takes a tensor of shape [1, 28, 28] or a batch [B, 1, 28, 28], not `Tensor<(Const<1>, Const<32>, Const<32>), _, Cpu>`
    //   --> tests/ui/forward-wrong-shape.rs:19:27
    //    |
    // 19 |     let _ = model.forward(dev.zeros::<Rank3<1, 32, 32>>());
    //    |                   ------- ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^ not a [1, 28, 28] image or a [B, 1, 28, 28] batch for `LeNet`
    //    |                   |
    //    |                   required by a bound introduced by this call
    //    |
    //    = help: the trait `LeNetInput<f32, Cpu>` is not implemented for `Tensor<(Const<1>, Const<32>, Const<32>), _, Cpu>`
    //    = note: `LeNet` was declared by `cnn!` as `[1, 28, 28] -> [10]`
    // help: the following other types implement trait `LeNetInput<E, D>`
    //   --> tests/ui/forward-wrong-shape.rs:4:19
    //    |
    //  4 |     struct LeNet: [1, 28, 28] -> [10] {
    //    |                   ^^^^^^^^^^^
    //    |                   |
    //    |                   `Tensor<(__B, Const<1>, Const<28>, Const<28>), E, D, __T>`
    //    |                   `Tensor<(Const<1>, Const<28>, Const<28>), E, D, __T>`
    // note: required for `LeNet` to implement `Module<Tensor<(Const<1>, Const<32>, Const<32>), _, Cpu>>`
    //   --> tests/ui/forward-wrong-shape.rs:4:12
    //    |
    //  4 |     struct LeNet: [1, 28, 28] -> [10] {
    //    |            ^^^^^
    // Spanned on the network's name: "required for `LeNet` to implement `Module<..>`" points
    // there.
    let header = respan(
        quote!(impl<E, D, __X> #dfdx::nn::Module<__X> for #name<E, D>),
        name.span(),
    );
    let module = quote! {
        #header
        where
            E: ::cnn::Float,
            D: ::cnn::ConvDevice<E>,
            __X: #input_trait<E, D>,
        {
            type Output = __X::Output;
            type Error = D::Err;

            fn try_forward(&self, x: __X) -> ::core::result::Result<Self::Output, D::Err> {
                __X::forward(self, x)
            }
        }
    };

    // Training: `forward_mut`, `try_forward_mut`.
    let training = match net.mode {
        Mode::Same => quote! {
            impl<E: #dfdx::shapes::Dtype, D: #dfdx::tensor::Storage<E>> #dfdx::nn::NonMutableModule for #name<E, D> {}
        },
        Mode::Dropout | Mode::BatchNorm => {
            let tape = quote!(#dfdx::tensor::OwnedTape<E, D>);
            // Batch statistics of one vector are undefined: a network with batch_norm1d trains
            // on batches only (the single-image impl is left out, so that is a type error).
            let one_image = !has_batch_norm1d(&net.steps);
            let body = steps(net, true);
            let (message, label, note) = if one_image {
                (
                    format!(
                        "`{name}::forward_mut` trains on a traced tensor of shape {input} or a batch {batch}, not `{{Self}}`"
                    ),
                    format!("not a traced {input} image or {batch} batch for `{name}`"),
                    format!(
                        "`{name}` holds dropout or batch norm, which train only on a tensor with a tape (`.trace(grads)`); \
                         `forward` runs inference"
                    ),
                )
            } else {
                (
                    format!(
                        "`{name}::forward_mut` trains on a traced batch {batch}, not `{{Self}}`"
                    ),
                    format!("not a traced {batch} batch for `{name}`"),
                    format!(
                        "`{name}` holds batch_norm1d, whose batch statistics need a batch: it trains on a traced \
                         batch (`.trace(grads)`); `forward` runs inference, on one image too"
                    ),
                )
            };
            let impls = input_impls(
                net,
                &train_trait,
                &tape,
                &quote!(),
                &body,
                one_image,
                true,
                (&message, &label, &note),
            );
            let header_mut = respan(
                quote!(impl<E, D, __X> #dfdx::nn::ModuleMut<__X> for #name<E, D>),
                name.span(),
            );
            quote! {
                #impls

                #header_mut
                where
                    E: ::cnn::Float,
                    D: ::cnn::ConvDevice<E>,
                    __X: #train_trait<E, D>,
                {
                    type Output = __X::Output;
                    type Error = D::Err;

                    fn try_forward_mut(&mut self, x: __X) -> ::core::result::Result<Self::Output, D::Err> {
                        __X::forward_mut(self, x)
                    }
                }
            }
        }
    };
    quote! {
        #inference
        #module
        #training
    }
}

/// A hidden trait implemented by the tensors the network takes, one image (unless `one_image`
/// is false) and a batch: a wrong tensor fails on it, with a message naming the network and the
/// shapes it takes.
#[allow(clippy::too_many_arguments)]
fn input_impls(
    net: &NetPlan,
    trait_name: &Ident,
    tape: &TokenStream,
    tape_param: &TokenStream,
    body: &TokenStream,
    one_image: bool,
    mutable: bool,
    (message, label, note): (&str, &str, &str),
) -> TokenStream {
    let dfdx = dfdx();
    let name = net.ident;
    let vis = net.vis;
    let input = const_dims(&net.input);
    let output = const_dims(&net.output);
    let (method, receiver) = if mutable {
        (format_ident!("forward_mut"), quote!(&mut #name<E, D>))
    } else {
        (format_ident!("forward"), quote!(&#name<E, D>))
    };
    let tensor = |shape: TokenStream| quote!(#dfdx::tensor::Tensor<#shape, E, D, #tape>);
    let one_in = tensor(quote!((#(#input,)*)));
    let one_out = tensor(quote!((#(#output,)*)));
    let batch_in = tensor(quote!((__B, #(#input,)*)));
    let batch_out = tensor(quote!((__B, #(#output,)*)));
    let implementation = |generics: TokenStream,
                          input: &TokenStream,
                          output: &TokenStream,
                          empty: TokenStream,
                          body: &TokenStream| {
        // Spanned on the declared input shape, so that the compiler's "the following other
        // types implement trait" points at `[C, H, W]`.
        respan(
            quote! {
                impl<#generics E: ::cnn::Float, D: ::cnn::ConvDevice<E>, #tape_param> #trait_name<E, D> for #input {
                    type Output = #output;

                    // Spanned on user tokens, so lints would report there: nothing here is theirs.
                    #[allow(unused_variables, clippy::all)]
                    fn #method(net: #receiver, x: Self) -> ::core::result::Result<Self::Output, D::Err> {
                        #empty
                        #body
                        ::core::result::Result::Ok(x)
                    }
                }
            },
            net.input_span,
        )
    };
    let one = one_image.then(|| implementation(quote!(), &one_in, &one_out, quote!(), body));
    // A batch of no images gives an empty output at once, with the tape passed through: dfdx's
    // own CUDA kernels would launch a grid of zero blocks, which the driver refuses
    // (CUDA_ERROR_INVALID_VALUE; found on the CUDA stand-in), and nothing is computed anyway.
    let defaults = output
        .iter()
        .map(|_| quote!(::core::default::Default::default()));
    let empty = quote! {
        let batch = #dfdx::shapes::HasShape::shape(&x).0;
        if #dfdx::shapes::Dim::size(&batch) == 0 {
            let (x, tape) = #dfdx::tensor::SplitTape::split_tape(x);
            let out = #dfdx::tensor::ZerosTensor::try_zeros_like(x.device(), &(batch, #(#defaults,)*))?;
            return ::core::result::Result::Ok(#dfdx::tensor::PutTape::put_tape(out, tape));
        }
    };
    let batch = implementation(
        quote!(__B: #dfdx::shapes::Dim,),
        &batch_in,
        &batch_out,
        empty,
        body,
    );
    quote! {
        #[diagnostic::on_unimplemented(message = #message, label = #label, note = #note)]
        #vis trait #trait_name<E: #dfdx::shapes::Dtype, D: #dfdx::tensor_ops::Device<E>>: Sized {
            type Output;
            fn #method(net: #receiver, x: Self) -> ::core::result::Result<Self::Output, D::Err>;
        }

        #one
        #batch
    }
}

/// Gives every token of `tokens` the span `span`.
fn respan(tokens: TokenStream, span: Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|mut token| {
            if let TokenTree::Group(group) = &token {
                let mut inner = Group::new(group.delimiter(), respan(group.stream(), span));
                inner.set_span(span);
                token = TokenTree::Group(inner);
            } else {
                token.set_span(span);
            }
            token
        })
        .collect()
}

fn const_dims(dims: &[usize]) -> Vec<TokenStream> {
    let dfdx = dfdx();
    dims.iter()
        .map(|&n| {
            let n = lit(n);
            quote!(#dfdx::shapes::Const<#n>)
        })
        .collect()
}

/// The forward body: one `let x = ...?;` per step. Training (`mutable`) differs from inference
/// only for dropout (identity in inference) and batch norm (running statistics in inference).
/// The forward body (the same for one image and a batch).
fn steps(net: &NetPlan, mutable: bool) -> TokenStream {
    seq(&net.steps, mutable)
}

/// Whether any step, at any depth, is `batch_norm1d`.
fn has_batch_norm1d(steps: &[Step]) -> bool {
    steps.iter().any(|step| match step {
        Step::BatchNorm { features, .. } => features.is_some(),
        Step::Residual { body, shortcut, .. } => {
            has_batch_norm1d(body) || has_batch_norm1d(shortcut)
        }
        Step::Concat { branches, .. } | Step::Sum { branches, .. } => {
            branches.iter().any(|b| has_batch_norm1d(b))
        }
        Step::Scale { gate, .. } => has_batch_norm1d(gate),
        _ => false,
    })
}

/// `net.b3._0.conv1`
fn field(path: &Path) -> TokenStream {
    let parts = &path.0;
    quote!(net.#(#parts).*)
}

/// One `let x = ...?;` per step. Branches other than the first run on a copy of `x` with an
/// empty tape, and the op that joins them merges the tapes (as dfdx's own `Residual` does), so
/// the gradient reaches `x` through every branch.
fn seq(steps: &[Step], mutable: bool) -> TokenStream {
    let dfdx = dfdx();
    let module = quote!(#dfdx::nn::Module::try_forward);
    let module_mut = quote!(#dfdx::nn::ModuleMut::try_forward_mut);
    let fork = quote!(#dfdx::tensor::WithEmptyTape::with_empty_tape(&x));
    let add = quote!(#dfdx::tensor_ops::TryAdd::try_add);
    let add_relu = quote!(::cnn::ops::add_relu::try_add_relu);
    let steps = steps.iter().filter_map(|step| {
        let call = match step {
            Step::Conv {
                field: path,
                bn: None,
                act: None,
                pool: None,
                input_grad: true,
            } => {
                let f = field(path);
                quote!(#module(&#f, x))
            }
            // Inference: the batch norm folded into the conv's weights.
            Step::Conv {
                field: path,
                bn: Some(bn),
                act,
                pool,
                input_grad,
            } if !mutable => {
                let (f, bn) = (field(path), field(bn));
                let fused = fused_conv(&f, *act, pool.as_ref(), *input_grad);
                quote!(#module(&#fused.folding(&#bn), x))
            }
            // Training: the batch's statistics, so conv, batch norm, activation, pool in turn.
            Step::Conv {
                field: path,
                bn: Some(bn),
                act,
                pool,
                input_grad,
            } => {
                let (f, bn) = (field(path), field(bn));
                let conv = fused_conv(&f, None, None, *input_grad);
                // A ReLU runs inside the batch norm's op.
                let norm = match act {
                    Some(Act::ReLU) => quote!(#module_mut(&mut ::cnn::nn::WithRelu(&mut #bn), x)),
                    _ => quote!(#module_mut(&mut #bn, x)),
                };
                let act = act.filter(|&act| act != Act::ReLU).map(|act| {
                    let act = unit_value(&Unit::Act(act));
                    quote!(let x = #module(&#act, x)?;)
                });
                let pool = pool.as_ref().map(|pool| {
                    let pool = unit_value(&Unit::Pool(pool.clone()));
                    quote!(let x = #module(&#pool, x)?;)
                });
                quote!({
                    let x = #module(&#conv, x)?;
                    let x = #norm?;
                    #act
                    #pool
                    ::core::result::Result::<_, D::Err>::Ok(x)
                })
            }
            Step::Conv {
                field: path,
                bn: None,
                act,
                pool,
                input_grad,
            } => {
                let f = field(path);
                let fused = fused_conv(&f, *act, pool.as_ref(), *input_grad);
                quote!(#module(&#fused, x))
            }
            Step::Field(path) => {
                let f = field(path);
                quote!(#module(&#f, x))
            }
            Step::Unit(unit) => {
                let value = unit_value(unit);
                quote!(#module(&#value, x))
            }
            Step::BatchNorm {
                field: path, relu, ..
            } if mutable => {
                let f = field(path);
                match relu {
                    true => quote!(#module_mut(&mut ::cnn::nn::WithRelu(&mut #f), x)),
                    false => quote!(#module_mut(&mut #f, x)),
                }
            }
            Step::BatchNorm {
                field: path,
                relu: true,
                ..
            } => {
                let f = field(path);
                quote!(#module(&::cnn::nn::WithRelu(&#f), x))
            }
            Step::BatchNorm { field: path, .. } => {
                let f = field(path);
                quote!(#module(&#f, x))
            }
            Step::Dropout {
                field: Some(path), ..
            } if mutable => {
                let f = field(path);
                quote!(#module_mut(&mut #f, x))
            }
            Step::Dropout { field: None, p } if mutable => {
                let p = Literal::f32_suffixed(*p as f32);
                quote!(#module_mut(&mut #dfdx::nn::modules::Dropout { p: #p }, x))
            }
            Step::Dropout { .. } => return None,
            Step::Residual {
                body,
                shortcut,
                relu,
            } => {
                let body = seq(body, mutable);
                let shortcut = seq(shortcut, mutable);
                let add = if *relu { &add_relu } else { &add };
                quote!({
                    let __shortcut = { let x = #fork; #shortcut x };
                    let __body = { #body x };
                    #add(__body, __shortcut)
                })
            }
            Step::Sum { branches, relu } => {
                let (forks, outs) = branch_values(branches, mutable, &fork);
                // (`check` gives a sum two branches or more.)
                let (first, rest) = outs.split_first()?;
                let (last, rest) = rest.split_last()?;
                let last_add = if *relu { &add_relu } else { &add };
                quote!({
                    #forks
                    let x = #first;
                    #( let x = #add(x, #rest)?; )*
                    #last_add(x, #last)
                })
            }
            Step::Concat { branches, channels } => {
                let (forks, outs) = branch_values(branches, mutable, &fork);
                let (first, rest) = outs.split_first()?;
                let channels = lit(*channels);
                quote!({
                    #forks
                    ::cnn::nn::try_concat::<#channels, _, _, _, _, _>(
                        #first,
                        [#(::cnn::nn::channels_to_usize(#rest)),*],
                    )
                })
            }
            Step::Scale { gate, flatten } => {
                let gate = seq(gate, mutable);
                let flatten = flatten.map(|c| {
                    let flat = unit_value(&Unit::Flatten(c));
                    quote!(let x = #module(&#flat, x)?;)
                });
                quote!({
                    let __gate = { let x = #fork; #gate #flatten x };
                    ::cnn::nn::try_scale(x, __gate)
                })
            }
        };
        Some(quote!(let x = #call?;))
    });
    quote!(#(#steps)*)
}

/// `conv.fused(act, pool)`, skipping the input's gradient when told.
fn fused_conv(
    conv: &TokenStream,
    act: Option<Act>,
    pool: Option<&Pool>,
    input_grad: bool,
) -> TokenStream {
    let act = act.map_or_else(|| quote!(()), |act| unit_value(&Unit::Act(act)));
    let pool = pool.map_or_else(|| quote!(()), |pool| unit_value(&Unit::Pool(pool.clone())));
    let input_grad = (!input_grad).then(|| quote!(.without_input_grad()));
    quote!(#conv.fused(#act, #pool) #input_grad)
}

/// The branches of a `sum` or `concat`: the forks of `x` (every branch but the first gets a
/// copy with an empty tape, made before the first takes `x`), and each branch's output value.
fn branch_values(
    branches: &[Vec<Step>],
    mutable: bool,
    fork: &TokenStream,
) -> (TokenStream, Vec<TokenStream>) {
    let forks = (1..branches.len()).map(|i| {
        let name = format_ident!("__fork{i}");
        quote!(let #name = #fork;)
    });
    let outs = branches.iter().enumerate().map(|(i, steps)| {
        let body = seq(steps, mutable);
        let name = format_ident!("__branch{i}");
        let input = (i > 0).then(|| {
            let fork = format_ident!("__fork{i}");
            quote!(let x = #fork;)
        });
        quote!(let #name = { #input #body x };)
    });
    let names: Vec<_> = (0..branches.len())
        .map(|i| {
            let name = format_ident!("__branch{i}");
            quote!(#name)
        })
        .collect();
    (quote!(#(#forks)* #(#outs)*), names)
}

// ---------------------------------------------------------------------------------------------
// Constants and summary

fn consts(net: &NetPlan) -> TokenStream {
    let name = net.ident;
    let name_str = name.to_string();
    let vis = net.vis;
    let params = lit(net.params);
    let macs = lit(net.macs);
    let input = net.input.map(lit);
    let output: Vec<_> = net.output.iter().map(|&n| lit(n)).collect();
    let out_len = lit(net.output.len());
    let rows = net.rows.iter().map(|row| {
        let Row {
            name,
            path,
            depth,
            kind,
            output,
            params,
            non_trainable,
            macs,
            receptive_field,
        } = row;
        let depth = lit(*depth);
        let output = output.iter().map(|&n| lit(n));
        let (params, non_trainable, macs) = (lit(*params), lit(*non_trainable), lit(*macs));
        let receptive_field = match receptive_field {
            Some((h, w)) => {
                let (h, w) = (lit(*h), lit(*w));
                quote!(::core::option::Option::Some((#h, #w)))
            }
            None => quote!(::core::option::Option::None),
        };
        quote! {
            ::cnn::summary::LayerRow {
                name: #name,
                path: #path,
                depth: #depth,
                kind: #kind,
                output: &[#(#output),*],
                params: #params,
                non_trainable: #non_trainable,
                macs: #macs,
                receptive_field: #receptive_field,
            }
        }
    });
    let params_doc = format!(
        "Trainable parameters: {} (what `num_trainable_params` counts).",
        thousands(net.params)
    );
    let macs_doc = format!(
        "Multiply-adds for one image: {} (conv and linear layers; others count 0).",
        thousands(net.macs)
    );
    quote! {
        impl #name {
            #[doc = #params_doc]
            #vis const PARAMS: usize = #params;
            #[doc = #macs_doc]
            #vis const MACS: usize = #macs;
            /// The shape of one input image, `[C, H, W]`.
            #vis const INPUT: [usize; 3] = [#(#input),*];
            /// The shape of the output for one image.
            #vis const OUTPUT: [usize; #out_len] = [#(#output),*];

            /// The layer table: name, kind, output shape, parameters, multiply-adds and
            /// receptive field of each layer, with totals. It is `Display`.
            #vis const fn summary() -> ::cnn::summary::Summary {
                const ROWS: &[::cnn::summary::LayerRow] = &[#(#rows),*];
                ::cnn::summary::Summary { name: #name_str, input: &[#(#input),*], rows: ROWS }
            }
        }

        // The summary again, reachable from a generic `M: Network` (checkpoints record it).
        impl<__E: ::cnn::__private::dfdx::shapes::Dtype, __D: ::cnn::__private::dfdx::tensor::Storage<__E>>
            ::cnn::Network for #name<__E, __D>
        {
            const SUMMARY: ::cnn::summary::Summary = <#name>::summary();
        }
    }
}

/// The generated part of the struct's documentation: the summary as a Markdown table, so that
/// hovering the type shows it.
fn struct_doc(net: &NetPlan) -> String {
    let name = net.ident;
    let input = fmt_dims(&net.input);
    let output = fmt_dims(&net.output);
    let mut doc = String::new();
    let _ = writeln!(doc, "\n\n# Network\n");
    let _ = writeln!(
        doc,
        "`{input} -> {output}`, generated by `cnn!`: {} trainable parameters{}, {} multiply-adds per image.\n",
        thousands(net.params),
        if net.non_trainable > 0 {
            format!(" (and {} non-trainable)", thousands(net.non_trainable))
        } else {
            String::new()
        },
        thousands(net.macs),
    );
    let _ = writeln!(
        doc,
        "| layer | kind | output | params | mult-adds | receptive field |"
    );
    let _ = writeln!(doc, "|---|---|---|--:|--:|---|");
    for row in &net.rows {
        // Nesting shows as indentation (non-breaking spaces, which Markdown keeps).
        let indent = "\u{a0}\u{a0}".repeat(row.depth);
        let name = if row.name.is_empty() {
            indent.clone()
        } else {
            format!("{indent}`{}`", row.name)
        };
        let kind = format!("{indent}`{}`", row.kind);
        let rf = row
            .receptive_field
            .map_or_else(|| "-".to_string(), |(h, w)| format!("{h}x{w}"));
        let _ = writeln!(
            doc,
            "| {name} | {kind} | `{}` | {} | {} | {rf} |",
            fmt_dims(&row.output),
            // (No larger than the network's total, which `check` found to fit.)
            thousands(row.params.saturating_add(row.non_trainable)),
            thousands(row.macs),
        );
    }
    let _ = writeln!(
        doc,
        "| **total** | | `{output}` | {} | {} | |\n",
        thousands(net.params.saturating_add(net.non_trainable)),
        thousands(net.macs)
    );
    let _ = writeln!(
        doc,
        "Build it with `dev.build_module::<{name}, f32>()`; the built model is a `{name}<f32, Cpu>`. \
         `forward` takes one image `Tensor<Rank3<{}>, ..>` or a batch `Tensor<(B, Const<{}>, ..), ..>` \
         (`B` a `usize` or a `Const`) and returns the output of shape `{output}` or `[B, {}`.\n",
        net.input.map(|n| n.to_string()).join(", "),
        net.input[0],
        &output[1..],
    );
    let _ = writeln!(
        doc,
        "Fields are the layers with parameters and the nested parts: a named entry is the \
         field of its name; an unnamed one is `_N`, numbered by position as PyTorch's \
         `nn.Sequential` numbers its children (the table's first column). The dotted paths are \
         the keys of saved checkpoints and of the mirroring PyTorch module's `state_dict`."
    );
    if !net.input_grad {
        let _ = writeln!(
            doc,
            "\n`#[cnn(input_grad = false)]`: the network's input is treated as data: no gradient is \
             computed for it; do not compose this network after another one (that network's \
             weights would get no gradient). Skipping it saves about a fifth of a LeNet training step."
        );
    }
    match net.mode {
        Mode::Same => {}
        Mode::Dropout => {
            let _ = writeln!(
                doc,
                "\nDropout is active only in `forward_mut` on a traced input (training); `forward` skips it."
            );
        }
        Mode::BatchNorm => {
            let _ = writeln!(
                doc,
                "\nTraining is `forward_mut` on a traced input (batch statistics, updating the running ones); \
                 `forward` on an untraced input is inference (running statistics)."
            );
        }
    }
    doc
}

#[cfg(test)]
mod tests {
    fn expand(src: &str) -> String {
        let input: crate::ast::Input = syn::parse_str(src).unwrap();
        let plan = crate::check::net(&input).unwrap();
        super::net(&plan).to_string()
    }

    /// LeNet's expansion carries the literal sizes and the fused blocks; by default the first
    /// one computes its input's gradient. To read it: `cargo test -p cnn-macros expansion --
    /// --nocapture` (pipe through `rustfmt`).
    #[test]
    fn expansion() {
        const LENET: &str = "pub struct LeNet: [1, 28, 28] -> [10] {
                conv2d(6, kernel = 5, padding = 2), sigmoid,
                avg_pool2d(kernel = 2, stride = 2),
                conv2d(16, kernel = 5), sigmoid,
                avg_pool2d(kernel = 2, stride = 2),
                flatten,
                linear(120), sigmoid,
                linear(84), sigmoid,
                linear(10),
            }";
        let code = expand(LENET);
        println!("{code}");
        let code: String = code.split_whitespace().collect();
        assert!(
            code.contains("Conv2D<1,6,5,5,28,28,28,28,1,1,2,2,1,1,1,1,true,2,2,E,D>"),
            "{code}"
        );
        assert!(code.contains("Linear<400,120,E,D>"), "{code}");
        assert!(code.contains("Flatten2D::<400>"), "{code}");
        assert!(code.contains("net._0.fused("), "{code}");
        assert!(!code.contains("without_input_grad"), "{code}");

        // The opt-in: the attribute is read, not passed on, and only the first block skips its
        // input's gradient (the second one still computes it, for the first).
        let code = expand(&format!("#[cnn(input_grad = false)] {LENET}"));
        let code: String = code.split_whitespace().collect();
        // Once in each of the two input impls (one image, a batch), on the first conv only.
        assert_eq!(code.matches(".without_input_grad()").count(), 2, "{code}");
        assert_eq!(
            code.matches("AvgPool2D::<2,2,28,28,14,14,2,2,0,0>).without_input_grad(),x)")
                .count(),
            2,
            "{code}"
        );
        // (The struct's doc names it, in backticks.)
        assert_eq!(
            code.matches("#[cnn(").count(),
            code.matches("`#[cnn(").count(),
            "{code}"
        );
        assert!(
            code.contains("input_grad=false)]`:thenetwork'sinput"),
            "{code}"
        );
    }

    /// A transposed conv is a field of `ConvTranspose2D` with every const parameter written.
    #[test]
    fn conv_transpose_expansion() {
        let code = expand(
            "struct Up: [4, 5, 5] { conv_transpose2d(6, kernel = 3, stride = 2, padding = 1, \
             output_padding = 1, groups = 2, bias = false) }",
        );
        let code: String = code.split_whitespace().collect();
        assert!(
            code.contains("ConvTranspose2D<4,6,3,3,5,5,10,10,2,2,1,1,1,1,1,1,2,3,false,E,D>"),
            "{code}"
        );
        assert!(code.contains("_0:::cnn::nn::ConvTranspose2D"), "{code}");
    }
}
