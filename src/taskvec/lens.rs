//! Logit lens and vector similarity: what each layer's residual stream at the last position
//! would predict (final norm + LM head), and cosine similarity between task vectors.

use super::engine::{Engine, softmax, top_k};
use super::task::Prompt;
use crate::error::{Error, Result};
use crate::model::read_f32;

/// One layer of the logit lens.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LensLayer {
    /// Decoder layer (0-based).
    pub layer: usize,
    /// Most probable tokens with probabilities.
    pub top: Vec<(String, f32)>,
    /// Probability of each tracked token, in the order given.
    pub tracked: Vec<f32>,
}

/// The logit lens of a prompt.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Lens {
    /// Tracked words and the token used for each (the first token of the word).
    pub tracked_tokens: Vec<(String, String)>,
    /// One entry per decoder layer.
    pub layers: Vec<LensLayer>,
}

impl Engine<'_> {
    /// Logit lens at the prompt's last position, with `track`ed words' first tokens.
    pub async fn lens(&self, prompt: &Prompt, track: &[String], k: usize) -> Result<Lens> {
        let mut tracked_ids = Vec::new();
        let mut tracked_tokens = Vec::new();
        for w in track {
            let ids = self.m.tokenizer.encode(w)?;
            let id = *ids
                .iter()
                .find(|&&i| Some(i) != self.m.tokenizer.add_bos)
                .ok_or_else(|| {
                    Error::TaskVector(format!("the tracked word {w:?} has no tokens"))
                })?;
            tracked_ids.push(id as usize);
            tracked_tokens.push((w.clone(), self.m.tokenizer.decode(&[id])?));
        }
        let states = self.last_states(prompt).await?;
        let logits = read_f32(self.m.model.logit_lens(&states[1..])?).await?;
        let vocab = logits.len() / (states.len() - 1);
        let layers = logits
            .chunks(vocab)
            .enumerate()
            .map(|(layer, row)| {
                let p = softmax(row);
                let top = top_k(&p, k)
                    .into_iter()
                    .map(|i| Ok((self.m.tokenizer.decode(&[i as u32])?, p[i])))
                    .collect::<Result<_>>()?;
                Ok(LensLayer {
                    layer,
                    top,
                    tracked: tracked_ids.iter().map(|&i| p[i]).collect(),
                })
            })
            .collect::<Result<_>>()?;
        Ok(Lens {
            tracked_tokens,
            layers,
        })
    }
}

/// Mean and 10th–90th percentile band of a probability over prompts.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Band {
    /// Mean over prompts.
    pub mean: f32,
    /// 10th percentile.
    pub lo: f32,
    /// 90th percentile.
    pub hi: f32,
}

impl Band {
    fn of(mut v: Vec<f32>) -> Band {
        v.sort_by(f32::total_cmp);
        let at = |q: f32| v[((v.len() - 1) as f32 * q).round() as usize];
        Band {
            mean: v.iter().sum::<f32>() / v.len() as f32,
            lo: at(0.1),
            hi: at(0.9),
        }
    }
}

/// One layer of the aggregated lens.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AggregateLayer {
    /// Decoder layer (0-based).
    pub layer: usize,
    /// Probability of each prompt's query (its first token).
    pub input: Band,
    /// Probability of the task word (when the task has one).
    pub task: Option<Band>,
    /// Probability of each prompt's answer (its first token).
    pub answer: Band,
    /// The most frequent top-1 tokens at this layer with the share of prompts they top.
    pub top: Vec<(String, f32)>,
}

/// The three-phase logit lens over many in-context prompts (the paper's Figure: input → task
/// → answer).
#[derive(Debug, Clone, serde::Serialize)]
pub struct AggregateLens {
    /// Task name.
    pub task: String,
    /// The task word tracked, if any.
    pub task_word: Option<String>,
    /// Prompts averaged.
    pub prompts: usize,
    /// One entry per decoder layer.
    pub layers: Vec<AggregateLayer>,
}

impl Engine<'_> {
    /// The logit lens at the last position of up to `n` five-shot prompts of the task's text
    /// examples (each example in turn the query, demonstrations drawn with `seed`), tracking the
    /// query, `task_word` and the answer (each the sum of its bare and space-prefixed first
    /// tokens); `progress(done, total)` after each prompt.
    pub async fn lens_aggregate(
        &self,
        task: &super::Task,
        task_word: Option<&str>,
        n: usize,
        seed: u64,
        mut progress: impl FnMut(usize, usize),
    ) -> Result<AggregateLens> {
        let text: Vec<super::Example> = task
            .examples
            .iter()
            .filter(|e| matches!(e.input, super::Input::Text(_)))
            .cloned()
            .collect();
        let prompts = Engine::exemplar_prompts(&text, n, seed)?;
        let total = prompts.len();
        let mut per_prompt: Vec<Lens> = Vec::with_capacity(total);
        for (i, p) in prompts.iter().enumerate() {
            let super::Input::Text(q) = &text[i].input else {
                unreachable!("text examples only")
            };
            // each word with and without a leading space: middle layers predict the spaced
            // form, the last layer the bare one after "A:"
            let words: Vec<&str> = [Some(q.as_str()), Some(text[i].output.as_str()), task_word]
                .into_iter()
                .flatten()
                .collect();
            let track: Vec<String> = words
                .iter()
                .flat_map(|w| [w.to_string(), format!(" {w}")])
                .collect();
            let mut lens = self.lens(p, &track, 1).await?;
            for l in &mut lens.layers {
                l.tracked = l
                    .tracked
                    .chunks(2)
                    .zip(track.chunks(2))
                    .map(|(p, w)| {
                        // the two spellings may share their first token: count it once
                        let same = self.m.tokenizer.encode(&w[0]).ok()
                            == self.m.tokenizer.encode(&w[1]).ok();
                        if same { p[0] } else { p[0] + p[1] }
                    })
                    .collect();
            }
            per_prompt.push(lens);
            progress(i + 1, total);
        }
        let layers = (0..self.m.model.num_layers())
            .map(|l| {
                let col = |k: usize| -> Vec<f32> {
                    per_prompt.iter().map(|x| x.layers[l].tracked[k]).collect()
                };
                let mut counts: Vec<(String, usize)> = vec![];
                for x in &per_prompt {
                    let t = &x.layers[l].top[0].0;
                    match counts.iter_mut().find(|(s, _)| s == t) {
                        Some(c) => c.1 += 1,
                        None => counts.push((t.clone(), 1)),
                    }
                }
                counts.sort_by_key(|c| std::cmp::Reverse(c.1));
                AggregateLayer {
                    layer: l,
                    input: Band::of(col(0)),
                    answer: Band::of(col(1)),
                    task: task_word.map(|_| Band::of(col(2))),
                    top: counts
                        .into_iter()
                        .take(3)
                        .map(|(t, c)| (t, c as f32 / total as f32))
                        .collect(),
                }
            })
            .collect();
        Ok(AggregateLens {
            task: task.name.clone(),
            task_word: task_word.map(String::from),
            prompts: total,
            layers,
        })
    }
}

/// Cosine similarity of two vectors (0 when either is zero).
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let (mut ab, mut aa, mut bb) = (0f64, 0f64, 0f64);
    for (x, y) in a.iter().zip(b) {
        ab += (*x as f64) * (*y as f64);
        aa += (*x as f64).powi(2);
        bb += (*y as f64).powi(2);
    }
    if aa == 0.0 || bb == 0.0 {
        0.0
    } else {
        (ab / (aa.sqrt() * bb.sqrt())) as f32
    }
}

/// Per-layer cosine similarity between two task vectors of the same shape.
pub fn cosine_per_layer(a: &super::TaskVector, b: &super::TaskVector) -> Result<Vec<f32>> {
    if a.num_layers() != b.num_layers() || a.hidden() != b.hidden() {
        return Err(Error::TaskVector(format!(
            "cannot compare vectors of {}×{} and {}×{}",
            a.num_layers(),
            a.hidden(),
            b.num_layers(),
            b.hidden()
        )));
    }
    Ok(a.layers
        .iter()
        .zip(&b.layers)
        .map(|(x, y)| cosine(x, y))
        .collect())
}

/// Similarity matrix across vectors: at `layer`, or averaged over layers when `None`.
pub fn similarity_matrix(vs: &[&super::TaskVector], layer: Option<usize>) -> Result<Vec<Vec<f32>>> {
    vs.iter()
        .map(|a| {
            vs.iter()
                .map(|b| {
                    let per = cosine_per_layer(a, b)?;
                    match layer {
                        Some(l) => per
                            .get(l)
                            .copied()
                            .ok_or_else(|| Error::TaskVector(format!("layer {l} out of range"))),
                        None => Ok(per.iter().sum::<f32>() / per.len().max(1) as f32),
                    }
                })
                .collect()
        })
        .collect()
}

/// Per-layer cosine of the first two vectors and the mean-over-layers matrix of all of them.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SimilarityReport {
    /// Cosine per layer between the first two vectors.
    pub per_layer: Vec<f32>,
    /// Mean cosine over layers for every pair.
    pub matrix_mean_over_layers: Vec<Vec<f32>>,
}

/// Compares two or more vector files.
pub fn similarity_report(files: &[super::VectorFile]) -> Result<SimilarityReport> {
    if files.len() < 2 {
        return Err(Error::TaskVector(
            "similarity needs at least two vectors".into(),
        ));
    }
    let vs: Vec<super::TaskVector> = files.iter().map(super::VectorFile::vector).collect();
    let refs: Vec<&super::TaskVector> = vs.iter().collect();
    Ok(SimilarityReport {
        per_layer: cosine_per_layer(refs[0], refs[1])?,
        matrix_mean_over_layers: similarity_matrix(&refs, None)?,
    })
}
