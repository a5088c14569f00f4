//! The transposed convolution on `Cuda`: the device kernels of the conv
//! (`src/ops/cuda/kernels.cu`) run on the adjoint geometry `A`, the conv from this op's output
//! back to its input, whose weight is this op's weight. The input, weight and bias are read
//! where dfdx keeps them, and col2im accumulates straight into the (zeroed) output tensor.
//!
//! Buffers (row-major; `Pin` the input plane, `N = B * Pin`, `K = OUT/G * KH * KW`,
//! `Ig = IN/G`):
//! - `xt`: (IN, N), the input with channels first, kept for the weight gradient
//! - `dcols`: (G * K, N) = w^T (per group (K, Ig)) * xt, folded by col2im into the output
//! - backward: `cols` (G * K, N) = im2col(gout), `z` (IN, N) = w * cols

use super::{ConvTranspose2DGeometry, ConvTranspose2DKernel};
use crate::ops::Activation::Identity;
use crate::ops::cuda::{
    Bcp, CudaFloat, Held, act_grad, add_bias, alloc, bias_act, blas, channel_sum, col2im,
    device_of, gemm, hold, im2col, new_tensor,
};
use cudarc::driver::CudaSlice;
use dfdx::shapes::Shape;
use dfdx::tensor::{Cuda, Tensor};

/// The input (channels first) and the weight tensor (held, not copied).
pub struct CudaConvTranspose2DSaved<E: CudaFloat> {
    xt: CudaSlice<E>,
    w: Held<E>,
}

/// The output's `(B, OUT, OH * OW)`.
fn out_bcp(geom: &ConvTranspose2DGeometry) -> Bcp {
    let ohw = geom.output.0 * geom.output.1;
    (geom.batch, geom.out_channels, ohw)
}

/// `(Pin, N, K, Ig)` for a geometry.
fn sizes(geom: &ConvTranspose2DGeometry) -> (usize, usize, usize, usize) {
    let p = geom.input.0 * geom.input.1;
    let k = geom.out_channels / geom.groups * geom.kernel.0 * geom.kernel.1;
    (p, geom.batch * p, k, geom.in_channels / geom.groups)
}

impl<E: CudaFloat> ConvTranspose2DKernel<E> for Cuda {
    type ConvTranspose2DSaved = CudaConvTranspose2DSaved<E>;

    fn conv_transpose2d_forward<Sx: Shape, Sw: Shape, Sb: Shape, So: Shape>(
        &self,
        geom: &ConvTranspose2DGeometry,
        x: &Tensor<Sx, E, Self>,
        w: &Tensor<Sw, E, Self>,
        b: Option<&Tensor<Sb, E, Self>>,
        out_shape: So,
        _save: bool,
    ) -> Result<(Tensor<So, E, Self>, Self::ConvTranspose2DSaved), Self::Err> {
        let (p, n, k, ig) = sizes(geom);
        let groups = geom.groups;
        let dev = device_of::<E>(self)?;
        let blas = blas(&dev)?;
        let x = hold(x)?;
        let w = hold(w)?;
        let b = b.map(hold).transpose()?;

        // xt: (IN, N), the input with channels first (the identity's act_grad is a transpose)
        let mut xt = alloc::<E>(&dev, geom.in_channels * n)?;
        act_grad(
            &dev,
            &x,
            None,
            &mut xt,
            (geom.batch, geom.in_channels, p),
            Identity,
        )?;
        let mut dcols = alloc::<E>(&dev, groups * k * n)?;
        let strides = (ig * k, ig * n, k * n);
        gemm(
            &blas,
            (k, n, ig),
            &w,
            true,
            &xt,
            false,
            &mut dcols,
            false,
            groups,
            strides,
        )?;
        // The new tensor starts zeroed: col2im adds into it.
        let out = new_tensor(self, out_shape, |out| {
            col2im(&dev, &geom.adjoint(), &dcols, out)?;
            match &b {
                Some(b) => add_bias(&dev, out, b, out_bcp(geom)),
                None => Ok(()),
            }
        })?;
        Ok((out, CudaConvTranspose2DSaved { xt, w }))
    }

    fn conv_transpose2d_backward(
        &self,
        geom: &ConvTranspose2DGeometry,
        saved: Self::ConvTranspose2DSaved,
        gout: &Self::Vec,
        dx: &mut Self::Vec,
        dw: &mut Self::Vec,
        db: Option<&mut Self::Vec>,
    ) -> Result<(), Self::Err> {
        let CudaConvTranspose2DSaved { xt, w } = saved;
        let (p, n, k, ig) = sizes(geom);
        let groups = geom.groups;
        let dev = gout.device();
        let blas = blas(&dev)?;

        // cols = im2col(gout) on the adjoint geometry: (OUT*KH*KW, N)
        let mut cols = alloc::<E>(&dev, groups * k * n)?;
        im2col(&dev, &geom.adjoint(), gout, &mut cols)?;
        // dx += (w * cols), from (IN, N) to (B, IN, Pin)
        let mut z = alloc::<E>(&dev, geom.in_channels * n)?;
        let strides = (ig * k, k * n, ig * n);
        gemm(
            &blas,
            (ig, n, k),
            &w,
            false,
            &cols,
            false,
            &mut z,
            false,
            groups,
            strides,
        )?;
        let x_bcp = (geom.batch, geom.in_channels, p);
        bias_act(&dev, &z, None, dx, x_bcp, Identity, true)?;
        // dw (per group (Ig, K)) += xt (per group (Ig, N)) * cols^T
        let strides = (ig * n, k * n, ig * k);
        gemm(
            &blas,
            (ig, k, n),
            &xt,
            false,
            &cols,
            true,
            dw,
            true,
            groups,
            strides,
        )?;
        if let Some(db) = db {
            channel_sum(&dev, gout, db, out_bcp(geom))?;
        }
        Ok(())
    }
}
