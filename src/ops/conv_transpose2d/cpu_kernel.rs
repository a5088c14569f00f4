//! The transposed convolution on `Cpu`: the conv kernels of `conv2d/cpu_kernel.rs` run on the
//! adjoint geometry. Layouts as in [`ConvTranspose2DKernel`].

use super::{ConvTranspose2DGeometry, ConvTranspose2DKernel};
use crate::Float;
use crate::ops::Activation;
use crate::ops::buffer::Buffer;
use crate::ops::conv2d::cpu_kernel::{add_into, backward, forward};
use crate::ops::to_host;
use dfdx::shapes::Shape;
use dfdx::tensor::{Cpu, Tensor, TensorFromVec};

/// The operands, kept on the host for the backward pass.
pub struct CpuConvTranspose2DSaved<E: Float> {
    x: Buffer<E>,
    w: Buffer<E>,
}

impl<E: Float> ConvTranspose2DKernel<E> for Cpu {
    type ConvTranspose2DSaved = CpuConvTranspose2DSaved<E>;

    fn conv_transpose2d_forward<Sx: Shape, Sw: Shape, Sb: Shape, So: Shape>(
        &self,
        geom: &ConvTranspose2DGeometry,
        x: &Tensor<Sx, E, Self>,
        w: &Tensor<Sw, E, Self>,
        b: Option<&Tensor<Sb, E, Self>>,
        out_shape: So,
        _save: bool,
    ) -> Result<(Tensor<So, E, Self>, Self::ConvTranspose2DSaved), Self::Err> {
        let adj = geom.adjoint();
        let ohw = geom.output.0 * geom.output.1;
        let xh = to_host(x);
        let wh = to_host(w);
        // out = the adjoint conv's input gradient for output gradient x: col2im(W^T x)
        let mut out = Buffer::zeroed(out_shape.num_elements());
        let id = Activation::Identity;
        backward(
            &adj,
            id,
            None,
            &[],
            &wh,
            &[],
            &[],
            &xh,
            &mut out,
            &mut [],
            &mut [],
        );
        if let Some(b) = b {
            let bh = to_host(b);
            for (i, plane) in out.chunks_exact_mut(ohw).enumerate() {
                let bias = bh[i % geom.out_channels];
                plane.iter_mut().for_each(|v| *v += bias);
            }
        }
        let out = self.try_tensor_from_vec(out.into_vec(), out_shape)?;
        Ok((out, CpuConvTranspose2DSaved { x: xh, w: wh }))
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
        let CpuConvTranspose2DSaved { x, w } = saved;
        let adj = geom.adjoint();
        let id = Activation::Identity;
        // dx = the adjoint conv applied to the output gradient (the kernel overwrites its
        // output, so it goes through a buffer of its own)
        let mut dx_new = Buffer::for_overwrite(x.len());
        forward(
            &adj,
            id,
            None,
            gout,
            &w,
            None,
            &mut dx_new,
            &mut [],
            &mut [],
        );
        add_into(dx, &dx_new);
        // dw = the adjoint conv's weight gradient, with input gout and output gradient x
        let mut dw_new = Buffer::zeroed(w.len());
        backward(
            &adj,
            id,
            None,
            gout,
            &w,
            &[],
            &[],
            &x,
            &mut [],
            &mut dw_new,
            &mut [],
        );
        add_into(dw, &dw_new);
        if let Some(db) = db {
            let ohw = geom.output.0 * geom.output.1;
            for (i, plane) in gout.chunks_exact(ohw).enumerate() {
                db[i % geom.out_channels] += plane.iter().fold(E::zero(), |s, &v| s + v);
            }
        }
        Ok(())
    }
}
