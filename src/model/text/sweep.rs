//! The layer sweep's batched pass: every patch layer's branch of the next position at once.

use burn::tensor::Tensor;

use super::{CacheMode, Replace, TextModel};
use crate::error::{Error, Result};
use crate::model::cache::KvCache;
use crate::model::host_attention::Visible;

impl TextModel {
    /// The layer sweep's pass: the next position (after `cache`; input row `x`, [1, hidden]) with
    /// its residual stream changed at the output of layer `patches[i].layer` by `patches[i]`,
    /// every patch a branch of its own, all in one batched pass. Returns the branches' final
    /// residual rows in patch order ([patches.len(), hidden]). Layers must increase along
    /// `patches`; a patch's `position` is not used.
    ///
    /// Before its patch layer a branch is the unpatched stream, so layer l runs the branches
    /// patched before l plus one shared unpatched row, and no layer runs after the last patch
    /// for it: for one patch per layer, about half the row-layers of every branch through every
    /// layer. The rows go through [`Self::block`] as a chunk at one position whose mask lets
    /// each row see the cached prefix and itself.
    pub fn run_sweep(
        &self,
        x: Tensor<2>,
        cache: &KvCache,
        patches: &[Replace],
    ) -> Result<Tensor<2>> {
        let c = &self.config;
        let d = c.hidden_size;
        let start = cache.len();
        if start + 1 > c.max_positions {
            return Err(Error::model(format!(
                "position {start} exceeds the model's context of {}",
                c.max_positions
            )));
        }
        let ordered = patches.windows(2).all(|w| w[0].layer < w[1].layer);
        if x.dims() != [1, d]
            || !ordered
            || patches
                .iter()
                .any(|r| r.layer >= c.num_layers || r.vector.dims() != [d])
        {
            return Err(Error::model(
                "a sweep needs one input row and patches at increasing layers, one vector each",
            ));
        }
        let Some(last) = patches.last() else {
            return Ok(Tensor::zeros([0, d], &self.device));
        };
        let mut cache = cache.clone();
        // The rows: the patched branches in patch order, then the unpatched stream (while a
        // patch is still to come).
        let mut rows = x;
        let mut next = 0;
        // One RoPE row serves every branch and layer; the mask follows the row count.
        let mut chunk = self.chunk(start, 1, false);
        for l in 0..=last.layer {
            let n = rows.dims()[0];
            chunk.visible = branches(n);
            rows = self.block(l, rows, &chunk, &mut cache, CacheMode::ReadOnly);
            let Some(p) = patches.get(next).filter(|p| p.layer == l) else {
                continue;
            };
            next += 1;
            let unpatched = rows.clone().slice([n - 1..n, 0..d]);
            let branch = Replace {
                position: 0,
                ..p.clone()
            }
            .apply(unpatched.clone());
            let mut parts = vec![rows.slice([0..n - 1, 0..d]), branch];
            if next < patches.len() {
                parts.push(unpatched);
            }
            rows = Tensor::cat(parts, 0);
        }
        // Branches patched before the last layer continue through the remaining layers.
        chunk.visible = branches(rows.dims()[0]);
        for l in last.layer + 1..c.num_layers {
            rows = self.block(l, rows, &chunk, &mut cache, CacheMode::ReadOnly);
        }
        Ok(rows)
    }
}

/// What `n` rows all at one position see: the cached positions and each itself (plain for
/// one row).
fn branches(n: usize) -> Visible {
    if n > 1 {
        Visible::Branches
    } else {
        Visible::All
    }
}
