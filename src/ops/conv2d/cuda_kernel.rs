//! The fused convolution on `Cuda`: im2col over the whole batch, one cuBLAS gemm per group,
//! then bias and activation (and the pooling kernel) from `src/ops/cuda/kernels.cu`. The input,
//! weight and bias are read where dfdx keeps them and the last kernel writes the output tensor
//! in place (`ops::cuda::{hold, new_tensor}`).
//!
//! Buffers (row-major; `P = OH * OW`, `N = B * P`, `K = C/G * KH * KW`, `Og = O/G`):
//! - `cols`: (G * K, N), the lowered input, kept for the weight gradient
//! - `z`: (O, N) = w (per group (Og, K)) * cols (per group (K, N))
//! - `y`: (B, O, P) = act(z + b), kept for the activation's derivative
//! - the output: `y`, or pool(y) with `arg` (B, O, POH * POW), the maxima's positions

use super::{Activation, Conv2DKernel, Conv2DOp};
use crate::ops::PoolKind;
use crate::ops::cuda::{
    Buf, CudaFloat, Held, PoolGeom, act_grad, alloc, bias_act, blas, channel_sum, col2im,
    device_of, gemm, hold, im2col, new_tensor, pool_bwd, pool_fwd,
};
use cudarc::driver::{CudaSlice, DevicePtr};
use dfdx::shapes::Shape;
use dfdx::tensor::{Cuda, Tensor};

/// What backward needs, on the device.
pub struct CudaConv2DSaved<E: CudaFloat> {
    cols: CudaSlice<E>,
    /// The weight tensor, held (not copied).
    w: Held<E>,
    /// The activation's output (B, O, P), unless the activation is the identity: the output
    /// tensor itself when no pooling follows.
    y: Option<Buf<E>>,
    /// With max pooling, the maxima's positions.
    arg: Option<CudaSlice<u32>>,
}

/// `(P, N, K, Og)` for a geometry.
fn sizes(op: &Conv2DOp) -> (usize, usize, usize, usize) {
    let g = &op.geom;
    let p = g.output.0 * g.output.1;
    let k = g.in_channels / g.groups * g.kernel.0 * g.kernel.1;
    (p, g.batch * p, k, g.out_channels / g.groups)
}

impl<E: CudaFloat> Conv2DKernel<E> for Cuda {
    type Conv2DSaved = Option<CudaConv2DSaved<E>>;

    fn conv2d_forward<Sx: Shape, Sw: Shape, Sb: Shape, So: Shape>(
        &self,
        op: &Conv2DOp,
        x: &Tensor<Sx, E, Self>,
        w: &Tensor<Sw, E, Self>,
        b: Option<&Tensor<Sb, E, Self>>,
        out_shape: So,
        save: bool,
    ) -> Result<(Tensor<So, E, Self>, Self::Conv2DSaved), Self::Err> {
        let g = &op.geom;
        let (p, n, k, og) = sizes(op);
        let (groups, o) = (g.groups, g.out_channels);
        let dev = device_of::<E>(self)?;
        let blas = blas(&dev)?;
        let x = hold(x)?;
        let w = hold(w)?;
        let b = b.map(hold).transpose()?;
        let b = b.as_ref().map(|b| b as &dyn DevicePtr<E>);

        let mut cols = alloc::<E>(&dev, groups * k * n)?;
        im2col(&dev, g, &x, &mut cols)?;
        drop(x);
        let mut z = alloc::<E>(&dev, o * n)?;
        let strides = (og * k, k * n, og * n);
        gemm(
            &blas,
            (og, n, k),
            &w,
            false,
            &cols,
            false,
            &mut z,
            false,
            groups,
            strides,
        )?;
        let bcp = (g.batch, o, p);
        let keep_y = save && op.act != Activation::Identity;
        let (out, arg, y) = match &op.pool {
            Some(pool) => {
                let mut y = alloc::<E>(&dev, o * n)?;
                bias_act(&dev, &z, b, &mut y, bcp, op.act, false)?;
                drop(z);
                let pg = PoolGeom::new(pool, g.batch * o);
                let mut arg = match save && pool.kind == PoolKind::Max {
                    true => Some(alloc::<u32>(&dev, pg.out_len())?),
                    false => None,
                };
                let out = new_tensor(self, out_shape, |out| {
                    pool_fwd(&dev, &pg, &y, out, arg.as_mut())
                })?;
                (out, arg, keep_y.then_some(Buf::Own(y)))
            }
            None => {
                let out = new_tensor(self, out_shape, |y| {
                    bias_act(&dev, &z, b, y, bcp, op.act, false)
                })?;
                let y = match keep_y {
                    true => Some(Buf::Tensor(hold(&out)?)),
                    false => None,
                };
                (out, None, y)
            }
        };
        let saved = save.then_some(CudaConv2DSaved { cols, w, y, arg });
        Ok((out, saved))
    }

    fn conv2d_backward(
        &self,
        op: &Conv2DOp,
        saved: Self::Conv2DSaved,
        gout: &Self::Vec,
        dx: Option<&mut Self::Vec>,
        dw: &mut Self::Vec,
        db: Option<&mut Self::Vec>,
    ) -> Result<(), Self::Err> {
        let CudaConv2DSaved { cols, w, y, arg } =
            saved.expect("conv2d's forward pass ran without a tape, so kept nothing");
        let g = &op.geom;
        let (p, n, k, og) = sizes(op);
        let (groups, o) = (g.groups, g.out_channels);
        let dev = gout.device();
        let blas = blas(&dev)?;

        // gy: (B, O, P), the gradient at the activation's output
        let pooled;
        let gy: &CudaSlice<E> = match &op.pool {
            Some(pool) => {
                let pg = PoolGeom::new(pool, g.batch * o);
                let mut gy = dev.alloc_zeros::<E>(pg.in_len())?;
                pool_bwd(&dev, &pg, gout, arg.as_ref(), &mut gy)?;
                pooled = gy;
                &pooled
            }
            None => gout,
        };
        // gz: (O, N), the gradient at z
        let mut gz = alloc::<E>(&dev, o * n)?;
        let y = y.as_ref().map(|y| y as &dyn DevicePtr<E>);
        act_grad(&dev, gy, y, &mut gz, (g.batch, o, p), op.act)?;
        if let Some(db) = db {
            // gz seen as (1, O, N)
            channel_sum(&dev, &gz, db, (1, o, n))?;
        }
        // dw (per group (Og, K)) += gz (per group (Og, N)) * cols^T
        let strides = (og * n, k * n, og * k);
        gemm(
            &blas,
            (og, k, n),
            &gz,
            false,
            &cols,
            true,
            dw,
            true,
            groups,
            strides,
        )?;
        if let Some(dx) = dx {
            // dcols (per group (K, N)) = w^T * gz, then folded back onto the input
            let mut dcols = alloc::<E>(&dev, groups * k * n)?;
            let strides = (og * k, og * n, k * n);
            gemm(
                &blas,
                (k, n, og),
                &w,
                true,
                &gz,
                false,
                &mut dcols,
                false,
                groups,
                strides,
            )?;
            col2im(&dev, g, &dcols, dx)?;
        }
        Ok(())
    }
}
