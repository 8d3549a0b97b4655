//! Steering: how a task vector goes into a run — the operator (replace, add, add-normalized),
//! its strength, the layers it touches and whether it also acts on every generated token. The
//! paper's patching is the default (replace, scale 1, one layer, the prompt's last position).

use super::engine::TaskVector;
use crate::error::{Error, Result};
use crate::model::{Operator, Patch};

/// How a vector is put into a run.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Steering {
    /// How the stream is changed.
    pub op: Operator,
    /// Strength (finite; 1 is the paper's replace).
    pub scale: f32,
    /// First and last layer (inclusive) the vector's rows go into; `None`: the vector file's
    /// recommended layer.
    pub layers: Option<[usize; 2]>,
    /// Also change the stream at every generated token (not only the prompt's last position).
    pub every_token: bool,
}

impl Default for Steering {
    fn default() -> Self {
        Steering {
            op: Operator::Replace,
            scale: 1.0,
            layers: None,
            every_token: false,
        }
    }
}

impl Steering {
    /// The paper's patch at one layer.
    pub fn at(layer: usize) -> Self {
        Steering {
            layers: Some([layer, layer]),
            ..Default::default()
        }
    }

    /// Whether this is the paper's patch (replace, scale 1, one layer, prompt only).
    pub fn is_paper(&self) -> bool {
        self.op == Operator::Replace
            && self.scale == 1.0
            && !self.every_token
            && self.layers.is_none_or(|[a, b]| a == b)
    }

    /// Parses a layer range: `L` or `A-B` (inclusive).
    pub fn parse_layers(s: &str) -> Result<[usize; 2]> {
        let num = |t: &str| {
            t.trim().parse::<usize>().map_err(|_| {
                Error::TaskVector(format!("layers '{s}': expected L or A-B (layer numbers)"))
            })
        };
        let r = match s.split_once('-') {
            Some((a, b)) => [num(a)?, num(b)?],
            None => [num(s)?; 2],
        };
        if r[0] > r[1] {
            return Err(Error::TaskVector(format!(
                "layers '{s}': the first layer is after the last"
            )));
        }
        Ok(r)
    }

    /// The layer range with the default filled in, checked against a vector of `num_layers`
    /// rows, and the scale checked.
    pub fn resolve(&self, recommended: usize, num_layers: usize) -> Result<[usize; 2]> {
        if !self.scale.is_finite() {
            return Err(Error::TaskVector(format!(
                "scale {} is not a finite number",
                self.scale
            )));
        }
        let r = self.layers.unwrap_or([recommended, recommended]);
        if r[0] > r[1] || r[1] >= num_layers {
            return Err(Error::TaskVector(format!(
                "layers {}-{} are out of range 0..{num_layers}",
                r[0], r[1]
            )));
        }
        Ok(r)
    }

    /// The patches for prompt position `position`: row l of `v` at each layer l of `layers`.
    pub fn patches(&self, v: &TaskVector, layers: [usize; 2], position: usize) -> Vec<Patch> {
        (layers[0]..=layers[1])
            .map(|l| Patch {
                layer: l,
                position,
                vector: v.layers[l].clone(),
                op: self.op,
                scale: self.scale,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_ranges_parse_and_check() {
        assert_eq!(Steering::parse_layers("3").unwrap(), [3, 3]);
        assert_eq!(Steering::parse_layers("2-5").unwrap(), [2, 5]);
        assert!(Steering::parse_layers("5-2").is_err());
        assert!(Steering::parse_layers("a-b").is_err());
        let s = Steering {
            layers: Some([2, 9]),
            ..Default::default()
        };
        assert!(s.resolve(0, 9).is_err());
        assert_eq!(s.resolve(0, 10).unwrap(), [2, 9]);
        assert_eq!(Steering::default().resolve(4, 10).unwrap(), [4, 4]);
        let nan = Steering {
            scale: f32::NAN,
            ..Default::default()
        };
        assert!(
            nan.resolve(0, 10)
                .unwrap_err()
                .to_string()
                .contains("finite")
        );
        assert!("multiply".parse::<Operator>().is_err());
        assert_eq!("add".parse::<Operator>().unwrap(), Operator::Add);
    }
}
