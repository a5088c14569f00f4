use super::pool_layer;
use crate::ops::PoolKind;
use dfdx::shapes::HasShape;

pool_layer!(
    /// 2-D average pooling, PyTorch's `nn.AvgPool2d(kernel_size=(KH, KW), stride=(SH, SW),
    /// padding=(PH, PW))`: floor mode, padded zeros count in the mean (`count_include_pad`).
    ///
    /// A zero-sized unit struct: `AvgPool2D::<2, 2, 28, 28, 14, 14>` is a value.
    ///
    /// # Generics
    /// - `KH`, `KW`: window height and width
    /// - `H`, `W`: input height and width
    /// - `OH`, `OW`: output height and width, `(H + 2*PH - KH) / SH + 1` (checked)
    /// - `SH`, `SW`: stride, defaults to the window (PyTorch's and d2l's convention)
    /// - `PH`, `PW`: padding on each side, at most half the window (checked)
    ///
    /// # Shapes
    /// `(C, H, W) -> (C, OH, OW)`, `(B, C, H, W) -> (B, C, OH, OW)`
    AvgPool2D,
    PoolKind::Avg,
    "AvgPool2D"
);
