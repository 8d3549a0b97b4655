//! The key/value cache of the text decoder: per layer, keys and values of all earlier positions.

use burn::tensor::Tensor;

/// Keys and values per layer, each [kv_heads, positions, head_dim]. Cloning is cheap (tensors
/// are reference-counted), which the layer sweep uses to branch from one prefill.
#[derive(Debug, Clone, Default)]
pub struct KvCache {
    layers: Vec<Option<(Tensor<3>, Tensor<3>)>>,
    len: usize,
}

impl KvCache {
    /// An empty cache for `num_layers` layers.
    pub fn new(num_layers: usize) -> Self {
        KvCache {
            layers: vec![None; num_layers],
            len: 0,
        }
    }

    /// Number of cached positions.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Keys and values of `layer` with `k`/`v` ([kv_heads, new, d]) appended; stores them when
    /// `store` is set.
    pub(crate) fn extend(
        &mut self,
        layer: usize,
        k: Tensor<3>,
        v: Tensor<3>,
        store: bool,
    ) -> (Tensor<3>, Tensor<3>) {
        let (k, v) = match &self.layers[layer] {
            Some((ck, cv)) => (
                Tensor::cat(vec![ck.clone(), k], 1),
                Tensor::cat(vec![cv.clone(), v], 1),
            ),
            None => (k, v),
        };
        if store {
            self.layers[layer] = Some((k.clone(), v.clone()));
        }
        (k, v)
    }

    /// Records that `n` positions were appended to every layer.
    pub(crate) fn advance(&mut self, n: usize) {
        self.len += n;
    }
}
