//! The page's requests as serde structs, turned into the library's types.

use serde::Deserialize;
use wasm_bindgen::prelude::*;

use crate::taskvec::{Example, Input, ReadAt, Spec, Task};

/// A query from the page, and the input of an example: text, or an image (its file's bytes)
/// with a label.
#[derive(Deserialize)]
pub(super) struct QueryIn {
    pub(super) text: Option<String>,
    #[serde(default, with = "serde_bytes_opt")]
    pub(super) image: Option<Vec<u8>>,
    pub(super) label: Option<String>,
}

/// One example from the page: its input (the fields of [`QueryIn`]) and the answer.
#[derive(Deserialize)]
pub(super) struct ExampleIn {
    #[serde(flatten)]
    pub(super) input: QueryIn,
    pub(super) output: String,
}

mod serde_bytes_opt {
    use serde::{Deserialize, Deserializer};
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        Option::<serde_bytes::ByteBuf>::deserialize(d).map(|o| o.map(|b| b.into_vec()))
    }
}

impl QueryIn {
    /// The library's input: the image when there is one, else the trimmed text.
    pub(super) fn input(&self) -> Result<Input, JsError> {
        match (&self.text, &self.image) {
            (_, Some(bytes)) => Ok(Input::Image {
                bytes: bytes.clone(),
                label: self.label.clone().unwrap_or_else(|| "image".into()),
            }),
            (Some(t), None) if !t.trim().is_empty() => Ok(Input::Text(t.trim().to_string())),
            _ => Err(JsError::new(
                "an example or query has neither text nor an image",
            )),
        }
    }
}

/// A request to apply a vector: the query, the patch layer (default: the vector's
/// recommended one), whether a vector of another model may be applied, the answer length and
/// the steering (default: plain patching).
#[derive(Deserialize)]
pub(super) struct ApplyIn {
    pub(super) query: QueryIn,
    pub(super) layer: Option<usize>,
    #[serde(default)]
    pub(super) allow_transfer: bool,
    #[serde(default = "default_max_tokens")]
    pub(super) max_tokens: usize,
    #[serde(default)]
    pub(super) steering: Option<crate::taskvec::Steering>,
}

fn default_max_tokens() -> usize {
    8
}

/// An extraction or evaluation request.
#[derive(Deserialize)]
pub(super) struct TaskIn {
    pub(super) name: String,
    pub(super) spec: Spec,
    #[serde(default)]
    pub(super) examples: Vec<ExampleIn>,
    pub(super) instruction: Option<String>,
    #[serde(default = "default_prompts")]
    pub(super) prompts: usize,
    #[serde(default)]
    pub(super) seed: u64,
    #[serde(default)]
    pub(super) read_at: ReadAt,
    #[serde(default)]
    pub(super) created_at: String,
}

pub(super) fn default_prompts() -> usize {
    30
}

impl TaskIn {
    pub(super) fn task(&self) -> Result<Task, JsError> {
        let examples = self
            .examples
            .iter()
            .map(|e| {
                Ok(Example {
                    input: e.input.input()?,
                    output: e.output.trim().to_string(),
                })
            })
            .collect::<Result<Vec<_>, JsError>>()?;
        if examples.iter().any(|e| e.output.is_empty()) {
            return Err(JsError::new("every example needs an answer"));
        }
        Ok(Task {
            name: self.name.clone(),
            instruction: self.instruction.clone(),
            examples,
        })
    }
}

/// A table request from the page.
#[derive(Deserialize)]
pub(super) struct TableIn {
    #[serde(default)]
    pub(super) rows: Vec<String>,
    pub(super) tasks: Vec<String>,
    #[serde(default)]
    pub(super) seeds: Vec<u64>,
    #[serde(default = "default_prompts")]
    pub(super) prompts: usize,
    #[serde(default)]
    pub(super) read_at: ReadAt,
}
