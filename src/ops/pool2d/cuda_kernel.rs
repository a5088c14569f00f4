//! Pooling on `Cuda`: `pool_fwd`/`pool_bwd` of `src/ops/cuda/kernels.cu`.

use super::{Pool2DGeometry, Pool2DKernel, PoolKind};
use crate::ops::cuda::{
    CudaFloat, PoolGeom, alloc, device_of, into_tensor, kernel, launch_cfg, ptr_or_null, to_device,
};
use cudarc::driver::{CudaSlice, DeviceSlice, LaunchAsync};
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
        let x = to_device(&dev, x)?;
        let mut out = alloc::<E>(&dev, g.out_len())?;
        let arg = match save && geom.kind == PoolKind::Max {
            true => Some(alloc::<u32>(&dev, g.out_len())?),
            false => None,
        };
        let arg_ptr = ptr_or_null(arg.as_ref());
        let f = kernel::<E>(&dev, "pool_fwd")?;
        // SAFETY: x holds the planes pool_fwd reads, out and arg the outputs it writes.
        unsafe { f.launch(launch_cfg(g.out_len()), (g, &x, &mut out, arg_ptr)) }?;
        Ok((into_tensor(self, out, out_shape)?, CudaPool2DSaved(arg)))
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
        let arg_ptr = ptr_or_null(saved.0.as_ref());
        let f = kernel::<E>(&dev, "pool_bwd")?;
        // SAFETY: gout and arg hold the pooled planes, dx the input planes pool_bwd adds into.
        unsafe { f.launch(launch_cfg(g.in_len()), (g, gout, arg_ptr, dx)) }?;
        Ok(())
    }
}
