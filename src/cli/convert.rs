//! `taskvec export` and `taskvec quantize`: vector files and models for other tools.

use std::path::Path;

use super::files::{read, write};
use super::tasks;
use crate::error::{Error, Result};
use crate::named::Named;
use crate::taskvec::export::ExportFormat;
use crate::weights::quant::GgmlType;

/// `taskvec export`.
pub(super) fn export_file(
    file: &Path,
    format: ExportFormat,
    out: &Path,
    layers: Option<&str>,
    scale: f32,
) -> Result<()> {
    let f = tasks::load_vector(file)?;
    let bytes = crate::taskvec::export::export(&f, format, layers, scale)?;
    write(out, &bytes)?;
    eprintln!(
        "wrote {} ({}, {} bytes)",
        out.display(),
        format.name().expect("every format is named"),
        bytes.len()
    );
    Ok(())
}

/// `taskvec quantize`: requantizes a GGUF file into a new file, never touching the input.
pub(super) fn quantize_file(input: &Path, output: &Path, qty: GgmlType) -> Result<()> {
    let ty = qty.name();
    if input.is_dir() {
        return Err(Error::load(format!(
            "{} is a directory: `taskvec quantize` takes a GGUF file; a safetensors checkpoint is \
             quantized on load with `--weights {ty}`",
            input.display()
        )));
    }
    let same = match (std::fs::canonicalize(input), std::fs::canonicalize(output)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if same {
        return Err(Error::load(
            "the output must be a different file than the input",
        ));
    }
    let bytes = read(input)?;
    if !crate::weights::gguf::is_gguf(&bytes) {
        return Err(Error::load(format!(
            "{} is not a GGUF file: `taskvec quantize` takes a GGUF (a safetensors checkpoint \
             is quantized on load with `--weights {ty}`)",
            input.display()
        )));
    }
    let (out, report) = crate::weights::requantize::requantize(&bytes, qty)?;
    let tmp = output.with_extension("gguf.partial");
    std::fs::write(&tmp, &out)
        .and_then(|_| std::fs::rename(&tmp, output))
        .map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            Error::load(format!("cannot write {}: {e}", output.display()))
        })?;
    eprintln!(
        "{}: {} tensors quantized to {ty}, {} kept; {:.1} MiB → {:.1} MiB",
        output.display(),
        report.quantized,
        report.kept,
        report.bytes_in as f64 / 1048576.0,
        report.bytes_out as f64 / 1048576.0
    );
    Ok(())
}
