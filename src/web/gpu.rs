//! WebGPU in the page: the device, the adapter's buffer limits (checked before a model is
//! loaded), the lost-device probe, the test hooks and the fused-kernel check.

use std::cell::RefCell;

use burn::tensor::Device;
#[cfg(feature = "wgpu")]
use serde::Serialize;
use wasm_bindgen::prelude::*;

use crate::model::device::Backend;

#[cfg(feature = "wgpu")]
use super::{js_err, perf_now, to_js};

thread_local! {
    static GPU: RefCell<Option<Device>> = const { RefCell::new(None) };
}

#[cfg(feature = "wgpu")]
thread_local! {
    /// The wgpu handles behind [`GPU`]: the adapter's limits, and the device for the test hook.
    static GPU_SETUP: RefCell<Option<burn::tensor::wgpu::WgpuSetup>> = const { RefCell::new(None) };
    /// A lower buffer limit set by [`debug_limit_webgpu_buffer`] (tests of the refusal).
    static GPU_LIMIT_OVERRIDE: RefCell<Option<u64>> = const { RefCell::new(None) };
}

/// The largest buffer this WebGPU device binds, bytes: the adapter's
/// `min(maxStorageBufferBindingSize, maxBufferSize)` (or the test override).
#[cfg(feature = "wgpu")]
pub(super) fn webgpu_buffer_limit() -> Option<u64> {
    if let Some(v) = GPU_LIMIT_OVERRIDE.with(|o| *o.borrow()) {
        return Some(v);
    }
    GPU_SETUP.with(|s| {
        s.borrow().as_ref().map(|s| {
            let l = s.adapter.limits();
            l.max_storage_buffer_binding_size.min(l.max_buffer_size)
        })
    })
}

/// The WebGPU adapter's name and buffer limits (`{adapter, max_storage_buffer_binding_size,
/// max_buffer_size}`), or null before [`init_webgpu`] succeeded.
#[cfg(feature = "wgpu")]
#[wasm_bindgen(js_name = webGpuLimits)]
pub fn webgpu_limits() -> Result<JsValue, JsError> {
    #[derive(Serialize)]
    struct Limits {
        adapter: String,
        max_storage_buffer_binding_size: u64,
        max_buffer_size: u64,
    }
    let l = GPU_SETUP.with(|s| {
        s.borrow().as_ref().map(|s| {
            let l = s.adapter.limits();
            Limits {
                adapter: s.adapter.get_info().name,
                max_storage_buffer_binding_size: l.max_storage_buffer_binding_size,
                max_buffer_size: l.max_buffer_size,
            }
        })
    });
    to_js(&l)
}

/// Whether the WebGPU device still computes: one tiny op read back (false once it is lost).
#[cfg(feature = "wgpu")]
#[wasm_bindgen(js_name = webGpuAlive)]
pub async fn webgpu_alive() -> bool {
    use burn::tensor::{Tensor, TensorData};
    let Some(dev) = GPU.with(|g| g.borrow().clone()) else {
        return false;
    };
    let t = Tensor::<1>::from_data(TensorData::new(vec![1.0f32], [1]), &dev) + 1.0;
    crate::model::read_f32(t)
        .await
        .is_ok_and(|v| v.as_slice() == [2.0])
}

/// Test hook: destroys the WebGPU device, as a driver reset or a lost GPU would (the page
/// must then fall back to the CPU with a clear message).
#[cfg(feature = "wgpu")]
#[wasm_bindgen(js_name = debugLoseWebGpu)]
pub fn debug_lose_webgpu() -> bool {
    GPU_SETUP.with(|s| s.borrow().as_ref().map(|s| s.device.destroy()).is_some())
}

/// Test hook: pretends the adapter binds at most `bytes` per buffer (the refusal of a model
/// too big for the GPU, and the page's CPU fallback, tested on a GPU that has room).
#[cfg(feature = "wgpu")]
#[wasm_bindgen(js_name = debugLimitWebGpuBuffer)]
pub fn debug_limit_webgpu_buffer(bytes: Option<f64>) {
    GPU_LIMIT_OVERRIDE.with(|o| *o.borrow_mut() = bytes.map(|b| b as u64));
}

/// Refuses, before loading, a GGUF model whose largest buffer the WebGPU device cannot bind.
#[cfg(feature = "wgpu")]
pub(super) fn check_webgpu_room(
    files: &[&[u8]],
    mode: crate::weights::WeightMode,
) -> Result<(), JsError> {
    let Some(limit) = webgpu_buffer_limit() else {
        return Ok(());
    };
    let (name, bytes) = crate::loader::largest_device_buffer(files, mode).map_err(js_err)?;
    if bytes as u64 > limit {
        return Err(JsError::new(&format!(
            "this GPU cannot hold the model: tensor '{name}' needs one buffer of {:.1} MiB but the GPU allows {:.1} MiB per buffer (maxStorageBufferBindingSize / maxBufferSize); use the CPU backend or a more quantized file",
            bytes as f64 / 1048576.0,
            limit as f64 / 1048576.0
        )));
    }
    Ok(())
}

/// Whether this build has the WebGPU backend (the threaded build is CPU-only).
#[wasm_bindgen(js_name = hasWebGpu)]
pub fn has_webgpu() -> bool {
    cfg!(feature = "wgpu")
}

/// Initializes WebGPU once; returns "webgpu" or throws with the reason (the page then falls
/// back to the CPU backend).
#[cfg(not(feature = "wgpu"))]
#[wasm_bindgen(js_name = initWebGpu)]
pub async fn init_webgpu() -> Result<String, JsError> {
    Err(JsError::new(
        "this build has no WebGPU backend (the threaded CPU build)",
    ))
}

/// Initializes WebGPU once; returns "webgpu" or throws with the reason (the page then falls
/// back to the CPU backend).
#[cfg(feature = "wgpu")]
#[wasm_bindgen(js_name = initWebGpu)]
pub async fn init_webgpu() -> Result<String, JsError> {
    if GPU.with(|g| g.borrow().is_some()) {
        return Ok("webgpu".into());
    }
    let (dev, setup) = Device::wgpu_options()
        .init_with_setup_async()
        .await
        .map_err(|e| JsError::new(&format!("WebGPU is not available: {e:?}")))?;
    GPU.with(|g| *g.borrow_mut() = Some(dev));
    GPU_SETUP.with(|s| *s.borrow_mut() = Some(setup));
    Ok("webgpu".into())
}

/// The device of a backend: the CPU, or the WebGPU device [`init_webgpu`] made.
pub(super) fn device(backend: Backend) -> Result<Device, JsError> {
    match backend {
        Backend::Cpu => Ok(Device::flex()),
        Backend::Wgpu => GPU
            .with(|g| g.borrow().clone())
            .ok_or_else(|| JsError::new("WebGPU was not initialized (call initWebGpu first)")),
    }
}

/// The fused WebGPU kernel against the tensor-op path on this page's WebGPU device: per block
/// type and shape, the largest relative difference, both times and their dispatch and byte
/// counts ([`crate::bench::fused_check`]). `sizes`: "check" (small shapes, every kernel branch,
/// no timing) or "bench" (SmolVLM-size products, `runs` timed runs).
#[cfg(feature = "wgpu")]
#[wasm_bindgen(js_name = fusedCheck)]
pub async fn fused_check(sizes: String, runs: usize) -> Result<JsValue, JsError> {
    let dev = device(Backend::Wgpu)?;
    let (shapes, runs) = crate::bench::fused_shapes(&sizes, runs).map_err(js_err)?;
    let r = crate::bench::fused_check(&dev, shapes, runs, &perf_now)
        .await
        .map_err(js_err)?;
    to_js(&r)
}
