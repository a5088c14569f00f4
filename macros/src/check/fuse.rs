//! Fusion: which layers of one stack run as one op.
//!
//! Rule: each run `conv2d [batch_norm2d] [relu|sigmoid|tanh] [max_pool2d|avg_pool2d]` within
//! one stack is one step (the library's `Conv2D::fused`, about twice as fast as three layers;
//! in inference the batch norm is folded into the convolution's weights, in training a ReLU
//! after it runs inside the batch norm's op), and so is every other `batch_norm2d, relu` or
//! `batch_norm1d, relu` pair (`WithRelu`), and every `residual`/`sum` followed by `relu` (one
//! pass that adds and applies the ReLU, `ops::add_relu`). A construct
//! (`residual`, `concat`, ..., a block call, a group) ends a run: its steps are already fused
//! inside it.

use super::layers::Placing;
use crate::ir::{Act, FieldLayer, Path, Step, Unit};

/// One entry of a stack, ready for fusion.
pub enum Item {
    /// A layer, with its field when it has one.
    Layer {
        field: Option<Path>,
        placing: Placing,
    },
    /// A construct, already fused inside.
    Steps(Vec<Step>),
}

/// The steps of one stack, fusing each conv → activation → pool run.
pub fn fuse(items: Vec<Item>) -> Vec<Step> {
    let mut steps = Vec::new();
    let mut rest = items.into_iter().peekable();
    while let Some(item) = rest.next() {
        let (field, placing) = match item {
            Item::Steps(mut inner) => {
                // A residual or a sum, then a ReLU: the addition applies it.
                // (A construct from a block call arrives here again in the caller's stack: only a
                // ReLU found now is added.)
                if let [Step::Residual { relu, .. } | Step::Sum { relu, .. }] = &mut inner[..] {
                    if !*relu && rest.next_if(is_relu).is_some() {
                        *relu = true;
                    }
                }
                steps.extend(inner);
                continue;
            }
            Item::Layer { field, placing } => (field, placing),
        };
        // (The walk passes a layer with tensors only with its field: a layer without one had
        // a naming error, and generates nothing.)
        let step = match placing {
            Placing::Conv(_) => {
                let Some(field) = field else { continue };
                let bn = rest
                    .next_if(|next| {
                        matches!(
                            next,
                            Item::Layer {
                                placing: Placing::BatchNorm { image: true, .. },
                                field: Some(_),
                            }
                        )
                    })
                    .and_then(|next| match next {
                        Item::Layer { field, .. } => field,
                        Item::Steps(_) => None,
                    });
                let act = rest
                    .next_if(|next| {
                        matches!(
                            next,
                            Item::Layer {
                                placing: Placing::Unit(Unit::Act(
                                    Act::ReLU | Act::Sigmoid | Act::Tanh
                                )),
                                ..
                            }
                        )
                    })
                    .and_then(|next| match next {
                        Item::Layer {
                            placing: Placing::Unit(Unit::Act(act)),
                            ..
                        } => Some(act),
                        _ => None,
                    });
                let pool = rest
                    .next_if(|next| {
                        matches!(
                            next,
                            Item::Layer {
                                placing: Placing::Unit(Unit::Pool(_)),
                                ..
                            }
                        )
                    })
                    .and_then(|next| match next {
                        Item::Layer {
                            placing: Placing::Unit(Unit::Pool(pool)),
                            ..
                        } => Some(pool),
                        _ => None,
                    });
                Step::Conv {
                    field,
                    bn,
                    act,
                    pool,
                    input_grad: true,
                }
            }
            Placing::ConvTranspose(_) | Placing::Linear(_) => {
                let Some(field) = field else { continue };
                Step::Field(field)
            }
            Placing::BatchNorm { channels, image } => {
                let Some(field) = field else { continue };
                Step::BatchNorm {
                    field,
                    features: (!image).then_some(channels),
                    relu: rest.next_if(is_relu).is_some(),
                }
            }
            Placing::Dropout(p) => Step::Dropout { field, p },
            Placing::Unit(unit) => match field {
                Some(field) => Step::Field(field),
                None => Step::Unit(unit),
            },
        };
        steps.push(step);
    }
    steps
}

/// Whether the item is a ReLU (named or not: a fused one keeps its field).
fn is_relu(item: &Item) -> bool {
    matches!(
        item,
        Item::Layer {
            placing: Placing::Unit(Unit::Act(Act::ReLU)),
            ..
        }
    )
}

/// The field type of a placed layer.
pub fn field_layer(placing: &Placing) -> FieldLayer {
    match placing {
        Placing::Conv(conv) => FieldLayer::Conv(conv.clone()),
        Placing::ConvTranspose(t) => FieldLayer::ConvTranspose(t.clone()),
        Placing::Linear(linear) => FieldLayer::Linear(linear.clone()),
        Placing::BatchNorm { channels, image } => FieldLayer::BatchNorm {
            channels: *channels,
            image: *image,
        },
        Placing::Unit(unit) => FieldLayer::Unit(unit.clone()),
        Placing::Dropout(p) => FieldLayer::Dropout(*p),
    }
}
