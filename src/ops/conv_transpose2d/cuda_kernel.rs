//! The transposed convolution on `Cuda`: the device kernels of the conv
//! (`src/ops/cuda/kernels.cu`) run on the adjoint geometry `A`, the conv from this op's output
//! back to its input, whose weight is this op's weight.
//!
//! Buffers (row-major; `Pin` the input plane, `N = B * Pin`, `K = OUT/G * KH * KW`,
//! `Ig = IN/G`):
//! - `xt`: (IN, N), the input with channels first, kept for the weight gradient
//! - `dcols`: (G * K, N) = w^T (per group (K, Ig)) * xt, folded by col2im into the output
//! - backward: `cols` (G * K, N) = im2col(gout), `z` (IN, N) = w * cols

use super::{ConvTranspose2DGeometry, ConvTranspose2DKernel};
use crate::ops::cuda::{
    ConvGeom, CudaFloat, alloc, blas, device_of, gemm, int, into_tensor, kernel, launch_cfg,
    per_channel_cfg, to_device,
};
use cudarc::driver::{CudaSlice, DeviceSlice, LaunchAsync};
use dfdx::shapes::Shape;
use dfdx::tensor::{Cuda, Tensor};

/// The input (channels first) and the weight, on the device.
pub struct CudaConvTranspose2DSaved<E> {
    xt: CudaSlice<E>,
    w: CudaSlice<E>,
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
        let (bi, ii, pi) = (int(geom.batch), int(geom.in_channels), int(p));
        let dev = device_of::<E>(self)?;
        let blas = blas(&dev)?;
        let x = to_device(&dev, x)?;
        let w = to_device(&dev, w)?;

        // xt: (IN, N), the input with channels first (the identity's act_grad is a transpose)
        let mut xt = alloc::<E>(&dev, geom.in_channels * n)?;
        let f = kernel::<E>(&dev, "act_grad")?;
        // SAFETY: x is (B, IN, Pin) and xt (IN, N); no activation output is read.
        unsafe { f.launch(launch_cfg(xt.len()), (&x, 0u64, &mut xt, bi, ii, pi, 0i32)) }?;
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
        let mut out = dev.alloc_zeros::<E>(out_shape.num_elements())?;
        let f = kernel::<E>(&dev, "col2im")?;
        let adj = ConvGeom::from(&geom.adjoint());
        // SAFETY: dcols is (OUT*KH*KW, N) and out (B, OUT, OH, OW).
        unsafe { f.launch(launch_cfg(out.len()), (adj, &dcols, &mut out)) }?;
        if let Some(b) = b {
            let b = to_device(&dev, b)?;
            let ohw = int(geom.output.0 * geom.output.1);
            let f = kernel::<E>(&dev, "add_bias")?;
            let oi = int(geom.out_channels);
            // SAFETY: out is (B, OUT, OH*OW) and b (OUT).
            unsafe { f.launch(launch_cfg(out.len()), (&mut out, &b, bi, oi, ohw)) }?;
        }
        let out = into_tensor(self, out, out_shape)?;
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
        let f = kernel::<E>(&dev, "im2col")?;
        let adj = ConvGeom::from(&geom.adjoint());
        // SAFETY: gout is (B, OUT, OH, OW) and cols (OUT*KH*KW, N).
        unsafe { f.launch(launch_cfg(cols.len()), (adj, gout, &mut cols)) }?;
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
        let f = kernel::<E>(&dev, "bias_act")?;
        let (bi, ii, pi) = (int(geom.batch), int(geom.in_channels), int(p));
        // SAFETY: z is (IN, N) and dx (B, IN, Pin); no bias, identity, accumulating.
        unsafe { f.launch(launch_cfg(dx.len()), (&z, 0u64, dx, bi, ii, pi, 0i32, 1i32)) }?;
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
            let f = kernel::<E>(&dev, "channel_sum")?;
            let ohw = int(geom.output.0 * geom.output.1);
            let oi = int(geom.out_channels);
            // SAFETY: gout is (B, OUT, OH*OW) and db (OUT).
            unsafe { f.launch(per_channel_cfg(geom.out_channels), (gout, db, bi, oi, ohw)) }?;
        }
        Ok(())
    }
}
