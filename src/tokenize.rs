//! Tokenizer: from a Hugging Face `tokenizer.json`, or built from GGUF metadata (byte-level BPE
//! vocabulary, merges and special tokens), plus the Idefics3 image-placeholder expansion.

use ahash::AHashMap;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::{AddedToken, Tokenizer};

use crate::error::{Error, Result};
use crate::model::VisionConfig;
use crate::weights::gguf::{GgufHeader, Value};

/// The text placeholder for one image in a prompt.
pub const IMAGE_PLACEHOLDER: &str = "<image>";

/// A tokenizer with the few special ids the rest of the crate needs.
pub struct TextTokenizer {
    inner: Tokenizer,
    /// Prepend this id to every encoding (GGUF `add_bos_token`), if any.
    pub add_bos: Option<u32>,
    /// End-of-sequence ids that stop generation.
    pub eos: Vec<u32>,
}

fn tk_err(e: impl std::fmt::Display) -> Error {
    Error::Tokenize(e.to_string())
}

impl TextTokenizer {
    /// Loads a Hugging Face `tokenizer.json`.
    pub fn from_json(bytes: &[u8]) -> Result<Self> {
        let inner = Tokenizer::from_bytes(bytes)
            .map_err(|e| Error::Tokenize(format!("tokenizer.json: {e}")))?;
        let eos = ["<|im_end|>", "<end_of_utterance>", "<|endoftext|>"]
            .iter()
            .filter_map(|t| inner.token_to_id(t))
            .collect();
        Ok(TextTokenizer {
            inner,
            add_bos: None,
            eos,
        })
    }

    /// Builds the byte-level BPE tokenizer described by GGUF metadata (`tokenizer.ggml.*`).
    pub fn from_gguf(h: &GgufHeader) -> Result<Self> {
        let model = h
            .get("tokenizer.ggml.model")
            .and_then(Value::as_str)
            .unwrap_or("(none)");
        if model != "gpt2" {
            return Err(Error::Tokenize(format!(
                "GGUF tokenizer model '{model}' is not supported (only byte-level BPE, 'gpt2')"
            )));
        }
        let strs = |key: &str| -> Result<Vec<&str>> {
            h.get(key)
                .and_then(Value::as_array)
                .ok_or_else(|| Error::Tokenize(format!("GGUF has no '{key}'")))?
                .iter()
                .map(|v| {
                    v.as_str()
                        .ok_or_else(|| Error::Tokenize(format!("'{key}' holds a non-string")))
                })
                .collect()
        };
        let tokens = strs("tokenizer.ggml.tokens")?;
        let merges: Vec<(String, String)> = strs("tokenizer.ggml.merges")?
            .into_iter()
            .map(|m| {
                m.split_once(' ')
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .ok_or_else(|| Error::Tokenize(format!("bad merge '{m}'")))
            })
            .collect::<Result<_>>()?;
        let types: Vec<i64> = h
            .get("tokenizer.ggml.token_type")
            .and_then(Value::as_array)
            .map(|a| a.iter().map(|v| v.as_f64().unwrap_or(1.0) as i64).collect())
            .unwrap_or_default();
        let vocab: AHashMap<String, u32> = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.to_string(), i as u32))
            .collect();
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .build()
            .map_err(tk_err)?;
        let mut inner = Tokenizer::new(bpe);
        let pre = h
            .get("tokenizer.ggml.pre")
            .and_then(Value::as_str)
            .unwrap_or("default");
        let byte_level = ByteLevel::new(false, true, true);
        if matches!(pre, "smollm" | "qwen2" | "llama3" | "llama-bpe") {
            inner.with_pre_tokenizer(Some(Sequence::new(vec![
                Digits::new(true).into(),
                byte_level.into(),
            ])));
        } else {
            inner.with_pre_tokenizer(Some(byte_level));
        }
        inner.with_decoder(Some(ByteLevelDecoder::default()));
        // Control (3) and user-defined (4) tokens are matched whole before BPE.
        let special: Vec<AddedToken> = tokens
            .iter()
            .enumerate()
            .filter(|(i, _)| matches!(types.get(*i), Some(3) | Some(4)))
            .map(|(_, t)| AddedToken::from(t.to_string(), true))
            .collect();
        inner.add_special_tokens(special).map_err(tk_err)?;
        let id = |k: &str| h.get(k).and_then(Value::as_u64).map(|v| v as u32);
        let add_bos = match h.get("tokenizer.ggml.add_bos_token") {
            Some(Value::Bool(true)) => id("tokenizer.ggml.bos_token_id"),
            _ => None,
        };
        let mut eos: Vec<u32> = id("tokenizer.ggml.eos_token_id").into_iter().collect();
        eos.extend(
            ["<|im_end|>", "<end_of_utterance>"]
                .iter()
                .filter_map(|t| inner.token_to_id(t)),
        );
        Ok(TextTokenizer {
            inner,
            add_bos,
            eos,
        })
    }

    /// Token ids of `text`; special-token strings in it become their ids.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self.inner.encode(text, true).map_err(tk_err)?;
        let mut ids = Vec::with_capacity(enc.len() + 1);
        ids.extend(self.add_bos);
        ids.extend_from_slice(enc.get_ids());
        Ok(ids)
    }

    /// Text of `ids` (special tokens kept).
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner.decode(ids, false).map_err(tk_err)
    }

    /// The id of a token string, if in the vocabulary.
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The string of a token id.
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// Vocabulary size including added tokens.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Expands each `<image>` placeholder the way Idefics3's processor does without image
    /// splitting: `<fake_token_around_image><global-img>` + N×`<image>` +
    /// `<fake_token_around_image>`. Returns the text and the number of images found.
    pub fn expand_images(&self, text: &str, vision: &VisionConfig) -> Result<(String, usize)> {
        let n = text.matches(IMAGE_PLACEHOLDER).count();
        if n == 0 {
            return Ok((text.to_string(), 0));
        }
        for t in [
            "<fake_token_around_image>",
            "<global-img>",
            IMAGE_PLACEHOLDER,
        ] {
            if self.token_id(t).is_none() {
                return Err(Error::Tokenize(format!(
                    "the tokenizer lacks the image token {t}"
                )));
            }
        }
        let block = format!(
            "<fake_token_around_image><global-img>{}<fake_token_around_image>",
            IMAGE_PLACEHOLDER.repeat(vision.tokens_per_image())
        );
        Ok((text.replace(IMAGE_PLACEHOLDER, &block), n))
    }
}
