//! Task specifications: examples (text or image inputs with text answers), an instruction, the
//! paper's built-in tasks, and the prompt format `Q:{x}\nA:{y}\n\n` … `Q:{x}\nA:`.

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};

use crate::error::{Error, Result};
use crate::tokenize::IMAGE_PLACEHOLDER;

/// The input side of an example or a query.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// A text input, e.g. `France`.
    Text(String),
    /// An encoded image file (PNG/JPEG/WebP) and a label for display (e.g. its file name).
    Image {
        /// File bytes.
        bytes: Vec<u8>,
        /// Display label.
        label: String,
    },
}

impl Input {
    /// The text shown for this input in reports.
    pub fn label(&self) -> &str {
        match self {
            Input::Text(t) => t,
            Input::Image { label, .. } => label,
        }
    }
    /// Whether this is an image.
    pub fn is_image(&self) -> bool {
        matches!(self, Input::Image { .. })
    }
}

/// One input → answer example.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    /// The input.
    pub input: Input,
    /// The expected answer.
    pub output: String,
}

/// A prompt in the paper's format: text with `<image>` placeholders and the images in order.
#[derive(Debug, Clone, Default)]
pub struct Prompt {
    /// Prompt text.
    pub text: String,
    /// Images filling the placeholders.
    pub images: Vec<Vec<u8>>,
}

impl Prompt {
    fn push_input(&mut self, input: &Input) {
        match input {
            Input::Text(t) => self.text.push_str(t),
            Input::Image { bytes, .. } => {
                self.text.push_str(IMAGE_PLACEHOLDER);
                self.images.push(bytes.clone());
            }
        }
    }

    /// `Q:{x}\nA:{y}\n\n` for each demonstration, then `Q:{query}\nA:`.
    pub fn few_shot(demos: &[&Example], query: &Input) -> Self {
        let mut p = Prompt::default();
        for d in demos {
            p.text.push_str("Q:");
            p.push_input(&d.input);
            p.text.push_str("\nA:");
            p.text.push_str(&d.output);
            p.text.push_str("\n\n");
        }
        p.text.push_str("Q:");
        p.push_input(query);
        p.text.push_str("\nA:");
        p
    }

    /// The zero-shot query `Q:{x}\nA:`.
    pub fn zero_shot(query: &Input) -> Self {
        Self::few_shot(&[], query)
    }

    /// An instruction prompt, which must end with `:`.
    pub fn instruction(text: &str) -> Result<Self> {
        let t = text.trim_end();
        if t.is_empty() || !t.ends_with(':') {
            return Err(Error::TaskVector(format!(
                "an instruction must end with ':' (e.g. 'The capital city of the country:'), got {t:?}"
            )));
        }
        Ok(Prompt {
            text: t.to_string(),
            images: vec![],
        })
    }
}

/// A named task: examples and, optionally, its instruction.
#[derive(Debug, Clone)]
pub struct Task {
    /// Task name.
    pub name: String,
    /// Instruction ending in `:`, if known.
    pub instruction: Option<String>,
    /// The examples.
    pub examples: Vec<Example>,
}

/// The word naming a built-in task's relation (what the logit lens's middle "task" phase shows),
/// e.g. `capital` for `country_capital`.
pub fn task_word(name: &str) -> Option<&'static str> {
    Some(match name {
        "country_capital" => "capital",
        "country_currency" => "currency",
        "animal_latin" => "species",
        "animal_young" => "baby",
        "food_color" => "color",
        "food_flavor" => "flavor",
        _ => return None,
    })
}

/// The paper's six tasks: (name, instruction, TSV data compiled into the binary; columns
/// `input output split image`, see [`super::dataset`]).
pub const BUILTIN: [(&str, &str, &str); 6] = [
    (
        "country_capital",
        "The capital city of the country:",
        include_str!("../../data/tasks/country_capital.tsv"),
    ),
    (
        "country_currency",
        "The last word of the official currency of the country:",
        include_str!("../../data/tasks/country_currency.tsv"),
    ),
    (
        "animal_latin",
        "The scientific name of the animal's species in latin:",
        include_str!("../../data/tasks/animal_latin.tsv"),
    ),
    (
        "animal_young",
        "The term for the baby of the animal:",
        include_str!("../../data/tasks/animal_young.tsv"),
    ),
    (
        "food_color",
        "The color of the food:",
        include_str!("../../data/tasks/food_color.tsv"),
    ),
    (
        "food_flavor",
        "The flavor descriptor of the food:",
        include_str!("../../data/tasks/food_flavor.tsv"),
    ),
];

/// Most examples a task may hold (more is surely a wrong file).
pub const MAX_EXAMPLES: usize = 100_000;

/// Parses `input<TAB>output` lines (blank lines and `#` comments skipped) into text examples.
pub fn parse_tsv(text: &str) -> Result<Vec<Example>> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if out.len() >= MAX_EXAMPLES {
            return Err(Error::TaskVector(format!(
                "the file has more than {MAX_EXAMPLES} examples (line {}): is it the right file?",
                i + 1
            )));
        }
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let (x, y) = line.split_once('\t').ok_or_else(|| {
            Error::TaskVector(format!(
                "line {}: expected 'input<TAB>output', got {line:?}",
                i + 1
            ))
        })?;
        if x.trim().is_empty() || y.trim().is_empty() {
            return Err(Error::TaskVector(format!(
                "line {}: empty input or output",
                i + 1
            )));
        }
        out.push(Example {
            input: Input::Text(x.trim().to_string()),
            output: y.trim().to_string(),
        });
    }
    Ok(out)
}

impl Task {
    /// A built-in task by name (`country_capital`, `Country-Capital` and `country-capital` all
    /// work): every item of both splits as a text example.
    pub fn builtin(name: &str) -> Result<Task> {
        let (n, instr, lines) = super::dataset::builtin_lines(name)?;
        Ok(Task {
            name: n.to_string(),
            instruction: Some(instr.to_string()),
            examples: lines
                .into_iter()
                .map(|l| Example {
                    input: Input::Text(l.input),
                    output: l.output,
                })
                .collect(),
        })
    }

    /// Splits the examples with a seeded shuffle: the first third is the validation set (used
    /// for extraction and as demonstrations), the rest the test set.
    pub fn split(&self, seed: u64) -> Result<(Vec<Example>, Vec<Example>)> {
        if self.examples.len() < 3 {
            return Err(Error::TaskVector(format!(
                "task '{}' has {} examples; at least 3 are needed to split validation and test",
                self.name,
                self.examples.len()
            )));
        }
        let mut ex = self.examples.clone();
        ex.shuffle(&mut StdRng::seed_from_u64(seed));
        let test = ex.split_off(ex.len() / 3);
        Ok((ex, test))
    }
}

/// `k` demonstrations drawn at random from `pool`, excluding index `skip` (and any example with
/// the same input as `query`).
pub fn draw_demos<'a>(
    pool: &'a [Example],
    skip: Option<usize>,
    query: &Input,
    k: usize,
    rng: &mut StdRng,
) -> Vec<&'a Example> {
    let candidates: Vec<&Example> = pool
        .iter()
        .enumerate()
        .filter(|(i, e)| Some(*i) != skip && e.input != *query)
        .map(|(_, e)| e)
        .collect();
    candidates
        .choose_multiple(rng, k.min(candidates.len()))
        .copied()
        .collect()
}

/// The paper's scoring: whitespace stripped, both non-empty, one a prefix of the other;
/// optionally case-insensitive.
pub fn is_correct(generated: &str, label: &str, ignore_case: bool) -> bool {
    let (mut g, mut l) = (generated.trim().to_string(), label.trim().to_string());
    if ignore_case {
        g = g.to_lowercase();
        l = l.to_lowercase();
    }
    !g.is_empty() && !l.is_empty() && (g.starts_with(&l) || l.starts_with(&g))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompt_format_matches_the_paper() {
        let ex = Example {
            input: Input::Text("France".into()),
            output: "Paris".into(),
        };
        let p = Prompt::few_shot(&[&ex], &Input::Text("Spain".into()));
        assert_eq!(p.text, "Q:France\nA:Paris\n\nQ:Spain\nA:");
        let img = Input::Image {
            bytes: vec![1],
            label: "x.png".into(),
        };
        let p = Prompt::zero_shot(&img);
        assert_eq!((p.text.as_str(), p.images.len()), ("Q:<image>\nA:", 1));
    }

    #[test]
    fn scoring_is_prefix_match() {
        assert!(is_correct(" Par", "Paris", false));
        assert!(is_correct("Paris is", "Paris", false));
        assert!(!is_correct("paris", "Paris", false));
        assert!(is_correct("paris", "Paris", true));
        assert!(!is_correct("  ", "Paris", false));
        assert!(!is_correct("Rome", "Paris", false));
    }

    #[test]
    fn builtins_parse_and_have_enough_pairs() {
        for (name, instr, _) in BUILTIN {
            let t = Task::builtin(name).unwrap();
            assert!(t.examples.len() >= 50, "{name}: {}", t.examples.len());
            assert!(instr.ends_with(':'));
        }
        assert!(Task::builtin("Country-Capital").is_ok());
        assert!(Task::builtin("nope").is_err());
    }
}
