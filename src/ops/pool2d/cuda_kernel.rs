//! Pooling on `Cuda`: `pool_fwd`/`pool_bwd` of `src/ops/cuda/kernels.cu`, reading the input
//! where dfdx keeps it and writing the output tensor in place.

use super::{Pool2DGeometry, Pool2DKernel, PoolKind};
use crate::ops::cuda::{
    CudaFloat, PoolGeom, alloc, device_of, hold, new_tensor, pool_bwd, pool_fwd,
};
use cudarc::driver::{CudaSlice, DeviceSlice};
use dfdx::shapes::Shape;
use dfdx::tensor::{Cuda, Tensor};

/// With max pooling, each maximum's position in its plane (average pooling keeps nothing).
pub struct CudaPool2DSaved(Option<CudaSlice<u32>>);

impl<E: CudaFloat> Pool2DKernel<E> for Cuda {
    type Pool2DSaved = CudaPool2DSaved;

    fn pool2d_forward<Sx: Shape, So: Shape>(
        &self,
        geom: &Pool2DGeometry,
        x: &Tensor<Sx, E, Self>,
        out_shape: So,
        save: bool,
    ) -> Result<(Tensor<So, E, Self>, Self::Pool2DSaved), Self::Err> {
        let dev = device_of::<E>(self)?;
        let planes = out_shape.num_elements() / (geom.output.0 * geom.output.1);
        let g = PoolGeom::new(geom, planes);
        let x = hold(x)?;
        let mut arg = match save && geom.kind == PoolKind::Max {
            true => Some(alloc::<u32>(&dev, g.out_len())?),
            false => None,
        };
        let out = new_tensor(self, out_shape, |out| {
            pool_fwd(&dev, &g, &x, out, arg.as_mut())
        })?;
        Ok((out, CudaPool2DSaved(arg)))
    }

    fn pool2d_backward(
        &self,
        geom: &Pool2DGeometry,
        saved: Self::Pool2DSaved,
        gout: &Self::Vec,
        dx: &mut Self::Vec,
    ) -> Result<(), Self::Err> {
        let dev = gout.device();
        let g = PoolGeom::new(geom, gout.len() / (geom.output.0 * geom.output.1));
        assert_eq!(dx.len(), g.in_len());
        pool_bwd(&dev, &g, gout, saved.0.as_ref(), dx)
    }
}
