//! Vector files in the page: export and import for other tools, validation, similarity,
//! arithmetic and the map: each the library function the CLI's command calls.

use wasm_bindgen::prelude::*;

use super::{WebModel, js_err, to_js};
use crate::taskvec::lens::similarity_report;
use crate::taskvec::{Example, Input, Prompt, VectorFile};

/// Parses every vector file's JSON text (the first refusal is thrown).
fn parse_files(jsons: &[String]) -> Result<Vec<VectorFile>, JsError> {
    jsons
        .iter()
        .map(|j| VectorFile::from_json(j))
        .collect::<Result<_, _>>()
        .map_err(js_err)
}

/// A vector file's JSON text exported for other tools (`safetensors` or `control-vector`,
/// with `layers` `L` / `A-B` / `all` and `scale` for the latter): the same bytes as `taskvec
/// export`.
#[wasm_bindgen(js_name = exportVector)]
pub fn export_vector(
    json: String,
    format: String,
    layers: Option<String>,
    scale: Option<f32>,
) -> Result<Vec<u8>, JsError> {
    let f = VectorFile::from_json(&json).map_err(js_err)?;
    let format = format.parse().map_err(js_err)?;
    crate::taskvec::export::export(&f, format, layers.as_deref(), scale.unwrap_or(1.0))
        .map_err(js_err)
}

/// The vector file (JSON text) inside a safetensors file written by `taskvec export`.
#[wasm_bindgen(js_name = importSafetensors)]
pub fn import_safetensors(bytes: Vec<u8>) -> Result<String, JsError> {
    crate::taskvec::export::from_safetensors(&bytes)
        .map(|f| f.to_json())
        .map_err(js_err)
}

/// Validates a vector file's text; returns a summary or throws the refusal.
#[wasm_bindgen(js_name = inspectVector)]
pub fn inspect_vector(json: String) -> Result<JsValue, JsError> {
    let f = VectorFile::from_json(&json).map_err(js_err)?;
    to_js(&serde_json::json!({
        "task": f.task.name, "spec": f.task.spec, "model": f.model, "recommended_layer": f.recommended_layer,
        "examples": f.task.examples.len(), "instruction": f.task.instruction, "created_at": f.created_at, "sweep": f.sweep,
    }))
}

/// Checks that a vector file fits a loaded model (throws the refusal otherwise).
#[wasm_bindgen(js_name = checkVector)]
pub fn check_vector(json: String, model: &WebModel, allow_transfer: bool) -> Result<(), JsError> {
    VectorFile::from_json(&json)
        .map_err(js_err)?
        .check_model(&model.m.info, allow_transfer)
        .map_err(js_err)
}

/// Cosine per layer between the first two vector files and the mean-over-layers matrix of all.
#[wasm_bindgen]
pub fn similarity(jsons: Vec<String>) -> Result<JsValue, JsError> {
    let fs = parse_files(&jsons)?;
    to_js(&similarity_report(&fs).map_err(js_err)?)
}

/// `Σ weights[i] · jsons[i]` as a new vector file's JSON (`taskvec combine`'s library code),
/// recording the terms and `expression`.
#[wasm_bindgen(js_name = combineVectors)]
pub fn combine_vectors(
    jsons: Vec<String>,
    weights: Vec<f32>,
    expression: String,
    allow_transfer: bool,
    created_at: String,
) -> Result<String, JsError> {
    if jsons.len() != weights.len() {
        return Err(JsError::new("combine: one weight per vector"));
    }
    let fs = parse_files(&jsons)?;
    let terms: Vec<(f32, &VectorFile)> = weights.iter().copied().zip(&fs).collect();
    crate::taskvec::arith::combine(&terms, &expression, allow_transfer, created_at)
        .map(|f| f.to_json())
        .map_err(js_err)
}

/// The map of vectors (2-D PCA of each file's row `layer`; `taskvec map --json`).
#[wasm_bindgen(js_name = mapVectors)]
pub fn map_vectors(jsons: Vec<String>, layer: usize) -> Result<JsValue, JsError> {
    let fs = parse_files(&jsons)?;
    let refs: Vec<&VectorFile> = fs.iter().collect();
    to_js(&crate::taskvec::arith::map(&refs, layer).map_err(js_err)?)
}

/// The in-context prompt of a vector file's examples and a query, as `apply` answers it (the
/// file's first [`crate::taskvec::engine::DEMOS`] text examples, then `query`, or an image
/// placeholder without one), and the task's word for the logit lens (`null` for other tasks):
/// `{ prompt, task_word }`.
#[wasm_bindgen(js_name = lensPrompt)]
pub fn lens_prompt(json: String, query: Option<String>) -> Result<JsValue, JsError> {
    let f = VectorFile::from_json(&json).map_err(js_err)?;
    let demos: Vec<Example> = f
        .task
        .examples
        .iter()
        .filter(|x| !x.image)
        .take(crate::taskvec::engine::DEMOS)
        .map(|x| Example {
            input: Input::Text(x.input.clone()),
            output: x.output.clone(),
        })
        .collect();
    let query = Input::Text(query.unwrap_or_else(|| crate::tokenize::IMAGE_PLACEHOLDER.into()));
    let prompt = Prompt::few_shot(&demos.iter().collect::<Vec<_>>(), &query).text;
    to_js(&serde_json::json!({
        "prompt": prompt, "task_word": crate::taskvec::task::task_word(&f.task.name),
    }))
}
