//! The intervention interface's values: what a forward pass captures and which patches it
//! applies where ([`Patch`]: layer, position, vector, operator, scale), and how steering carries
//! the prompt's patches to generated tokens.

use crate::error::{Error, Result};

/// How a patch changes the residual stream `h` at its site, with vector `v` and scale `s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Operator {
    /// `h ← s·v` (the paper's patching at s = 1).
    #[default]
    Replace,
    /// `h ← h + s·v` (activation steering).
    Add,
    /// `h ← h + s·‖h‖·v/‖v‖`: the direction of `v` at a strength relative to the stream's norm.
    AddNormalized,
}

impl Operator {
    /// The name used by the CLI, the page and vector files (`replace`, `add`, `add-normalized`).
    pub fn name(self) -> &'static str {
        match self {
            Operator::Replace => "replace",
            Operator::Add => "add",
            Operator::AddNormalized => "add-normalized",
        }
    }
}

impl std::str::FromStr for Operator {
    type Err = Error;

    /// Parses [`Operator::name`] (also the British `add-normalised`).
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "replace" => Ok(Operator::Replace),
            "add" => Ok(Operator::Add),
            "add-normalized" | "add-normalised" => Ok(Operator::AddNormalized),
            other => Err(Error::model(format!(
                "unknown operator '{other}' (replace, add or add-normalized)"
            ))),
        }
    }
}

/// A residual-stream intervention: at the output of decoder layer `layer`, position `position`
/// (absolute, in the prompt), the stream is changed by `op` with `vector` and `scale`.
#[derive(Debug, Clone)]
pub struct Patch {
    /// Decoder layer, 0-based.
    pub layer: usize,
    /// Absolute position in the sequence.
    pub position: usize,
    /// The vector, `hidden` values.
    pub vector: Vec<f32>,
    /// How the stream is changed.
    pub op: Operator,
    /// Strength (finite).
    pub scale: f32,
}

impl Patch {
    /// The paper's patch: the stream becomes `vector`.
    pub fn replace(layer: usize, position: usize, vector: Vec<f32>) -> Self {
        Patch {
            layer,
            position,
            vector,
            op: Operator::Replace,
            scale: 1.0,
        }
    }
}

/// What a forward pass should do besides computing logits.
#[derive(Debug, Clone, Default)]
pub struct Intervention {
    /// Positions whose residual stream is captured at every layer (and the embeddings).
    pub capture: Vec<usize>,
    /// Replacements applied during the pass.
    pub patches: Vec<Patch>,
    /// Compute logits at every position (else only at the last).
    pub all_logits: bool,
    /// In [`Model::generate`], apply the patches' layers, operators and vectors at every
    /// generated token's position too (steering), not only at their prompt positions.
    pub every_token: bool,
}

/// The patches of the prompt's last patched position, moved to `position` (one per layer):
/// what steering applies at each generated token.
pub(super) fn steering_at(patches: &[Patch], position: usize) -> Vec<Patch> {
    let last = patches.iter().map(|p| p.position).max();
    patches
        .iter()
        .filter(|p| Some(p.position) == last)
        .map(|p| Patch {
            position,
            ..p.clone()
        })
        .collect()
}
