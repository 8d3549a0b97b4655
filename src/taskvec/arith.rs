//! Vector arithmetic and a map of vectors: weighted sums of vector files (`taskvec combine`, the
//! page's library) with the terms recorded, and a 2-D PCA of many files' rows at one layer
//! (`taskvec map`, the page's map panel) — the paper's cross-modal clustering at a glance.

use super::format::{Derivation, DerivationTerm, SpecKind, TaskRecord, VectorFile};
use crate::error::{Error, Result};

/// Parses `a.json + b.json - c.json * 0.5` (also `x` for `*`, and `k * file`) into weighted
/// file names, in order.
pub fn parse_expression(tokens: &[String]) -> Result<Vec<(f32, String)>> {
    let bad = |m: String| Err(Error::TaskVector(format!("combine: {m}")));
    let mut terms: Vec<(f32, String)> = vec![];
    let mut sign = 1.0f32;
    let mut pending: Option<f32> = None; // a `k *` before a file
    let mut expect_operand = true;
    let mut i = 0;
    while i < tokens.len() {
        let t = tokens[i].as_str();
        match t {
            "+" | "-" if !expect_operand => {
                sign = if t == "-" { -1.0 } else { 1.0 };
                expect_operand = true;
            }
            "*" | "x" if !expect_operand => {
                let k = tokens.get(i + 1).map(|s| s.parse::<f32>());
                match k {
                    Some(Ok(k)) if k.is_finite() => {
                        terms.last_mut().expect("an operand came first").0 *= k;
                        i += 1;
                    }
                    _ => return bad(format!("'{t}' must be followed by a finite number")),
                }
            }
            _ if expect_operand => {
                if let Ok(k) = t.parse::<f32>() {
                    if !k.is_finite()
                        || !matches!(tokens.get(i + 1).map(String::as_str), Some("*" | "x"))
                    {
                        return bad(format!(
                            "a number ({t}) must be written as 'k * file' or 'file * k'"
                        ));
                    }
                    pending = Some(k);
                    i += 2;
                    continue;
                }
                terms.push((sign * pending.take().unwrap_or(1.0), t.to_string()));
                sign = 1.0;
                expect_operand = false;
            }
            _ => return bad(format!("expected '+', '-' or '*' before '{t}'")),
        }
        i += 1;
    }
    if terms.is_empty() || expect_operand {
        return bad("the expression is empty or ends with an operator".into());
    }
    Ok(terms)
}

/// `Σ weight · file` for files of one model (same fingerprint, or with `allow_transfer` the same
/// shape), as a new file recording the terms. Its recommended layer is the first term's.
pub fn combine(
    terms: &[(f32, &VectorFile)],
    expression: &str,
    allow_transfer: bool,
    created_at: String,
) -> Result<VectorFile> {
    let (_, first) = *terms
        .first()
        .ok_or_else(|| Error::TaskVector("combine: no vectors given".into()))?;
    for (w, f) in terms {
        if !w.is_finite() {
            return Err(Error::TaskVector(format!(
                "combine: weight {w} is not finite"
            )));
        }
        let (a, b) = (&first.model, &f.model);
        if (a.layers, a.hidden) != (b.layers, b.hidden) {
            return Err(Error::TaskVector(format!(
                "combine: '{}' is {} layers × {} ('{}') but '{}' is {} layers × {} ('{}'): shapes differ",
                first.task.name, a.layers, a.hidden, a.id, f.task.name, b.layers, b.hidden, b.id
            )));
        }
        if a.fingerprint != b.fingerprint && !allow_transfer {
            return Err(Error::TaskVector(format!(
                "combine: '{}' comes from model '{}' ({}), '{}' from '{}' ({}); allow transfer to mix models of the same shape",
                first.task.name, a.id, a.fingerprint, f.task.name, b.id, b.fingerprint
            )));
        }
    }
    let mut vectors = vec![vec![0f32; first.model.hidden]; first.model.layers];
    for (w, f) in terms {
        for (acc, row) in vectors.iter_mut().zip(&f.vectors) {
            for (a, x) in acc.iter_mut().zip(row) {
                *a += w * x;
            }
        }
    }
    let mut out = first.clone();
    out.vectors = vectors;
    out.task = TaskRecord {
        name: expression.to_string(),
        spec: SpecKind::Combination,
        examples: vec![],
        instruction: None,
        prompts: terms.iter().map(|(_, f)| f.task.prompts).sum(),
        seed: first.task.seed,
    };
    out.sweep = None;
    out.derivation = Some(Derivation {
        expression: expression.to_string(),
        terms: terms
            .iter()
            .map(|(w, f)| DerivationTerm {
                weight: *w,
                task: f.task.name.clone(),
                spec: f.task.spec,
                created_at: f.created_at.clone(),
            })
            .collect(),
    });
    out.created_by = concat!("taskvec ", env!("CARGO_PKG_VERSION")).into();
    out.created_at = created_at;
    out.validate()?;
    Ok(out)
}

/// One point of a [`map`]: a file's row at the layer, projected on the first two principal
/// components.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct MapPoint {
    /// Task name.
    pub task: String,
    /// Specification (text examples, image examples, instruction, ensemble, combination).
    pub spec: SpecKind,
    /// Coordinates on components 1 and 2.
    pub xy: [f64; 2],
}

/// A 2-D PCA of vectors.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct VectorMap {
    /// The layer whose rows were mapped.
    pub layer: usize,
    /// One point per file, in input order.
    pub points: Vec<MapPoint>,
    /// Share of the variance on components 1 and 2.
    pub explained: [f64; 2],
}

/// The first two principal components of `rows` (centred): coordinates of every row and the
/// share of variance each explains. Through the n × n Gram matrix (n rows ≪ hidden size),
/// solved by nalgebra's symmetric eigendecomposition; signs fixed so each component's largest
/// coordinate is positive.
pub fn pca2(rows: &[Vec<f32>]) -> Result<(Vec<[f64; 2]>, [f64; 2])> {
    let n = rows.len();
    if n < 2 {
        return Err(Error::TaskVector("a map needs at least two vectors".into()));
    }
    let d = rows[0].len();
    if rows.iter().any(|r| r.len() != d) {
        return Err(Error::TaskVector(
            "map: the vectors have different sizes".into(),
        ));
    }
    let mean: Vec<f64> = (0..d)
        .map(|j| rows.iter().map(|r| r[j] as f64).sum::<f64>() / n as f64)
        .collect();
    let c: Vec<Vec<f64>> = rows
        .iter()
        .map(|r| r.iter().zip(&mean).map(|(&x, m)| x as f64 - m).collect())
        .collect();
    let gram = nalgebra::DMatrix::from_fn(n, n, |i, k| {
        c[i].iter().zip(&c[k]).map(|(a, b)| a * b).sum::<f64>()
    });
    let eig = gram.symmetric_eigen();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| eig.eigenvalues[b].total_cmp(&eig.eigenvalues[a]));
    let total: f64 = eig.eigenvalues.iter().map(|v| v.max(0.0)).sum();
    let mut xy = vec![[0f64; 2]; n];
    let mut explained = [0f64; 2];
    for (comp, &e) in order.iter().take(2).enumerate() {
        let lambda = eig.eigenvalues[e].max(0.0);
        explained[comp] = if total > 0.0 { lambda / total } else { 0.0 };
        // the projection of row i on component e is sqrt(λ) · u_i
        let u = eig.eigenvectors.column(e);
        let big = (0..n)
            .max_by(|&a, &b| u[a].abs().total_cmp(&u[b].abs()))
            .unwrap_or(0);
        let sign = if u[big] < 0.0 { -1.0 } else { 1.0 };
        for i in 0..n {
            xy[i][comp] = sign * lambda.sqrt() * u[i];
        }
    }
    Ok((xy, explained))
}

/// The map of `files` at `layer` (default: each file's shape must agree; files of different
/// models of the same shape are allowed: the map is about directions).
pub fn map(files: &[&VectorFile], layer: usize) -> Result<VectorMap> {
    let rows: Vec<Vec<f32>> = files
        .iter()
        .map(|f| {
            f.vectors.get(layer).cloned().ok_or_else(|| {
                Error::TaskVector(format!(
                    "map: layer {layer} is out of range for '{}' ({} layers)",
                    f.task.name, f.model.layers
                ))
            })
        })
        .collect::<Result<_>>()?;
    let (xy, explained) = pca2(&rows)?;
    Ok(VectorMap {
        layer,
        points: files
            .iter()
            .zip(xy)
            .map(|(f, xy)| MapPoint {
                task: f.task.name.clone(),
                spec: f.task.spec,
                xy,
            })
            .collect(),
        explained,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn expressions_parse() {
        let t = parse_expression(&toks("a.json + b.json - c.json * 0.5")).unwrap();
        assert_eq!(
            t,
            vec![
                (1.0, "a.json".into()),
                (1.0, "b.json".into()),
                (-0.5, "c.json".into())
            ]
        );
        let t = parse_expression(&toks("2 x a.json - b.json")).unwrap();
        assert_eq!(t, vec![(2.0, "a.json".into()), (-1.0, "b.json".into())]);
        for bad in [
            "",
            "a.json +",
            "a.json b.json",
            "a.json * NaN",
            "a.json * z",
            "+ a.json",
        ] {
            assert!(parse_expression(&toks(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn pca_of_known_points() {
        // points on a line y = 2x in 3-D plus a small orthogonal offset: component 1 is the
        // line, with coordinates ±t·|(1,2,0)|; component 2 the offset.
        let rows: Vec<Vec<f32>> = [-2.0f32, -1.0, 0.0, 1.0, 2.0]
            .iter()
            .enumerate()
            .map(|(i, &t)| vec![t, 2.0 * t, if i % 2 == 0 { 0.1 } else { -0.1 }])
            .collect();
        let (xy, ex) = pca2(&rows).unwrap();
        let s5 = 5f64.sqrt();
        let mean_z = 0.1 / 5.0; // three of +0.1, two of −0.1
        for (i, t) in [-2.0, -1.0, 0.0, 1.0, 2.0].iter().enumerate() {
            assert!((xy[i][0] - t * s5).abs() < 1e-6, "{i}: {:?}", xy[i]);
            let z: f64 = if i % 2 == 0 { 0.1 } else { -0.1 } - mean_z;
            assert!((xy[i][1].abs() - z.abs()).abs() < 1e-6, "{i}: {:?}", xy[i]);
        }
        let var1 = 10.0 * 5.0; // Σ t²·5
        let var2: f64 = (0..5)
            .map(|i| (if i % 2 == 0 { 0.1f64 } else { -0.1 } - mean_z).powi(2))
            .sum();
        assert!((ex[0] - var1 / (var1 + var2)).abs() < 1e-9);
        assert!(pca2(&rows[..1]).is_err());
    }
}
