//! taskvec: task vectors for small vision-language models (SmolVLM / Idefics3 and Llama LMs),
//! on burn — natively and in the browser.
//!
//! An image goes through [`preprocess`] → [`model::vision`] → [`model::Model::embed`] →
//! [`model::text`] → logits; task-vector code only uses the intervention interface of
//! [`model::Model`] (capture / replace the residual stream).

pub mod bench;
#[cfg(not(target_arch = "wasm32"))]
pub mod cli;
pub mod error;
pub mod loader;
pub mod model;
pub mod named;
pub mod preprocess;
pub mod taskvec;
pub mod tokenize;
#[cfg(target_arch = "wasm32")]
pub mod web;
pub mod weights;

pub use error::{Error, Result};
