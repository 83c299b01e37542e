//! cuDNN's backward-filter convolution for a kernel's gradient on CUDA devices, called through
//! cudarc (the bindings candle uses) as a candle custom operation, with its algorithm named
//! rather than asked of cuDNN's heuristics on every call (which cost more than the convolutions
//! of a small CNN take, docs/cuda.md).

use ar_backend::ConvGeometry;
use candle_core::cuda::cudarc::cudnn::{sys, ConvBackwardFilter, Cudnn, CudnnDataType};
use candle_core::cuda::cudarc::driver::{DeviceRepr, ValidAsZeroBits};
use candle_core::cuda::CudaDType;
use candle_core::{
    backend::BackendStorage, bail, CpuStorage, CudaDevice, CudaStorage, CustomOp2, DType, Layout,
    Result, Shape, WithDType,
};
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

/// The backward-filter algorithm: cuDNN's `ALGO_1`, deterministic (its `ALGO_0` and `ALGO_3`
/// add with atomics, so a run would not repeat its own bits) and defined for every shape, f32
/// and f64.
const ALGORITHM: sys::cudnnConvolutionBwdFilterAlgo_t =
    sys::cudnnConvolutionBwdFilterAlgo_t::CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1;

thread_local! {
    // cuDNN handles are neither Send nor Sync: one per thread (and device), as candle keeps its own.
    static HANDLES: RefCell<HashMap<candle_core::cuda::DeviceId, Arc<Cudnn>>> =
        RefCell::new(HashMap::new());
}

/// The gradient of a kernel of sizes `kernel` (`[o, c, kh, kw]`) from the output gradient and
/// the input, both contiguous on one CUDA device: `e.apply_op2_no_bwd(&x, &WeightGrad { .. })`
/// (`conv::weight_grad` calls it there).
pub(crate) struct WeightGrad {
    pub(crate) kernel: [usize; 4],
    pub(crate) g: ConvGeometry,
}

impl CustomOp2 for WeightGrad {
    fn name(&self) -> &'static str {
        "conv2d-weight-grad-cudnn"
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        bail!("the cuDNN weight gradient runs on CUDA devices only")
    }

    fn cuda_fwd(
        &self,
        e: &CudaStorage,
        el: &Layout,
        x: &CudaStorage,
        xl: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        match (e.dtype(), x.dtype()) {
            (DType::F32, DType::F32) => self.run::<f32>(e, el, x, xl),
            (DType::F64, DType::F64) => self.run::<f64>(e, el, x, xl),
            (a, b) => bail!("conv2d weight gradient: {a:?} and {b:?}, expected f32 or f64 twice"),
        }
    }
}

impl WeightGrad {
    fn run<T>(
        &self,
        e: &CudaStorage,
        el: &Layout,
        x: &CudaStorage,
        xl: &Layout,
    ) -> Result<(CudaStorage, Shape)>
    where
        T: CudaDType + CudnnDataType<Scalar = T> + DeviceRepr + ValidAsZeroBits + WithDType,
    {
        let dev: CudaDevice = e.device().clone();
        let (Some((e0, e1)), Some((x0, x1))) = (el.contiguous_offsets(), xl.contiguous_offsets())
        else {
            bail!("conv2d weight gradient: operands must be contiguous");
        };
        let [b, c, h, w] = dims(xl.shape())?;
        let [be, o, oh, ow] = dims(el.shape())?;
        let [ko, kc, kh, kw] = self.kernel;
        if be != b || ko != o || kc != c {
            bail!(
                "conv2d weight gradient: gradient {:?}, input {:?} and kernel {:?} do not fit",
                el.shape(),
                xl.shape(),
                self.kernel
            );
        }
        let e_view = e.as_cuda_slice::<T>()?.slice(e0..e1);
        let x_view = x.as_cuda_slice::<T>()?.slice(x0..x1);
        let cudnn = handle(&dev)?;
        let (p, s) = (self.g.padding as i32, self.g.stride as i32);
        let conv = cudnn.create_conv2d::<T>(
            [p, p],
            [s, s],
            [1, 1],
            sys::cudnnConvolutionMode_t::CUDNN_CROSS_CORRELATION,
        )?;
        let nchw = sys::cudnnTensorFormat_t::CUDNN_TENSOR_NCHW;
        let i32s = |d: [usize; 4]| d.map(|v| v as i32);
        let x_desc = cudnn.create_4d_tensor::<T>(nchw, i32s([b, c, h, w]))?;
        let dy_desc = cudnn.create_4d_tensor::<T>(nchw, i32s([b, o, oh, ow]))?;
        let dw_desc = cudnn.create_4d_filter::<T>(nchw, i32s(self.kernel))?;
        let op = ConvBackwardFilter { conv: &conv, x: &x_desc, dw: &dw_desc, dy: &dy_desc };
        let workspace_size = op.get_workspace_size(ALGORITHM)?;
        let mut workspace = dev.alloc_zeros::<u8>(workspace_size.max(1))?;
        let mut dw = dev.alloc_zeros::<T>(o * c * kh * kw)?;
        // SAFETY: the descriptors above give the sizes and the contiguous NCHW layout of the
        // two views and of `dw`, all in precision `T` on the device of cuDNN's handle.
        #[allow(unsafe_code)]
        unsafe {
            op.launch(
                ALGORITHM,
                Some(&mut workspace),
                (T::from_f64(1.0), T::from_f64(0.0)),
                &x_view,
                &mut dw,
                &e_view,
            )?;
        }
        Ok((CudaStorage::wrap_cuda_slice(dw, dev), Shape::from(self.kernel.to_vec())))
    }
}

fn dims(s: &Shape) -> Result<[usize; 4]> {
    let (a, b, c, d) = s.dims4()?;
    Ok([a, b, c, d])
}

/// This thread's cuDNN handle on `dev`'s stream.
fn handle(dev: &CudaDevice) -> Result<Arc<Cudnn>> {
    let id = dev.id();
    if let Some(h) = HANDLES.with(|h| h.borrow().get(&id).cloned()) {
        return Ok(h);
    }
    let h = Cudnn::new(dev.cuda_stream())?;
    HANDLES.with(|m| m.borrow_mut().insert(id, h.clone()));
    Ok(h)
}
