//! Tensors and devices: moving host values onto a device, their size there, and whether a
//! device is the host (the CPU backend, where quantized blocks stay in host memory).

use burn::tensor::{Device, Tensor, TensorData};

use crate::weights::HostTensor;

/// Bytes a tensor occupies on its device (elements × the size of its storage type).
pub fn bytes<const D: usize>(t: &Tensor<D>) -> usize {
    t.shape().num_elements() * t.dtype().size()
}

/// Puts a host tensor on the device with rank `D`.
pub fn upload<const D: usize>(t: HostTensor, device: &Device) -> Tensor<D> {
    Tensor::from_data(TensorData::new(t.data, t.shape), device)
}

/// A tensor's values in host memory, row-major f32 (a copy unless the tensor is the CPU
/// backend's and not shared).
pub fn download<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("f32 data after convert")
}

/// Whether this device is the CPU backend, whose tensors are host memory: where taskvec's own
/// CPU kernels run ([`super::qmatmul`], [`super::host_ops`]).
pub fn on_host(device: &Device) -> bool {
    #[cfg(any(feature = "flex", target_arch = "wasm32"))]
    return *device == Device::flex();
    #[cfg(not(any(feature = "flex", target_arch = "wasm32")))]
    return {
        let _ = device;
        false
    };
}

/// Which burn backend runs a model. The CLI spells them `cpu` and `wgpu` (`--device`), the
/// page `cpu` and `webgpu`; both spellings parse, and the page's is the serialized name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(clap::ValueEnum))]
pub enum Backend {
    /// burn's pure-Rust CPU backend (flex).
    #[serde(rename = "cpu")]
    Cpu,
    /// burn's wgpu backend (Vulkan/Metal natively), when built with the `wgpu` feature.
    #[serde(rename = "webgpu", alias = "wgpu")]
    Wgpu,
}

impl Backend {
    /// The page's name: `cpu` or `webgpu`.
    pub fn page_name(self) -> &'static str {
        match self {
            Backend::Cpu => "cpu",
            Backend::Wgpu => "webgpu",
        }
    }
}

impl std::str::FromStr for Backend {
    type Err = crate::Error;

    /// Parses `cpu`, `wgpu` or `webgpu`.
    fn from_str(s: &str) -> crate::Result<Self> {
        match s {
            "cpu" => Ok(Backend::Cpu),
            "wgpu" | "webgpu" => Ok(Backend::Wgpu),
            other => Err(crate::Error::Backend(format!("unknown backend '{other}'"))),
        }
    }
}
