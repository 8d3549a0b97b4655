//! Files and devices for the commands: reading and writing with clear errors, the model's files
//! from the flags (checked against free memory), the backend's device, safetensors output.

use std::path::{Path, PathBuf};

use burn::tensor::Device;

use super::{Backend, ModelArgs};
use crate::error::{Error, Result};
use crate::loader::{LoadedModel, ModelFiles};

/// Reads a file with its path in the error.
pub fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| Error::Io {
        path: path.display().to_string(),
        source,
    })
}

/// Writes a file with its path in the error.
pub fn write(path: &Path, bytes: impl AsRef<[u8]>) -> Result<()> {
    std::fs::write(path, bytes).map_err(|source| Error::Io {
        path: path.display().to_string(),
        source,
    })
}

/// Bytes of memory the system can still give (Linux `MemAvailable`), when known.
fn available_memory() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Refuses model files that cannot fit in memory before reading them.
fn check_fits(paths: &[&Path]) -> Result<()> {
    let total: u64 = paths
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum();
    if let Some(avail) = available_memory()
        && total > avail
    {
        return Err(Error::load(format!(
            "the model files take {:.1} GiB but only {:.1} GiB of memory is available: close \
             other programs or use a smaller (more quantized) model",
            total as f64 / (1u64 << 30) as f64,
            avail as f64 / (1u64 << 30) as f64
        )));
    }
    Ok(())
}

/// Reads the model files named on the command line.
pub fn model_files(args: &ModelArgs) -> Result<ModelFiles> {
    let p = &args.model;
    if p.is_dir() {
        let text = |name: &str| -> Result<Option<String>> {
            let f = p.join(name);
            if !f.exists() {
                return Ok(None);
            }
            String::from_utf8(read(&f)?)
                .map(Some)
                .map_err(|_| Error::load(format!("{} is not UTF-8 text", f.display())))
        };
        let config = text("config.json")?
            .ok_or_else(|| Error::load(format!("{} has no config.json", p.display())))?;
        let tokenizer = read(&p.join("tokenizer.json"))
            .map_err(|_| Error::load(format!("{} has no tokenizer.json", p.display())))?;
        // The shards: those listed by `model.safetensors.index.json`, else `model.safetensors`,
        // else every `*.safetensors` in the directory.
        let mut shards: Vec<PathBuf> = match text("model.safetensors.index.json")? {
            Some(index) => {
                let j: serde_json::Value = serde_json::from_str(&index)
                    .map_err(|e| Error::load(format!("model.safetensors.index.json: {e}")))?;
                let mut files: Vec<PathBuf> = j["weight_map"]
                    .as_object()
                    .ok_or_else(|| Error::load("model.safetensors.index.json has no weight_map"))?
                    .values()
                    .filter_map(|v| v.as_str().map(|f| p.join(f)))
                    .collect();
                files.dedup();
                files
            }
            None if p.join("model.safetensors").is_file() => vec![p.join("model.safetensors")],
            None => std::fs::read_dir(p)
                .map_err(|source| Error::Io {
                    path: p.display().to_string(),
                    source,
                })?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.extension().is_some_and(|x| x == "safetensors"))
                .collect(),
        };
        shards.sort();
        shards.dedup();
        if shards.is_empty() {
            return Err(Error::load(format!(
                "{} has no *.safetensors file",
                p.display()
            )));
        }
        check_fits(&shards.iter().map(PathBuf::as_path).collect::<Vec<_>>())?;
        let weights = shards.iter().map(|f| read(f)).collect::<Result<_>>()?;
        Ok(ModelFiles::HuggingFace {
            config,
            preprocessor: text("preprocessor_config.json")?.or(text("processor_config.json")?),
            tokenizer,
            weights,
        })
    } else {
        let mut paths = vec![p.as_path()];
        paths.extend(args.mmproj.as_deref());
        check_fits(&paths)?;
        let model = read(p)?;
        let mmproj = args.mmproj.as_deref().map(read).transpose()?;
        Ok(ModelFiles::Gguf { model, mmproj })
    }
}

/// The device for a backend choice.
pub fn device(b: Backend) -> Result<Device> {
    match b {
        #[cfg(feature = "flex")]
        Backend::Cpu => Ok(Device::flex()),
        #[cfg(not(feature = "flex"))]
        Backend::Cpu => Err(Error::Backend(
            "this build has no CPU backend (rebuild with the default `flex` feature)".into(),
        )),
        #[cfg(feature = "wgpu")]
        Backend::Wgpu => Ok(Device::wgpu(Default::default())),
        #[cfg(not(feature = "wgpu"))]
        Backend::Wgpu => Err(Error::Backend(
            "this build has no wgpu backend (rebuild with --features wgpu)".into(),
        )),
    }
}

/// Loads the model named on the command line.
pub fn load_model(args: &ModelArgs, dev: &Device) -> Result<LoadedModel> {
    let opts = crate::loader::LoadOptions {
        mode: args.weights,
        activations: args.activations,
        ..Default::default()
    };
    crate::loader::load_opts(model_files(args)?, dev, opts)
}

/// The bytes of the image file a command was given, if any (none or one).
pub(super) fn image_list(path: &Option<PathBuf>) -> Result<Vec<Vec<u8>>> {
    path.as_deref().map(read).into_iter().collect()
}

/// Little-endian bytes of f32 values.
pub(super) fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Writes named tensors (raw little-endian bytes) to a safetensors file.
pub fn write_safetensors(
    path: &Path,
    tensors: &[(&str, Vec<u8>, Vec<usize>, safetensors::Dtype)],
) -> Result<()> {
    let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
        .iter()
        .map(|(n, b, s, d)| {
            safetensors::tensor::TensorView::new(*d, s.clone(), b)
                .map(|v| (n.to_string(), v))
                .map_err(|e| Error::model(format!("safetensors: {e}")))
        })
        .collect::<Result<_>>()?;
    let bytes = safetensors::serialize(views, None)
        .map_err(|e| Error::model(format!("safetensors: {e}")))?;
    write(path, bytes)
}
