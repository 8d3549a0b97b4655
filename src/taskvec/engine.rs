//! Extraction, patching and the fast layer sweep, using only the model's intervention
//! interface (capture at a position, replace at (layer, position), resume after a layer).

use rand::SeedableRng;
use rand::rngs::StdRng;

use super::steer::Steering;
use super::task::{Example, Input, Prompt, draw_demos};
use crate::error::{Error, Result};
use crate::loader::LoadedModel;
use crate::model::{Intervention, KvCache, Patch, argmax, read_f32};
use burn::tensor::Tensor;

pub use super::vector::{Answer, ApplyReport, LayerPrediction, ReadAt, TaskVector};

/// Demonstrations per prompt, as in the paper.
pub const DEMOS: usize = 5;

/// Most extraction prompts one vector may average (each is a forward pass).
pub const MAX_PROMPTS: usize = 1000;

/// Softmax of a logit row (vectorized: a sweep reads one 49K-token row per layer).
pub fn softmax(v: &[f32]) -> Vec<f32> {
    let mut p = v.to_vec();
    crate::model::host_ops::softmax_row(&mut p, 1.0);
    p
}

/// Indices of the `k` largest values, largest first.
pub fn top_k(v: &[f32], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    let k = k.min(v.len());
    if k == 0 {
        return vec![];
    }
    idx.select_nth_unstable_by(k - 1, |&a, &b| v[b].total_cmp(&v[a]));
    idx.truncate(k);
    idx.sort_by(|&a, &b| v[b].total_cmp(&v[a]));
    idx
}

/// A prompt run up to its last token ([`Engine::prefix`]): the keys and values of every
/// earlier position and the last position's input row, to branch from without re-running.
pub struct Prefix {
    /// Tokens in the whole prompt.
    pub len: usize,
    /// The last position's input embedding, [1, hidden].
    last: Tensor<2>,
    /// Keys and values of positions `0..len - 1` (cloning shares them).
    cache: KvCache,
}

/// Task-vector operations on one loaded model.
pub struct Engine<'a> {
    /// The model.
    pub m: &'a LoadedModel,
}

impl<'a> Engine<'a> {
    /// Wraps a loaded model.
    pub fn new(m: &'a LoadedModel) -> Self {
        Engine { m }
    }

    /// Token ids and input embeddings (image features cached per distinct image).
    fn embed(&self, p: &Prompt) -> Result<(Vec<u32>, Tensor<2>)> {
        let refs: Vec<&[u8]> = p.images.iter().map(Vec::as_slice).collect();
        self.m.embed_prompt(&p.text, &refs)
    }

    /// Position a vector is read at in prompt `ids` (see [`ReadAt`]): the last token, or the
    /// third `:` from the end (the last demonstration's `A:` when a query follows).
    pub fn read_position(&self, ids: &[u32], at: ReadAt) -> Result<usize> {
        match at {
            ReadAt::Query => ids
                .len()
                .checked_sub(1)
                .ok_or_else(|| Error::TaskVector("the prompt is empty".into())),
            ReadAt::Demo => {
                let colon = *self.m.tokenizer.encode("A:")?.last().ok_or_else(|| {
                    Error::TaskVector("the tokenizer gives no token for ':'".into())
                })?;
                let hits: Vec<usize> = (0..ids.len()).filter(|&i| ids[i] == colon).collect();
                hits.len()
                    .checked_sub(3)
                    .map(|k| hits[k])
                    .ok_or_else(|| {
                        Error::TaskVector(
                            "reading at the last demonstration's 'A:' needs a prompt with at least one demonstration and a query".into(),
                        )
                    })
            }
        }
    }

    /// Residual stream at the prompt's last position for every layer: [layers + 1][hidden]
    /// (index 0 = embeddings, l+1 = output of decoder layer l).
    pub async fn last_states(&self, p: &Prompt) -> Result<Vec<Vec<f32>>> {
        self.states_at(p, ReadAt::Query).await
    }

    /// Residual stream at the [`ReadAt`] position for every layer: [layers + 1][hidden]. Only
    /// the prompt up to that position runs (later tokens cannot change it: attention is causal).
    pub async fn states_at(&self, p: &Prompt, at: ReadAt) -> Result<Vec<Vec<f32>>> {
        let (ids, x) = self.embed(p)?;
        let pos = self.read_position(&ids, at)?;
        let d = self.m.model.hidden_size();
        let x = if pos + 1 < ids.len() {
            x.slice([0..pos + 1, 0..d])
        } else {
            x
        };
        let iv = Intervention {
            capture: vec![pos],
            ..Default::default()
        };
        let out = self
            .m
            .model
            .forward(x, KvCache::new(self.m.model.num_layers()), &iv)?;
        let flat = read_f32(out.hidden.expect("captured")).await?;
        Ok(flat
            .chunks(self.m.model.hidden_size())
            .map(<[f32]>::to_vec)
            .collect())
    }

    /// Mean over prompts of the last-position residual stream of decoder layers.
    pub async fn mean_states(
        &self,
        prompts: &[Prompt],
        progress: impl FnMut(usize, usize),
    ) -> Result<TaskVector> {
        self.mean_states_at(prompts, ReadAt::Query, progress).await
    }

    /// Mean over prompts of the residual stream of decoder layers at the [`ReadAt`] position.
    pub async fn mean_states_at(
        &self,
        prompts: &[Prompt],
        at: ReadAt,
        mut progress: impl FnMut(usize, usize),
    ) -> Result<TaskVector> {
        if prompts.is_empty() {
            return Err(Error::TaskVector("no prompts to extract from".into()));
        }
        let (l, d) = (self.m.model.num_layers(), self.m.model.hidden_size());
        let mut acc = vec![vec![0f64; d]; l];
        for (i, p) in prompts.iter().enumerate() {
            let s = self.states_at(p, at).await?;
            for (a, row) in acc.iter_mut().zip(&s[1..]) {
                for (x, y) in a.iter_mut().zip(row) {
                    *x += *y as f64;
                }
            }
            progress(i + 1, prompts.len());
        }
        let n = prompts.len() as f64;
        Ok(TaskVector {
            layers: acc
                .into_iter()
                .map(|r| r.into_iter().map(|x| (x / n) as f32).collect())
                .collect(),
        })
    }

    /// The extraction prompts for exemplar vectors: one per example (up to `n`), each with
    /// [`DEMOS`] random other examples as demonstrations.
    pub fn exemplar_prompts(examples: &[Example], n: usize, seed: u64) -> Result<Vec<Prompt>> {
        if n > MAX_PROMPTS {
            return Err(Error::TaskVector(format!(
                "{n} extraction prompts asked for; at most {MAX_PROMPTS} are supported (the paper uses 30)"
            )));
        }
        if examples.len() > crate::taskvec::task::MAX_EXAMPLES {
            return Err(Error::TaskVector(format!(
                "{} examples given; at most {} are supported",
                examples.len(),
                crate::taskvec::task::MAX_EXAMPLES
            )));
        }
        if examples.len() < 2 {
            return Err(Error::TaskVector(format!(
                "at least 2 examples are needed for an exemplar task vector, got {}",
                examples.len()
            )));
        }
        let queries: Vec<Input> = examples.iter().map(|e| e.input.clone()).collect();
        Ok(Self::source_prompts(examples, &queries, n, seed))
    }

    /// Source prompts across modalities: for query `i` (up to `n`), [`DEMOS`] demonstrations
    /// drawn at random from `demos` without index `i`, then `queries[i]` (the same item, maybe in
    /// another modality). The draws depend only on the seed and the order of the items.
    pub fn source_prompts(
        demos: &[Example],
        queries: &[Input],
        n: usize,
        seed: u64,
    ) -> Vec<Prompt> {
        let mut rng = StdRng::seed_from_u64(seed);
        queries
            .iter()
            .enumerate()
            .take(n.max(1))
            .map(|(i, q)| Prompt::few_shot(&draw_demos(demos, Some(i), q, DEMOS, &mut rng), q))
            .collect()
    }

    /// Exemplar task vector (text or image examples).
    pub async fn extract_examples(
        &self,
        examples: &[Example],
        n: usize,
        seed: u64,
        progress: impl FnMut(usize, usize),
    ) -> Result<TaskVector> {
        self.mean_states(&Self::exemplar_prompts(examples, n, seed)?, progress)
            .await
    }

    /// Exemplar task vector read at `at` (the paper's protocol reads at [`ReadAt::Demo`]).
    pub async fn extract_examples_at(
        &self,
        examples: &[Example],
        n: usize,
        seed: u64,
        at: ReadAt,
        progress: impl FnMut(usize, usize),
    ) -> Result<TaskVector> {
        self.mean_states_at(&Self::exemplar_prompts(examples, n, seed)?, at, progress)
            .await
    }

    /// Instruction task vector: the instruction's last-token residual stream.
    pub async fn extract_instruction(&self, instruction: &str) -> Result<TaskVector> {
        self.mean_states(&[Prompt::instruction(instruction)?], |_, _| {})
            .await
    }

    fn check_vector(&self, v: &TaskVector) -> Result<()> {
        let (l, d) = (self.m.model.num_layers(), self.m.model.hidden_size());
        if v.num_layers() != l || v.hidden() != d {
            return Err(Error::TaskVector(format!(
                "the vector has {} layers × {} values, this model has {l} layers × {d}: it was made for a different architecture",
                v.num_layers(),
                v.hidden()
            )));
        }
        Ok(())
    }

    /// Greedy answer to `prompt`, optionally with `vector`'s row `layer` replacing the residual
    /// stream of the last position at that layer.
    pub async fn answer(
        &self,
        prompt: &Prompt,
        patch: Option<(&TaskVector, usize)>,
        max_new: usize,
    ) -> Result<Answer> {
        match patch {
            Some((v, layer)) => {
                self.answer_steered(prompt, Some((v, &Steering::at(layer))), max_new)
                    .await
            }
            None => self.answer_steered(prompt, None, max_new).await,
        }
    }

    /// Greedy answer to `prompt`, optionally steered by `vector` (see [`Steering`]; its layers
    /// must be set). Stops at an end-of-sequence token.
    pub async fn answer_steered(
        &self,
        prompt: &Prompt,
        steer: Option<(&TaskVector, &Steering)>,
        max_new: usize,
    ) -> Result<Answer> {
        self.continuation(prompt, steer, max_new, true).await
    }

    /// Greedy continuation of `prompt` (optionally steered) for up to `max_new` tokens; with
    /// `stop_at_eos` it ends at an end-of-sequence token (dropped), else it runs all `max_new`.
    pub async fn continuation(
        &self,
        prompt: &Prompt,
        steer: Option<(&TaskVector, &Steering)>,
        max_new: usize,
        stop_at_eos: bool,
    ) -> Result<Answer> {
        self.continuation_streaming(prompt, steer, max_new, stop_at_eos, &mut |_| {})
            .await
    }

    /// [`Self::continuation`], calling `on_text` with the decoded text so far after each token.
    pub async fn continuation_streaming(
        &self,
        prompt: &Prompt,
        steer: Option<(&TaskVector, &Steering)>,
        max_new: usize,
        stop_at_eos: bool,
        on_text: &mut dyn FnMut(&str),
    ) -> Result<Answer> {
        let q = self.prefix(prompt)?;
        self.continuation_from(&q, steer, max_new, stop_at_eos, on_text)
            .await
    }

    /// Runs `prompt` up to (not including) its last token: every continuation, first token
    /// and sweep of that prompt can branch from the result, since patches and steering touch
    /// only the last position and later ones (attention is causal).
    pub fn prefix(&self, prompt: &Prompt) -> Result<Prefix> {
        let (ids, x) = self.embed(prompt)?;
        let (n, d) = (ids.len(), self.m.model.hidden_size());
        if n == 0 {
            return Err(Error::TaskVector("the prompt is empty".into()));
        }
        let cache = if n > 1 {
            self.m
                .model
                .forward(
                    x.clone().slice([0..n - 1, 0..d]),
                    KvCache::new(self.m.model.num_layers()),
                    &Intervention::default(),
                )?
                .cache
        } else {
            KvCache::new(self.m.model.num_layers())
        };
        Ok(Prefix {
            len: n,
            last: x.slice([n - 1..n, 0..d]),
            cache,
        })
    }

    /// [`Self::continuation_streaming`] branching from a [`Prefix`] (left unchanged).
    pub async fn continuation_from(
        &self,
        q: &Prefix,
        steer: Option<(&TaskVector, &Steering)>,
        max_new: usize,
        stop_at_eos: bool,
        on_text: &mut dyn FnMut(&str),
    ) -> Result<Answer> {
        let mut iv = Intervention::default();
        if let Some((v, s)) = steer {
            self.check_vector(v)?;
            let layers = s.resolve(usize::MAX, v.num_layers())?;
            iv.patches = s.patches(v, layers, q.len - 1);
            iv.every_token = s.every_token;
        }
        let first = self.m.model.forward(q.last.clone(), q.cache.clone(), &iv)?;
        let probs = softmax(&read_f32(first.logits.clone()).await?);
        let top = top_k(&probs, 5)
            .into_iter()
            .map(|i| Ok((self.m.tokenizer.decode(&[i as u32])?, probs[i])))
            .collect::<Result<_>>()?;
        let stop: &[u32] = if stop_at_eos {
            &self.m.tokenizer.eos
        } else {
            &[]
        };
        let tok = &self.m.tokenizer;
        let mut stream = |ids: &[u32]| {
            if let Ok(t) = tok.decode(ids) {
                on_text(&t);
            }
        };
        let mut new = self
            .m
            .model
            .continue_streaming(first.logits, first.cache, &iv, max_new, stop, &mut stream)
            .await?;
        if stop_at_eos && new.last().is_some_and(|t| self.m.tokenizer.eos.contains(t)) {
            new.pop();
        }
        Ok(Answer {
            text: self.m.tokenizer.decode(&new)?,
            ids: new,
            top,
        })
    }

    fn prediction(&self, layer: usize, logits: &[f32]) -> Result<LayerPrediction> {
        let probs = softmax(logits);
        let token = argmax(&probs);
        Ok(LayerPrediction {
            layer,
            token: token as u32,
            text: self.m.tokenizer.decode(&[token as u32])?,
            prob: probs[token],
        })
    }

    /// First-token prediction for every patch layer, fast: one prefill of the query without its
    /// last token, then the last token once per patch layer, all layers batched in one pass.
    pub async fn sweep(&self, prompt: &Prompt, v: &TaskVector) -> Result<Vec<LayerPrediction>> {
        self.check_vector(v)?;
        self.sweep_from(&self.prefix(prompt)?, v).await
    }

    /// [`Self::sweep`] branching from a [`Prefix`].
    pub async fn sweep_from(&self, q: &Prefix, v: &TaskVector) -> Result<Vec<LayerPrediction>> {
        self.check_vector(v)?;
        let logits = read_f32(
            self.m
                .model
                .sweep_next(q.last.clone(), &v.layers, &q.cache)?,
        )
        .await?;
        let vocab = logits.len() / v.num_layers();
        logits
            .chunks(vocab)
            .enumerate()
            .map(|(l, row)| self.prediction(l, row))
            .collect()
    }

    /// Greedy first token of an unpatched prompt, branching from a [`Prefix`].
    pub async fn first_token_from(&self, q: &Prefix) -> Result<LayerPrediction> {
        let o = self
            .m
            .model
            .forward(q.last.clone(), q.cache.clone(), &Intervention::default())?;
        self.prediction(usize::MAX, &read_f32(o.logits).await?)
    }

    /// The same as [`Engine::sweep`] by one full patched forward pass per layer (the paper's
    /// way); kept to check and benchmark the fast sweep.
    pub async fn sweep_naive(
        &self,
        prompt: &Prompt,
        v: &TaskVector,
    ) -> Result<Vec<LayerPrediction>> {
        self.check_vector(v)?;
        let (ids, x) = self.embed(prompt)?;
        let mut out = Vec::with_capacity(v.num_layers());
        for (l, row) in v.layers.iter().enumerate() {
            let iv = Intervention {
                patches: vec![Patch::replace(l, ids.len() - 1, row.clone())],
                ..Default::default()
            };
            let o =
                self.m
                    .model
                    .forward(x.clone(), KvCache::new(self.m.model.num_layers()), &iv)?;
            out.push(self.prediction(l, &read_f32(o.logits).await?)?);
        }
        Ok(out)
    }

    /// Greedy first token of an unpatched prompt.
    pub async fn first_token(&self, prompt: &Prompt) -> Result<LayerPrediction> {
        let (_, x) = self.embed(prompt)?;
        let o = self.m.model.forward(
            x,
            KvCache::new(self.m.model.num_layers()),
            &Intervention::default(),
        )?;
        self.prediction(usize::MAX, &read_f32(o.logits).await?)
    }

    /// Everything the page and `taskvec apply` show for one query: the answer with `f`'s vector
    /// put in by `steer` (default layers: the file's recommended layer), the zero-shot
    /// (unsteered) answer, the in-context answer (up to 5 of the file's text examples as
    /// demonstrations), and the fast sweep over every layer.
    pub async fn apply_report(
        &self,
        f: &super::VectorFile,
        input: &Input,
        steer: &Steering,
        max_new: usize,
    ) -> Result<ApplyReport> {
        self.apply_report_streaming(f, input, steer, max_new, &mut |_, _| {})
            .await
    }

    /// [`Self::apply_report`], calling `on_text(which, text so far)` as the steered
    /// (`"patched"`) and unsteered (`"zero_shot"`) continuations grow, token by token.
    pub async fn apply_report_streaming(
        &self,
        f: &super::VectorFile,
        input: &Input,
        steer: &Steering,
        max_new: usize,
        on_text: &mut dyn FnMut(&str, &str),
    ) -> Result<ApplyReport> {
        let v = f.vector();
        let layers = steer.resolve(f.recommended_layer, v.num_layers())?;
        let steering = Steering {
            layers: Some(layers),
            ..steer.clone()
        };
        // The patched and zero-shot answers and the sweep all branch from one prefill.
        let q = self.prefix(&Prompt::zero_shot(input))?;
        // The paper's patch answers and stops; steering shows both continuations at full length.
        let stop = steering.is_paper();
        let patched = self
            .continuation_from(&q, Some((&v, &steering)), max_new, stop, &mut |t| {
                on_text("patched", t)
            })
            .await?;
        let zero_shot = self
            .continuation_from(&q, None, max_new, stop, &mut |t| on_text("zero_shot", t))
            .await?;
        let demos: Vec<Example> = f
            .task
            .examples
            .iter()
            .filter(|x| !x.image)
            .take(DEMOS)
            .map(|x| Example {
                input: Input::Text(x.input.clone()),
                output: x.output.clone(),
            })
            .collect();
        let icl = if demos.is_empty() {
            None
        } else {
            Some(
                self.answer(
                    &Prompt::few_shot(&demos.iter().collect::<Vec<_>>(), input),
                    None,
                    max_new,
                )
                .await?,
            )
        };
        let sweep = self.sweep_from(&q, &v).await?;
        Ok(ApplyReport {
            layer: layers[0],
            steering,
            patched,
            zero_shot,
            icl,
            sweep,
        })
    }

    /// The zero-shot query prompt for an input.
    pub fn query(input: &Input) -> Prompt {
        Prompt::zero_shot(input)
    }
}
