//! The values the engine reads and returns: where a vector is read in its prompt ([`ReadAt`]),
//! the task vector itself, and the answers and reports of applying one.

use super::steer::Steering;
use crate::error::{Error, Result};

/// Where an exemplar vector is read in its prompt (`--read-at` on the command line, `read_at`
/// in the page's requests and vector files).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum ReadAt {
    /// The last demonstration's `A:` (the third `:` from the end of demonstrations + query):
    /// the paper's official code (`src_match = -3`).
    #[default]
    #[cfg_attr(
        not(target_arch = "wasm32"),
        value(help = "The last demonstration's `A:` (the paper's code)")
    )]
    Demo,
    /// The query's final `:` (the prompt's last token).
    #[cfg_attr(not(target_arch = "wasm32"), value(help = "The query's final `:`"))]
    Query,
}

impl std::str::FromStr for ReadAt {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "demo" => Ok(ReadAt::Demo),
            "query" => Ok(ReadAt::Query),
            o => Err(Error::TaskVector(format!(
                "unknown read position '{o}': use 'demo' (the last demonstration's A:) or 'query'"
            ))),
        }
    }
}

impl ReadAt {
    /// The description written into vector files.
    pub fn describe(self) -> &'static str {
        match self {
            ReadAt::Demo => {
                "the last demonstration's ':' (third ':' from the end, as the paper's code)"
            }
            ReadAt::Query => "last token (the query's final ':')",
        }
    }
}

/// A task vector: one residual-stream vector per decoder layer, [layers][hidden].
#[derive(Debug, Clone, PartialEq)]
pub struct TaskVector {
    /// Row `l` is the mean residual stream at the output of decoder layer `l`.
    pub layers: Vec<Vec<f32>>,
}

impl TaskVector {
    /// Number of layers.
    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }
    /// Width of each layer's vector.
    pub fn hidden(&self) -> usize {
        self.layers.first().map_or(0, Vec::len)
    }
    /// Per-layer mean of several vectors of the same shape (the ensemble).
    pub fn mean(vs: &[&TaskVector]) -> Result<TaskVector> {
        let first = vs
            .first()
            .ok_or_else(|| Error::TaskVector("nothing to average".into()))?;
        if vs
            .iter()
            .any(|v| v.num_layers() != first.num_layers() || v.hidden() != first.hidden())
        {
            return Err(Error::TaskVector(
                "vectors to ensemble have different shapes (layers × hidden)".into(),
            ));
        }
        let n = vs.len() as f32;
        let layers = (0..first.num_layers())
            .map(|l| {
                (0..first.hidden())
                    .map(|i| vs.iter().map(|v| v.layers[l][i]).sum::<f32>() / n)
                    .collect()
            })
            .collect();
        Ok(TaskVector { layers })
    }
}

/// A generated answer.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Answer {
    /// Decoded text of the new tokens.
    pub text: String,
    /// New token ids.
    pub ids: Vec<u32>,
    /// Most probable first tokens with their probabilities.
    pub top: Vec<(String, f32)>,
}

/// The result of applying a vector to one query (see [`Engine::apply_report`]).
#[derive(Debug, Clone, serde::Serialize)]
pub struct ApplyReport {
    /// The patched layer (the first of the steering's layers).
    pub layer: usize,
    /// How the vector was put in (layers resolved).
    pub steering: Steering,
    /// Answer with the vector patched in (steered).
    pub patched: Answer,
    /// Answer to the bare query.
    pub zero_shot: Answer,
    /// Answer with demonstrations in the prompt, when the vector records text examples.
    pub icl: Option<Answer>,
    /// First-token prediction for every patch layer.
    pub sweep: Vec<LayerPrediction>,
}

/// The first-token prediction at one patched layer.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LayerPrediction {
    /// Patched layer.
    pub layer: usize,
    /// Greedy first token id.
    pub token: u32,
    /// Its text.
    pub text: String,
    /// Its probability.
    pub prob: f32,
}
